//! An enrichment join: orders (the input, keyed by customer id) joined with the
//! `customers` table (a compacted topic keyed by customer id, partitioned like the
//! orders), each order sent on with its customer's row:
//! `{"order": <the order>, "customer": <the row>}`, under the customer id.
//!
//! Config: `join` = `inner` (the default: an order of an unknown customer is dropped)
//! or `left` (it goes on with `"customer": null`).
//!
//! The host applies the table's records in timestamp order with the orders, so an
//! order meets its customer as of the order's time: a customer who moves region later
//! does not rewrite the orders before the move.

use serde::Serialize;
use serde_json::value::RawValue;
use weir_sdk::{Config, Context, Error, Record, Transform};

/// The table the pipeline declares (`[pipelines.NAME.tables.customers]`).
pub const CUSTOMERS: &str = "customers";

pub struct Enrich {
    left: bool,
}

/// An order with its customer's row: `{"order": {...}, "customer": {...} or null}`,
/// the same in every language's example. Both are JSON already: they are checked
/// and spliced in as they are, not parsed into values and written out again.
#[derive(Debug, Serialize)]
struct Enriched<'a> {
    order: &'a RawValue,
    customer: Option<&'a RawValue>,
}

impl Transform for Enrich {
    fn init(config: &Config) -> Result<Self, Error> {
        let left = match config.get("join").unwrap_or("inner") {
            "inner" => false,
            "left" => true,
            other => {
                return Err(Error::msg(format!(
                    "join = {other:?}: use \"inner\" or \"left\""
                )));
            }
        };
        Ok(Self { left })
    }

    fn process(&mut self, record: Record, ctx: &mut Context<'_>) -> Result<(), Error> {
        let key = record
            .key
            .as_deref()
            .ok_or_else(|| Error::msg("an order needs its customer id as its key"))?;
        let row = ctx.kafka_table(CUSTOMERS).get(key);
        if row.is_none() && !self.left {
            return Ok(());
        }
        let customer = match &row {
            Some(row) => Some(serde_json::from_slice::<&RawValue>(row).map_err(|e| {
                Error::msg(format!("the customer row of this order is not JSON: {e}"))
            })?),
            None => None,
        };
        let enriched = Enriched {
            order: record.value_json()?,
            customer,
        };
        ctx.send_json(key.to_vec(), &enriched)
    }
}

weir_sdk::export!(Enrich);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::Harness;

    fn order(customer: &str, id: &str, at: i64) -> Record {
        let mut record = Record::from_value(format!(r#"{{"id":"{id}","amount":12.5}}"#));
        record.key = Some(customer.as_bytes().to_vec());
        record.timestamp = at;
        record
    }

    fn customer(name: &str, region: &str) -> Option<String> {
        Some(format!(r#"{{"name":"{name}","region":"{region}"}}"#))
    }

    #[test]
    fn an_order_meets_its_customer_as_the_table_stands() -> Result<(), Error> {
        let mut harness = Harness::<Enrich>::new()?;
        harness.set_table_row(CUSTOMERS, "c1", customer("Ada", "eu"));
        let out = harness.process(order("c1", "o1", 1))?;
        assert_eq!(
            out[0].value_str()?,
            r#"{"order":{"id":"o1","amount":12.5},"customer":{"name":"Ada","region":"eu"}}"#
        );
        harness.set_table_row(CUSTOMERS, "c1", customer("Ada", "us"));
        let out = harness.process(order("c1", "o2", 2))?;
        assert!(out[0].value_str()?.contains(r#""region":"us""#));
        Ok(())
    }

    #[test]
    fn an_inner_join_drops_an_unknown_customer_and_a_left_join_keeps_it() -> Result<(), Error> {
        let mut inner = Harness::<Enrich>::new()?;
        assert!(inner.process(order("c9", "o1", 1))?.is_empty());
        inner.set_table_row(CUSTOMERS, "c9", customer("Bo", "eu"));
        inner.set_table_row(CUSTOMERS, "c9", None::<String>);
        assert!(inner.process(order("c9", "o2", 2))?.is_empty());

        let config: Config = [("join", "left")].into_iter().collect();
        let mut left = Harness::<Enrich>::with_config(config)?;
        let out = left.process(order("c9", "o1", 1))?;
        assert_eq!(
            out[0].value_str()?,
            r#"{"order":{"id":"o1","amount":12.5},"customer":null}"#
        );
        Ok(())
    }
}
