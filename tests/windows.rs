//! The tumbling window count of `guest-examples/rust/tumbling-count`, done the plain
//! way: the reference its runs are checked against, in the engine and on Kafka.

use std::collections::BTreeMap;

/// The example's defaults for the suites: 60 s windows with a 10 s grace.
pub const WINDOW_MS: i64 = 60_000;
pub const GRACE_MS: i64 = 10_000;

/// A window's count as the example emits it: (key, window start, count).
pub type Closed = (String, i64, u64);

/// Tumbling counts record by record: each record meets the watermark left by the
/// records before it (their largest timestamp minus `max_out_of_orderness`), windows
/// whose close (end plus grace) it has reached are emitted first (by close, then key),
/// and a record whose own window has closed is dropped as late. `flush_at` is a final
/// watermark that closes what it has passed (the batch's end fires those too).
pub fn reference(
    records: &[(String, i64)],
    window_ms: i64,
    grace_ms: i64,
    max_out_of_orderness: i64,
) -> Vec<Closed> {
    let mut open: BTreeMap<(i64, String), (i64, u64)> = BTreeMap::new();
    let mut stream_time: Option<i64> = None;
    let mut emitted = Vec::new();
    let close_up_to = |watermark: i64, open: &mut BTreeMap<_, _>, emitted: &mut Vec<Closed>| {
        while let Some(entry) = open.first_entry() {
            let (close, _): &(i64, String) = entry.key();
            if *close > watermark {
                break;
            }
            let ((_, key), (start, count)) = entry.remove_entry();
            emitted.push((key, start, count));
        }
    };
    for (key, timestamp) in records {
        let watermark = stream_time.map_or(i64::MIN, |t| t - max_out_of_orderness);
        close_up_to(watermark, &mut open, &mut emitted);
        let start = timestamp - timestamp.rem_euclid(window_ms);
        let close = start + window_ms + grace_ms;
        if close > watermark {
            open.entry((close, key.clone())).or_insert((start, 0)).1 += 1;
        }
        stream_time = Some(stream_time.map_or(*timestamp, |t| t.max(*timestamp)));
    }
    // Timers due after the last record fire at the end of its batch.
    if let Some(t) = stream_time {
        close_up_to(t - max_out_of_orderness, &mut open, &mut emitted);
    }
    emitted
}

/// (key, window start, count) of one of the example's outputs.
pub fn closed_window(key: &[u8], value: &[u8]) -> Closed {
    let value: serde_json::Value = serde_json::from_slice(value).expect("a window's JSON");
    (
        String::from_utf8(key.to_vec()).expect("a UTF-8 key"),
        value["window_start"].as_i64().expect("window_start"),
        value["count"].as_u64().expect("count"),
    )
}
