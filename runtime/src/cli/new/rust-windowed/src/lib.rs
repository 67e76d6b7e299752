//! {{name}}: a windowed Weir transform.
//!
//! Counts records per key in one-minute event-time windows and emits each window
//! once it has closed: when the partition's watermark passes its end plus 10 s of
//! grace. A record whose window has closed is late: it goes to the `late-records`
//! topic. Change the windows (`Windows::hopping`, `sliding`, `session`), the
//! aggregate (implement `weir_sdk::window::Aggregate`) or `Emit::OnUpdate` to emit
//! every change.
//!
//! `fixtures/input.jsonl` holds records out of order, a late one, and a
//! `{"watermark": ms}` line that moves time past the last window so it closes.

use weir_sdk::window::{Count, Emit, Late, WindowedAggregate, Windows};
use weir_sdk::{Config, Context, Error, Record, Timer, Transform};

pub struct App {
    windows: WindowedAggregate<Count>,
}

impl Transform for App {
    fn init(config: &Config) -> Result<Self, Error> {
        let window_ms = config.parse("window_ms")?.unwrap_or(60_000);
        let windows = WindowedAggregate::new("count", Windows::tumbling(window_ms))?
            .grace_ms(config.parse("grace_ms")?.unwrap_or(10_000))
            .emit(Emit::OnClose)
            .late(Late::SideOutput("late-records".to_owned()));
        Ok(App { windows })
    }

    fn process(&mut self, record: Record, ctx: &mut Context<'_>) -> Result<(), Error> {
        let updates = self.windows.add(ctx, &record, ())?;
        self.windows.send_json(ctx, updates)
    }

    /// Windows close on timers the SDK sets.
    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<'_>) -> Result<(), Error> {
        let closed = self.windows.on_timer(ctx, &timer)?.unwrap_or_default();
        self.windows.send_json(ctx, closed)
    }
}

weir_sdk::export!(App);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::Harness;

    fn at(harness: &mut Harness<App>, key: &str, seconds: i64) -> Vec<String> {
        let mut record = Record::from_value("x").with_key(key);
        record.timestamp = seconds * 1000;
        let outputs = harness.process(record).unwrap();
        outputs.iter().map(|o| o.value_str().unwrap().to_owned()).collect()
    }

    #[test]
    fn a_window_closes_once_after_its_grace() {
        let mut h = Harness::<App>::new().unwrap();
        assert!(at(&mut h, "a", 10).is_empty());
        assert!(at(&mut h, "a", 65).is_empty());
        assert!(at(&mut h, "a", 50).is_empty(), "out of order, still open");
        let closed = at(&mut h, "b", 70);
        assert_eq!(
            closed,
            [r#"{"window_start":0,"window_end":60000,"value":2,"final":true}"#]
        );
        let late = h.process(Record::from_value("x").with_key("a")).unwrap();
        assert_eq!(late[0].topic.as_deref(), Some("late-records"));
        let rest = h.advance_watermark(200_000);
        assert_eq!(rest.len(), 2, "the windows of a (60-120 s) and b");
    }
}
