//! User sessions: a user's events at most 30 minutes apart, chained, are one session;
//! each session is emitted once it has closed (the watermark passed its last event
//! plus the gap and the grace), with its span and how many events and pages it had.
//! Config: `gap_ms` (default 30 minutes), `grace_ms` (default 1 minute), `late`
//! (`drop`, the default, `dead-letter` or `side-output:<topic>`).
//!
//! Input: records keyed by user; a JSON value with a `page` field counts as a page
//! view, anything else as an event only. A session window of the SDK
//! ([`weir_sdk::window`]) over the [`Activity`] aggregate, which merges when a late
//! event bridges two sessions.

use serde::{Deserialize, Serialize};
use weir_sdk::window::{Aggregate, Late, WindowedAggregate, Windows};
use weir_sdk::{Config, Context, Error, Record, Timer, Transform};

/// What a session adds up.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Activity {
    events: u64,
    page_views: u64,
}

impl Aggregate for Activity {
    /// Whether the event viewed a page.
    type Input = bool;

    fn add(&mut self, page_view: &bool) {
        self.events += 1;
        self.page_views += u64::from(*page_view);
    }

    fn merge(&mut self, other: Self) {
        self.events += other.events;
        self.page_views += other.page_views;
    }
}

/// What a closed session emits, under its user.
#[derive(Serialize)]
struct SessionSummary {
    session_start: i64,
    /// Just after its last event.
    session_end: i64,
    events: u64,
    page_views: u64,
}

pub struct Sessions {
    sessions: WindowedAggregate<Activity>,
}

impl Transform for Sessions {
    fn init(config: &Config) -> Result<Self, Error> {
        let gap_ms = config.parse("gap_ms")?.unwrap_or(30 * 60_000);
        let sessions = WindowedAggregate::new("session", Windows::session(gap_ms))?
            .grace_ms(config.parse("grace_ms")?.unwrap_or(60_000))
            .late(config.parse::<Late>("late")?.unwrap_or(Late::Drop));
        Ok(Self { sessions })
    }

    fn process(&mut self, record: Record, ctx: &mut Context<'_>) -> Result<(), Error> {
        // A JSON object with a non-null `page`, as the Python and JavaScript examples.
        let page_view = record
            .value
            .as_deref()
            .and_then(|value| serde_json::from_slice::<serde_json::Value>(value).ok())
            .is_some_and(|event| event.get("page").is_some_and(|page| !page.is_null()));
        // Sessions emit when they close, never here.
        self.sessions.add(ctx, &record, page_view)?;
        Ok(())
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<'_>) -> Result<(), Error> {
        for closed in self.sessions.on_timer(ctx, &timer)?.unwrap_or_default() {
            let summary = SessionSummary {
                session_start: closed.window.start,
                session_end: closed.window.end,
                events: closed.value.events,
                page_views: closed.value.page_views,
            };
            ctx.send_json(closed.key, &summary)?;
        }
        Ok(())
    }
}

weir_sdk::export!(Sessions);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::Harness;

    const MINUTE: i64 = 60_000;

    fn event(harness: &mut Harness<Sessions>, user: &str, minute: i64, page: bool) -> Vec<String> {
        let value = if page { r#"{"page":"/"}"# } else { "{}" };
        let mut record = Record::from_value(value).with_key(user);
        record.timestamp = minute * MINUTE;
        let outputs = harness.process(record).unwrap();
        outputs
            .iter()
            .map(|o| o.value_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn a_late_event_between_two_sessions_merges_them() {
        // Events may arrive up to 20 minutes out of order.
        let mut h = Harness::<Sessions>::new()
            .unwrap()
            .with_max_out_of_orderness(20 * MINUTE as u64);
        assert!(event(&mut h, "u", 0, true).is_empty());
        assert!(event(&mut h, "u", 40, false).is_empty());
        // Out of order, 20 minutes from both: one session now.
        assert!(event(&mut h, "u", 20, true).is_empty());
        // It closes at its end (just after 40 minutes) plus the gap and the grace, 71
        // minutes, when the watermark (20 minutes behind) gets there.
        assert!(event(&mut h, "v", 91, false).is_empty());
        let closed = event(&mut h, "v", 92, false);
        assert_eq!(
            closed,
            [format!(
                r#"{{"session_start":0,"session_end":{},"events":3,"page_views":2}}"#,
                40 * MINUTE + 1
            )]
        );
    }
}
