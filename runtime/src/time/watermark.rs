//! A partition's event clock: its stream time (the largest record timestamp seen) and
//! its watermark (stream time minus the allowed out-of-orderness).
//!
//! The watermark is what the partition promises: no record older than it is on time.
//! It advances record by record, never backwards, and depends only on the records
//! processed (a failed record's advance is rolled back with its writes), never on
//! batch boundaries, so a replay after a crash judges every record as the first run
//! did.

/// No record seen yet: the watermark is at the beginning of time.
pub const NO_TIME: i64 = i64::MIN;

/// Stream time and watermark of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventClock {
    stream_time: i64,
    max_out_of_orderness_ms: i64,
}

impl EventClock {
    /// A clock that has seen no record, allowing records `max_out_of_orderness_ms`
    /// behind the newest to still be on time.
    pub fn new(max_out_of_orderness_ms: u64) -> Self {
        Self {
            stream_time: NO_TIME,
            max_out_of_orderness_ms: i64::try_from(max_out_of_orderness_ms).unwrap_or(i64::MAX),
        }
    }

    /// A clock resumed at `stream_time` (from [`EventClock::encode`]'s bytes).
    pub fn resumed(max_out_of_orderness_ms: u64, stream_time: i64) -> Self {
        Self {
            stream_time,
            ..Self::new(max_out_of_orderness_ms)
        }
    }

    /// The largest record timestamp seen, or [`NO_TIME`].
    pub fn stream_time(&self) -> i64 {
        self.stream_time
    }

    /// Every record older than this is late.
    pub fn watermark(&self) -> i64 {
        if self.stream_time == NO_TIME {
            NO_TIME
        } else {
            self.stream_time
                .saturating_sub(self.max_out_of_orderness_ms)
        }
    }

    /// Take in a record's timestamp. A negative timestamp (Kafka's "none") moves
    /// nothing.
    pub fn observe(&mut self, timestamp: i64) {
        if timestamp >= 0 {
            self.stream_time = self.stream_time.max(timestamp);
        }
    }

    /// The watermark each of `timestamps` meets on arrival (the one left by the
    /// records before it), advancing the clock past all of them.
    pub fn watermarks_met(&mut self, timestamps: impl IntoIterator<Item = i64>) -> Vec<i64> {
        timestamps
            .into_iter()
            .map(|timestamp| {
                let met = self.watermark();
                self.observe(timestamp);
                met
            })
            .collect()
    }

    /// The stream time as stored in state (8 bytes, big-endian).
    pub fn encode(&self) -> [u8; 8] {
        self.stream_time.to_be_bytes()
    }

    /// The stream time [`encode`](Self::encode) stored; `None` for anything else.
    pub fn decode_stream_time(bytes: &[u8]) -> Option<i64> {
        Some(i64::from_be_bytes(bytes.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_trails_the_newest_record_and_never_goes_back() {
        let mut clock = EventClock::new(10);
        assert_eq!(clock.watermark(), NO_TIME);
        let met = clock.watermarks_met([100, 95, 130, 120, -1, 131]);
        assert_eq!(met, vec![NO_TIME, 90, 90, 120, 120, 120]);
        assert_eq!(clock.stream_time(), 131);
        assert_eq!(clock.watermark(), 121);
    }

    #[test]
    fn batch_boundaries_do_not_change_what_a_record_meets() {
        let timestamps: Vec<i64> = (0..200).map(|i| (i * 7919) % 1000).collect();
        let whole = EventClock::new(50).watermarks_met(timestamps.iter().copied());
        for cut in [1, 3, 64, 199] {
            let mut clock = EventClock::new(50);
            let mut pieces = Vec::new();
            for chunk in timestamps.chunks(cut) {
                pieces.extend(clock.watermarks_met(chunk.iter().copied()));
            }
            assert_eq!(pieces, whole, "batches of {cut}");
        }
    }

    #[test]
    fn the_clock_resumes_from_its_stored_bytes() {
        let mut clock = EventClock::new(5);
        clock.observe(1_700_000_000_000);
        let stored = EventClock::decode_stream_time(&clock.encode()).unwrap();
        assert_eq!(EventClock::resumed(5, stored), clock);
        assert_eq!(EventClock::decode_stream_time(b"short"), None);
    }

    #[test]
    fn a_huge_allowance_saturates_instead_of_wrapping() {
        let mut clock = EventClock::new(u64::MAX);
        clock.observe(3);
        assert_eq!(clock.watermark(), 3 - i64::MAX);
    }
}
