//! How much a guest may log: lines and bytes per second, as token buckets that hold a
//! second's worth. A guest that floods its stdout, stderr or log import costs the host
//! (and the log pipeline behind it) a bounded amount; what goes over is dropped,
//! counted, and said once a second in one line of Weir's own.

use std::time::{Duration, Instant};

/// One instance's log allowance.
#[derive(Debug)]
pub(crate) struct LogBudget {
    lines_per_second: f64,
    bytes_per_second: f64,
    lines: f64,
    bytes: f64,
    refilled: Instant,
    /// Dropped since the last note, and in all (for the metric).
    unnoted: Dropped,
    untaken: u64,
    noted: Instant,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dropped {
    pub lines: u64,
    pub bytes: u64,
}

impl LogBudget {
    pub(crate) fn new(lines_per_second: u32, bytes_per_second: u64, now: Instant) -> Self {
        Self {
            lines_per_second: f64::from(lines_per_second),
            bytes_per_second: bytes_per_second as f64,
            lines: f64::from(lines_per_second),
            bytes: bytes_per_second as f64,
            refilled: now,
            unnoted: Dropped::default(),
            untaken: 0,
            noted: now,
        }
    }

    /// Whether a line of `bytes` may be logged at `now`; if not, it is counted.
    pub(crate) fn admit(&mut self, bytes: usize, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.lines = (self.lines + elapsed * self.lines_per_second).min(self.lines_per_second);
        self.bytes = (self.bytes + elapsed * self.bytes_per_second).min(self.bytes_per_second);
        let bytes = bytes as f64;
        if self.lines >= 1.0 && self.bytes >= bytes {
            self.lines -= 1.0;
            self.bytes -= bytes;
            return true;
        }
        self.unnoted.lines += 1;
        self.unnoted.bytes += bytes as u64;
        self.untaken += 1;
        false
    }

    /// What was dropped since the last note, once a second at most: for a line saying so.
    pub(crate) fn note(&mut self, now: Instant) -> Option<Dropped> {
        if self.unnoted.lines == 0
            || now.saturating_duration_since(self.noted) < Duration::from_secs(1)
        {
            return None;
        }
        self.noted = now;
        Some(std::mem::take(&mut self.unnoted))
    }

    /// Lines dropped since the last call: for the metric.
    pub(crate) fn take_dropped_lines(&mut self) -> u64 {
        std::mem::take(&mut self.untaken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_the_rate_and_counted() {
        let start = Instant::now();
        let mut budget = LogBudget::new(10, 1000, start);
        let admitted = (0..100).filter(|_| budget.admit(10, start)).count();
        assert_eq!(admitted, 10, "a second's worth at once");
        assert_eq!(budget.take_dropped_lines(), 90);
        assert_eq!(budget.note(start), None, "not within the second");
        let later = start + Duration::from_millis(1000);
        assert_eq!(
            budget.note(later),
            Some(Dropped {
                lines: 90,
                bytes: 900
            })
        );
        // A second later the bucket is full again.
        assert_eq!((0..20).filter(|_| budget.admit(10, later)).count(), 10);
    }

    #[test]
    fn bytes_are_a_limit_of_their_own() {
        let start = Instant::now();
        let mut budget = LogBudget::new(100, 100, start);
        assert!(budget.admit(60, start));
        assert!(!budget.admit(60, start), "over the bytes, under the lines");
        assert!(budget.admit(60, start + Duration::from_millis(500)));
    }
}
