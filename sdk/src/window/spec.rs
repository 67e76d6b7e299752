//! Which windows a record falls in and when each closes: pure arithmetic on
//! timestamps, apart from state and timers.

use serde::{Deserialize, Serialize};

use crate::Error;

/// A span of event time: from `start` (inclusive) to `end` (exclusive), in
/// milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

/// How records are grouped in time. Every window is a [`Window`]: start inclusive,
/// end exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Windows {
    /// Windows of `size` ms one after another, aligned to the epoch: a record is in
    /// exactly one.
    Tumbling { size: i64 },
    /// Windows of `size` ms starting every `advance` ms, aligned to the epoch: a
    /// record is in about `size / advance` of them.
    Hopping { size: i64, advance: i64 },
    /// The window of `size` ms that ends at each record, `[t - size + 1, t + 1)`: every
    /// span of `size` that ends at a record, so "more than N events in any `size`" is
    /// "more than N in one of these". Records of the same timestamp share one.
    Sliding { size: i64 },
    /// Sessions: a key's records at most `gap` ms apart, chained, are one session,
    /// from its first record to just after its last.
    Session { gap: i64 },
}

impl Windows {
    pub fn tumbling(size_ms: i64) -> Self {
        Self::Tumbling { size: size_ms }
    }

    pub fn hopping(size_ms: i64, advance_ms: i64) -> Self {
        Self::Hopping {
            size: size_ms,
            advance: advance_ms,
        }
    }

    pub fn sliding(size_ms: i64) -> Self {
        Self::Sliding { size: size_ms }
    }

    pub fn session(gap_ms: i64) -> Self {
        Self::Session { gap: gap_ms }
    }

    /// Refuse sizes that make no windows, with what to change.
    pub(super) fn check(&self) -> Result<(), Error> {
        let positive = |what: &str, ms: i64| {
            if ms > 0 {
                Ok(())
            } else {
                Err(Error::msg(format!(
                    "a window's {what} must be a positive number of milliseconds, not {ms}"
                )))
            }
        };
        match *self {
            Self::Tumbling { size } | Self::Sliding { size } => positive("size", size),
            Self::Hopping { size, advance } => {
                positive("size", size)?;
                positive("advance", advance)?;
                if advance > size {
                    return Err(Error::msg(format!(
                        "a hopping window's advance ({advance} ms) is longer than its size \
                         ({size} ms): records between windows would be lost; use an \
                         advance of at most the size"
                    )));
                }
                Ok(())
            }
            Self::Session { gap } => positive("gap", gap),
        }
    }
}

/// The tumbling or hopping windows of `size` starting every `advance` that hold
/// `timestamp`, earliest first.
pub(super) fn fixed_windows(timestamp: i64, size: i64, advance: i64) -> Vec<Window> {
    let last = timestamp - timestamp.rem_euclid(advance);
    let mut windows: Vec<Window> =
        std::iter::successors(Some(last), |start| start.checked_sub(advance))
            .take_while(|start| start.saturating_add(size) > timestamp)
            .map(|start| Window {
                start,
                end: start.saturating_add(size),
            })
            .collect();
    windows.reverse();
    windows
}

/// The sliding window of `size` that ends at a record at `timestamp`.
pub(super) fn sliding_window(timestamp: i64, size: i64) -> Window {
    let end = timestamp.saturating_add(1);
    Window {
        start: end.saturating_sub(size),
        end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starts(timestamp: i64, size: i64, advance: i64) -> Vec<i64> {
        fixed_windows(timestamp, size, advance)
            .iter()
            .map(|w| {
                assert_eq!(w.end - w.start, size);
                assert!(w.start <= timestamp && timestamp < w.end);
                w.start
            })
            .collect()
    }

    #[test]
    fn a_record_is_in_one_tumbling_window_and_several_hopping_ones() {
        assert_eq!(starts(59_999, 60_000, 60_000), [0]);
        assert_eq!(starts(60_000, 60_000, 60_000), [60_000]);
        assert_eq!(starts(70_000, 60_000, 20_000), [20_000, 40_000, 60_000]);
        assert_eq!(starts(60_000, 60_000, 20_000), [20_000, 40_000, 60_000]);
        assert_eq!(starts(5, 10, 3), [-3, 0, 3]);
        assert_eq!(starts(0, 10, 4), [-8, -4, 0]);
    }

    #[test]
    fn a_sliding_window_ends_just_after_its_record() {
        assert_eq!(
            sliding_window(100, 10),
            Window {
                start: 91,
                end: 101
            }
        );
    }

    #[test]
    fn windows_that_hold_nothing_are_refused() {
        assert!(Windows::tumbling(0).check().is_err());
        assert!(Windows::hopping(10, 20).check().is_err());
        assert!(Windows::session(-1).check().is_err());
        assert!(Windows::sliding(1).check().is_ok());
        assert!(Windows::hopping(10, 10).check().is_ok());
    }
}
