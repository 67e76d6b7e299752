//! A sliding fraud rule: alert when a card has more than `max_events` payments in any
//! 5 minutes. Each payment ends a sliding window of the SDK ([`weir_sdk::window`])
//! holding the card's payments of the 5 minutes up to it; a window that closes with
//! more than `max_events` raises an alert, unless it overlaps the card's last alert
//! (one burst, one alert). Config: `window_ms` (default 5 minutes), `max_events`
//! (default 3), `grace_ms` (default 10 s), `late` (`drop`, the default, `dead-letter`
//! or `side-output:<topic>`).
//!
//! The rule keeps one state entry of its own per card (where its last alert ended),
//! cleared by a timer of its own once no window overlapping that alert can close:
//! the SDK's windows and a transform's own timers live side by side.

use serde::Serialize;
use weir_sdk::window::{Count, Late, WindowResult, WindowedAggregate, Windows};
use weir_sdk::{Config, Context, Error, Record, Timer, Transform};

pub struct FraudRule {
    windows: WindowedAggregate<Count>,
    window_ms: i64,
    grace_ms: i64,
    max_events: u64,
}

/// What an alert says, under the card.
#[derive(Serialize)]
struct Alert {
    window_start: i64,
    window_end: i64,
    events: u64,
}

/// The card's last alert ended here (`alerted/<card>`, an i64 as JSON).
const ALERTED: &str = "alerted/";
/// This rule's own timers: forget a card's last alert (`forget/<card>`).
const FORGET: &[u8] = b"forget/";

impl FraudRule {
    fn alert(&self, ctx: &mut Context<'_>, closed: WindowResult<Count>) -> Result<(), Error> {
        if closed.value.0 <= self.max_events {
            return Ok(());
        }
        let window = closed.window;
        let mut alerted = ctx.table::<i64>(ALERTED);
        if alerted
            .get(&closed.key)?
            .is_some_and(|end| window.start < end)
        {
            return Ok(());
        }
        alerted.put(&closed.key, &window.end)?;
        // A window overlapping this one ends before `end + window_ms` and closes
        // `grace_ms` after that; none can once the watermark is past it.
        let forget = window.end + self.window_ms + self.grace_ms;
        ctx.set_timer(&Timer::event(forget, [FORGET, &closed.key].concat()));
        let alert = Alert {
            window_start: window.start,
            window_end: window.end,
            events: closed.value.0,
        };
        ctx.send_json(closed.key, &alert)
    }
}

impl Transform for FraudRule {
    fn init(config: &Config) -> Result<Self, Error> {
        let window_ms = config.parse("window_ms")?.unwrap_or(5 * 60_000);
        let grace_ms = config.parse("grace_ms")?.unwrap_or(10_000);
        let windows = WindowedAggregate::new("payments", Windows::sliding(window_ms))?
            .grace_ms(grace_ms)
            .late(config.parse::<Late>("late")?.unwrap_or(Late::Drop));
        Ok(Self {
            windows,
            window_ms,
            grace_ms,
            max_events: config.parse("max_events")?.unwrap_or(3),
        })
    }

    fn process(&mut self, record: Record, ctx: &mut Context<'_>) -> Result<(), Error> {
        // Emitted on close: adding never returns a result.
        self.windows.add(ctx, &record, ())?;
        Ok(())
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<'_>) -> Result<(), Error> {
        if let Some(card) = timer.key.strip_prefix(FORGET) {
            let mut alerted = ctx.table::<i64>(ALERTED);
            // A later alert set a later timer of its own.
            if alerted
                .get(card)?
                .is_some_and(|end| end + self.window_ms + self.grace_ms <= timer.at)
            {
                alerted.delete(card);
            }
            return Ok(());
        }
        let closed = self.windows.on_timer(ctx, &timer)?;
        for window in closed.unwrap_or_default() {
            self.alert(ctx, window)?;
        }
        Ok(())
    }
}

weir_sdk::export!(FraudRule);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::Harness;

    const SECOND: i64 = 1_000;

    fn pay(harness: &mut Harness<FraudRule>, card: &str, second: i64) -> Vec<String> {
        let mut record = Record::from_value("{}").with_key(card);
        record.timestamp = second * SECOND;
        let outputs = harness.process(record).unwrap();
        outputs
            .iter()
            .map(|o| o.value_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn a_burst_raises_one_alert_and_its_state_goes_after() {
        let mut h = Harness::<FraudRule>::new().unwrap();
        for second in [0, 60, 120, 180] {
            assert!(pay(&mut h, "card", second).is_empty());
        }
        // The window ending at 180 s (four payments) closes 10 s after its end.
        let alerts = pay(&mut h, "card", 200);
        assert_eq!(
            alerts,
            [r#"{"window_start":-119999,"window_end":180001,"events":4}"#]
        );
        // The window ending at 200 s holds five, but overlaps the alert: no second one.
        assert!(pay(&mut h, "other", 400).is_empty());
        assert!(h.state().get_str("alerted/card").is_some());
        h.advance_watermark(2_000 * SECOND);
        assert!(h.state().is_empty(), "{:?}", h.state());
        assert_eq!(h.state().timers().count(), 0);
    }
}
