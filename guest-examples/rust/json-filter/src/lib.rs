//! Stateless filter and reshape of JSON events: keep purchases of at least
//! `min_amount_cents` (config, default 0), and reshape each into a flat record keyed
//! by user id. A value that is not a valid event is an error, so the pipeline's
//! error policy decides its fate.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use weir_sdk::{Config, Context, Error, Output, Record, Transform};

/// Strings borrow from the record's value where they can (`Cow` owns them only when
/// they contain escapes), so parsing copies no field into a `String` of its own.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow)]
    user: User<'a>,
    amount_cents: Option<u64>,
    #[serde(default, borrow)]
    country: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct User<'a> {
    id: u64,
    #[serde(borrow)]
    name: Cow<'a, str>,
}

#[derive(Serialize)]
struct Purchase<'a> {
    user_id: u64,
    user_name: &'a str,
    amount: f64,
    country: &'a str,
}

pub struct JsonFilter {
    min_amount_cents: u64,
}

impl Transform for JsonFilter {
    fn init(config: &Config) -> Result<Self, Error> {
        Ok(Self {
            min_amount_cents: config.parse("min_amount_cents")?.unwrap_or(0),
        })
    }

    fn process(&mut self, record: Record, ctx: &mut Context<'_>) -> Result<(), Error> {
        let event: Event = record.value_json()?;
        let amount_cents = event.amount_cents.unwrap_or(0);
        if event.event != "purchase" || amount_cents < self.min_amount_cents {
            return Ok(());
        }
        let purchase = Purchase {
            user_id: event.user.id,
            user_name: &event.user.name,
            amount: amount_cents as f64 / 100.0,
            country: event.country.as_deref().unwrap_or("unknown"),
        };
        ctx.emit(Output::json(&purchase)?.with_key(event.user.id.to_string()));
        Ok(())
    }
}

weir_sdk::export!(JsonFilter);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::Harness;

    #[test]
    fn keeps_and_reshapes_purchases() {
        let mut h = Harness::<JsonFilter>::new().unwrap();
        let out = h
            .process_value(r#"{"event":"purchase","user":{"id":7,"name":"Ada"},"amount_cents":1250,"country":"GB"}"#)
            .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key_str().unwrap(), Some("7"));
        assert_eq!(
            out[0].value_str().unwrap(),
            r#"{"user_id":7,"user_name":"Ada","amount":12.5,"country":"GB"}"#
        );
        assert!(
            h.process_value(r#"{"event":"view","user":{"id":7,"name":"Ada"}}"#)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn applies_the_minimum_and_rejects_bad_json() {
        let mut h = Harness::<JsonFilter>::with_config(
            [("min_amount_cents", "2000")].into_iter().collect(),
        )
        .unwrap();
        let small = r#"{"event":"purchase","user":{"id":1,"name":"B"},"amount_cents":1999}"#;
        assert!(h.process_value(small).unwrap().is_empty());
        assert!(h.process_value("{not json").is_err());
        assert!(
            Harness::<JsonFilter>::with_config(
                [("min_amount_cents", "lots")].into_iter().collect()
            )
            .is_err()
        );
    }
}
