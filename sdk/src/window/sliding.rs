//! A key's recent records for sliding windows: each window's value is folded from
//! the records in it when it is emitted, since every record starts a window of its
//! own and windows overlap without limit. Pure, on the list that state keeps.

use super::{Aggregate, Window};

/// A record kept for the windows it is in: its timestamp and input.
pub(super) type Event<I> = (i64, I);

/// Add a record, keeping the list in timestamp order (arrival order among equals).
pub(super) fn insert<I>(events: &mut Vec<Event<I>>, timestamp: i64, input: I) {
    let index = events.partition_point(|(t, _)| *t <= timestamp);
    events.insert(index, (timestamp, input));
}

/// The value of `window`: every kept record in it, folded in timestamp order.
pub(super) fn fold<A: Aggregate>(events: &[Event<A::Input>], window: Window) -> A {
    let mut value = A::default();
    for (_, input) in events
        .iter()
        .skip_while(|(t, _)| *t < window.start)
        .take_while(|(t, _)| *t < window.end)
    {
        value.add(input);
    }
    value
}

/// The timestamps (each once, earliest first) whose windows of `size` hold a record
/// at `timestamp`: its own and those of the later records within `size` of it.
pub(super) fn windows_holding<I>(events: &[Event<I>], timestamp: i64, size: i64) -> Vec<i64> {
    let mut ends: Vec<i64> = events
        .iter()
        .map(|(t, _)| *t)
        .skip_while(|t| *t < timestamp)
        .take_while(|t| *t < timestamp.saturating_add(size))
        .collect();
    ends.dedup();
    ends
}

/// Forget the records no open window holds: those before `from`.
pub(super) fn prune<I>(events: &mut Vec<Event<I>>, from: i64) {
    let gone = events.partition_point(|(t, _)| *t < from);
    events.drain(..gone);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{Count, sliding_window};

    #[test]
    fn a_window_folds_the_records_of_its_span() {
        let mut events = Vec::new();
        for t in [100, 95, 103, 90, 100] {
            insert(&mut events, t, ());
        }
        let times: Vec<i64> = events.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, [90, 95, 100, 100, 103]);
        assert_eq!(fold::<Count>(&events, sliding_window(100, 11)).0, 4);
        assert_eq!(fold::<Count>(&events, sliding_window(100, 6)).0, 3);
        assert_eq!(fold::<Count>(&events, sliding_window(103, 1)).0, 1);
        assert_eq!(windows_holding(&events, 95, 6), [95, 100]);
        assert_eq!(windows_holding(&events, 95, 5), [95]);
        prune(&mut events, 100);
        assert_eq!(events.len(), 3);
    }
}
