//! Counts records per key in tumbling event-time windows and emits each window's
//! count once, when it closes: when the watermark passes the window's end plus a grace
//! period. Config: `window_ms` (default one minute), `grace_ms` (default 10 s),
//! `emit` (`close`, the default, or `update` for every change) and `late` (what
//! happens to a record whose window has closed: `drop`, the default, `dead-letter`, or
//! `side-output:<topic>`).
//!
//! The windows are the SDK's ([`weir_sdk::window`]): a count per window and key in
//! state, and an event-time timer at its close that emits it and clears the state.

use serde::Serialize;
use weir_sdk::window::{Count, Emit, Late, WindowResult, WindowedAggregate, Windows};
use weir_sdk::{Config, Context, Error, Record, Timer, Transform};

pub struct TumblingCount {
    windows: WindowedAggregate<Count>,
}

/// What a window emits, under its key.
#[derive(Serialize)]
struct WindowCount {
    window_start: i64,
    window_end: i64,
    count: u64,
}

impl TumblingCount {
    fn send(&self, ctx: &mut Context<'_>, results: Vec<WindowResult<Count>>) -> Result<(), Error> {
        for result in results {
            let count = WindowCount {
                window_start: result.window.start,
                window_end: result.window.end,
                count: result.value.0,
            };
            ctx.send_json(result.key, &count)?;
        }
        Ok(())
    }
}

impl Transform for TumblingCount {
    fn init(config: &Config) -> Result<Self, Error> {
        let window_ms = config.parse("window_ms")?.unwrap_or(60_000);
        let windows = WindowedAggregate::new("count", Windows::tumbling(window_ms))?
            .grace_ms(config.parse("grace_ms")?.unwrap_or(10_000))
            .emit(config.parse::<Emit>("emit")?.unwrap_or(Emit::OnClose))
            .late(config.parse::<Late>("late")?.unwrap_or(Late::Drop));
        Ok(Self { windows })
    }

    fn process(&mut self, record: Record, ctx: &mut Context<'_>) -> Result<(), Error> {
        let results = self.windows.add(ctx, &record, ())?;
        self.send(ctx, results)
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<'_>) -> Result<(), Error> {
        let results = self.windows.on_timer(ctx, &timer)?.unwrap_or_default();
        self.send(ctx, results)
    }
}

weir_sdk::export!(TumblingCount);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::Harness;

    const T0: i64 = 1_699_999_980_000;

    fn at(harness: &mut Harness<TumblingCount>, key: &str, seconds: i64) -> Vec<String> {
        let mut record = Record::from_value("x").with_key(key);
        record.timestamp = T0 + seconds * 1000;
        harness
            .process(record)
            .unwrap()
            .iter()
            .map(|out| {
                let key = String::from_utf8_lossy(out.key.as_deref().unwrap_or_default());
                format!("{key} {}", out.value_str().unwrap())
            })
            .collect()
    }

    #[test]
    fn a_window_emits_once_when_the_watermark_passes_its_close() {
        let mut harness = Harness::<TumblingCount>::new().unwrap();
        assert!(at(&mut harness, "a", 0).is_empty());
        assert!(at(&mut harness, "a", 30).is_empty());
        assert!(at(&mut harness, "a", 65).is_empty());
        // Out of order, but its window is still open (it closes at 70 s).
        assert!(at(&mut harness, "a", 55).is_empty());
        // Leaves the watermark at 80 s: the first window (closing at 70 s) closes.
        let closed = at(&mut harness, "b", 80);
        let w0 = format!(
            r#"{{"window_start":{T0},"window_end":{},"count":3}}"#,
            T0 + 60_000
        );
        assert_eq!(closed, [format!("a {w0}")]);
        // Meets 80 s: its window has closed, so it is dropped.
        assert!(at(&mut harness, "a", 50).is_empty());
        assert!(harness.state().timers().all(|t| t.at > T0 + 70_000));
    }
}
