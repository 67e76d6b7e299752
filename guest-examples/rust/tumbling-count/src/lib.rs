//! Counts records per key in tumbling event-time windows and emits each window's
//! count once, when it closes: when the watermark passes the window's end plus a grace
//! period. Config: `window_ms` (default one minute) and `grace_ms` (default 10 s).
//!
//! Each window of each key is a count in state and an event-time timer at its close;
//! the timer emits the count and clears the state. A record whose window has closed
//! (the watermark it meets is past the close) is late: it is not counted, and the
//! `late/` table counts it instead.

use serde::Serialize;
use weir_sdk::{Config, Context, Error, Record, Timer, Transform};

pub struct TumblingCount {
    window_ms: i64,
    grace_ms: i64,
}

/// What a closed window emits, under its key.
#[derive(Serialize)]
struct WindowCount {
    window_start: i64,
    window_end: i64,
    count: u64,
}

/// A window of a key, as state and timer key: its start (8 bytes, big-endian, so
/// windows sort by time), then the record key.
fn window_id(start: i64, key: &[u8]) -> Vec<u8> {
    let mut id = start.to_be_bytes().to_vec();
    id.extend_from_slice(key);
    id
}

fn parse_window_id(id: &[u8]) -> Result<(i64, &[u8]), Error> {
    let (start, key) = id
        .split_first_chunk::<8>()
        .ok_or_else(|| Error::msg("a timer key shorter than a window start"))?;
    Ok((i64::from_be_bytes(*start), key))
}

impl Transform for TumblingCount {
    fn init(config: &Config) -> Result<Self, Error> {
        let window_ms: i64 = config.parse("window_ms")?.unwrap_or(60_000);
        if window_ms <= 0 {
            return Err(Error::msg("window_ms must be positive"));
        }
        Ok(Self {
            window_ms,
            grace_ms: config.parse("grace_ms")?.unwrap_or(10_000),
        })
    }

    fn process(&mut self, record: Record, ctx: &mut Context<'_>) -> Result<(), Error> {
        let key = record.key.as_deref().unwrap_or_default();
        let start = record.timestamp - record.timestamp.rem_euclid(self.window_ms);
        let close = start + self.window_ms + self.grace_ms;
        if close <= ctx.watermark() {
            ctx.table::<u64>("late/")
                .update(key, |n| n.unwrap_or(0) + 1)?;
            return Ok(());
        }
        let id = window_id(start, key);
        ctx.table::<u64>("count/")
            .update(&id, |n| n.unwrap_or(0) + 1)?;
        ctx.set_timer(&Timer::event(close, id));
        Ok(())
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<'_>) -> Result<(), Error> {
        let (start, key) = parse_window_id(&timer.key)?;
        let mut counts = ctx.table::<u64>("count/");
        let count = counts.get(&timer.key)?.unwrap_or(0);
        counts.delete(&timer.key);
        let closed = WindowCount {
            window_start: start,
            window_end: start + self.window_ms,
            count,
        };
        ctx.send_json(key.to_vec(), &closed)
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
        // Meets 80 s: its window has closed, so it is counted apart and dropped.
        assert!(at(&mut harness, "a", 50).is_empty());
        assert_eq!(harness.state().get_str("late/a"), Some("1"));
        assert!(harness.state().timers().all(|t| t.at > T0 + 70_000));
    }
}
