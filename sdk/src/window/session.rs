//! A key's open sessions and how a record joins them: pure, on the list that state
//! keeps.

use serde::{Deserialize, Serialize};

use super::{Aggregate, Window};

/// One open session of a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Session<A> {
    pub window: Window,
    pub value: A,
}

/// What adding a record to a key's sessions did.
#[derive(Debug, PartialEq)]
pub(super) struct Joined {
    /// The session the record is in now (its index in the list).
    pub index: usize,
    /// The sessions it replaced (merged into it), whose close timers must go.
    pub replaced: Vec<Window>,
}

/// Add a record at `timestamp` to `sessions` (sorted by start, each more than `gap`
/// from the next): it joins every session within `gap` of it, merging them, or
/// starts one of its own. The caller decides first whether a session of its own
/// would already be closed (the record is then late).
pub(super) fn join<A: Aggregate>(
    sessions: &mut Vec<Session<A>>,
    timestamp: i64,
    gap: i64,
    input: &A::Input,
) -> Joined {
    let reaches = |window: &Window| {
        window.start.saturating_sub(gap) <= timestamp && timestamp < window.end.saturating_add(gap)
    };
    let first = sessions.iter().position(|s| reaches(&s.window));
    let Some(first) = first else {
        let index = sessions.partition_point(|s| s.window.start < timestamp);
        let mut value = A::default();
        value.add(input);
        let window = Window {
            start: timestamp,
            end: timestamp.saturating_add(1),
        };
        sessions.insert(index, Session { window, value });
        return Joined {
            index,
            replaced: Vec::new(),
        };
    };
    // Sessions are more than `gap` apart, so those the record reaches are adjacent.
    let last = first
        + sessions[first..]
            .iter()
            .take_while(|s| reaches(&s.window))
            .count();
    let mut merged = sessions.drain(first..last);
    let Session {
        mut window,
        mut value,
    } = merged.next().expect("first reaches");
    let mut replaced = vec![window];
    for session in merged {
        replaced.push(session.window);
        window.end = window.end.max(session.window.end);
        value.merge(session.value);
    }
    window.start = window.start.min(timestamp);
    window.end = window.end.max(timestamp.saturating_add(1));
    value.add(input);
    sessions.insert(first, Session { window, value });
    Joined {
        index: first,
        replaced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::Count;

    fn windows(sessions: &[Session<Count>]) -> Vec<(i64, i64, u64)> {
        sessions
            .iter()
            .map(|s| (s.window.start, s.window.end, s.value.0))
            .collect()
    }

    #[test]
    fn records_within_the_gap_chain_into_one_session() {
        let mut sessions = Vec::new();
        assert_eq!(join::<Count>(&mut sessions, 100, 10, &()).index, 0);
        join::<Count>(&mut sessions, 110, 10, &());
        join::<Count>(&mut sessions, 90, 10, &());
        assert_eq!(windows(&sessions), [(90, 111, 3)]);
        // 11 past the last record: a session of its own.
        let joined = join::<Count>(&mut sessions, 121, 10, &());
        assert_eq!(joined.index, 1);
        assert!(joined.replaced.is_empty());
        assert_eq!(windows(&sessions), [(90, 111, 3), (121, 122, 1)]);
    }

    #[test]
    fn a_record_between_two_sessions_merges_them() {
        let mut sessions = Vec::new();
        join::<Count>(&mut sessions, 0, 10, &());
        join::<Count>(&mut sessions, 20, 10, &());
        join::<Count>(&mut sessions, 100, 10, &());
        assert_eq!(windows(&sessions).len(), 3);
        let joined = join::<Count>(&mut sessions, 10, 10, &());
        assert_eq!(
            joined,
            Joined {
                index: 0,
                replaced: vec![Window { start: 0, end: 1 }, Window { start: 20, end: 21 }],
            }
        );
        assert_eq!(windows(&sessions), [(0, 21, 3), (100, 101, 1)]);
    }

    #[test]
    fn an_early_record_goes_first() {
        let mut sessions = Vec::new();
        join::<Count>(&mut sessions, 500, 10, &());
        assert_eq!(join::<Count>(&mut sessions, 5, 10, &()).index, 0);
        assert_eq!(windows(&sessions), [(5, 6, 1), (500, 501, 1)]);
    }
}
