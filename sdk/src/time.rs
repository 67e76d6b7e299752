//! Event time (contract 0.3): the watermark a record meets, and timers.
//!
//! A timer asks the host to call [`Transform::on_timer`](crate::Transform::on_timer)
//! with a key once a time has come: in event time, when the partition's watermark
//! reaches it (before the first record that meets such a watermark); in processing
//! time, when the wall clock does. Timers are state: they are kept, restored and
//! committed with the partition's other writes, and survive hot swaps. A timer fires
//! once; set it again to repeat.

/// The watermark before any record with a timestamp: the beginning of time.
pub const NO_WATERMARK: i64 = i64::MIN;

/// Which clock a timer waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeDomain {
    /// The partition's watermark.
    EventTime,
    /// The wall clock.
    ProcessingTime,
}

/// A timer: `key` is called back once `domain`'s time reaches `at` (milliseconds
/// since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timer {
    pub domain: TimeDomain,
    pub at: i64,
    pub key: Vec<u8>,
}

impl Timer {
    /// An event-time timer.
    pub fn event(at: i64, key: impl Into<Vec<u8>>) -> Self {
        Self {
            domain: TimeDomain::EventTime,
            at,
            key: key.into(),
        }
    }

    /// A processing-time timer.
    pub fn processing(at: i64, key: impl Into<Vec<u8>>) -> Self {
        Self {
            domain: TimeDomain::ProcessingTime,
            at,
            key: key.into(),
        }
    }
}
