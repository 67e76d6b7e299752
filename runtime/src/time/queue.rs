//! The earliest timers of one domain, in memory: what makes finding and firing the
//! timers due cost a lookup instead of a scan of the partition's state.
//!
//! A scan of the timer range from its start walks every timer fired since the last
//! checkpoint (deleted in the write buffer) and, after checkpoints, their tombstones
//! in RocksDB: a firing point that fires n timers in groups paid for n²/group entries
//! (9.2k timers/s for 100,000 timers due at once, BENCHMARKS.md). The head instead
//! holds *every* pending timer up to a bound, so the next ones due are its first, and
//! when it runs dry the next page is read from the state strictly after the bound,
//! past everything fired before.
//!
//! Pure bookkeeping: the caller reads the pages from the state and keeps the head in
//! step with every timer it writes. Anything it cannot follow (a batch rolled back)
//! makes it [`forget`](TimerHead::forget) and start again from the state.

use std::collections::BTreeSet;

use super::Timer;

/// Timers read from the state per page, when their keys are small: the head holds at
/// most twice as many (those set below its bound) and [`MOST_BYTES`] of them, so a
/// partition's head stays under about a megabyte whatever its timers' keys.
pub const PAGE: usize = 2_048;
const MOST_HELD: usize = 2 * PAGE;
/// Bytes a page of timers may read ([`PAGE`] small ones); the engine reads a page of
/// [`SMALL_PAGE`] instead when their keys are too large for that.
pub const PAGE_BYTES: usize = 256 << 10;
/// A page of timers whose keys may be as large as a state key can be (64 KiB by
/// default).
pub const SMALL_PAGE: usize = 8;
/// Memory the head may hold before it trims: twice a page's.
const MOST_BYTES: usize = 2 * PAGE_BYTES;
/// What a held timer costs besides its key: the `Timer` and its B-tree slot, roughly.
const HELD_OVERHEAD: usize = 64;

fn held_size(timer: &Timer) -> usize {
    timer.key.len() + HELD_OVERHEAD
}

/// What the head knows of the state's timers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Known {
    /// Nothing: the next page starts at the beginning of the range.
    Nothing,
    /// Every pending timer up to and including this one is held.
    UpTo(Timer),
    /// Every pending timer is held.
    All,
}

/// The earliest pending timers of one domain, all of them up to a bound.
#[derive(Debug)]
pub struct TimerHead {
    held: BTreeSet<Timer>,
    /// Memory of `held`, by [`held_size`].
    held_bytes: usize,
    known: Known,
}

impl Default for TimerHead {
    fn default() -> Self {
        Self {
            held: BTreeSet::new(),
            held_bytes: 0,
            known: Known::Nothing,
        }
    }
}

impl TimerHead {
    /// Drop what is held: the state changed in a way the head did not follow.
    pub fn forget(&mut self) {
        self.held.clear();
        self.held_bytes = 0;
        self.known = Known::Nothing;
    }

    /// The page to read before the head can answer: `Some(after)` to read the
    /// timers strictly after `after` (from the start when `None`), `None` when it can
    /// answer already (it holds a timer, or knows there is none).
    pub fn wants_page(&self) -> Option<Option<&Timer>> {
        if !self.held.is_empty() {
            return None;
        }
        match &self.known {
            Known::Nothing => Some(None),
            Known::UpTo(bound) => Some(Some(bound)),
            Known::All => None,
        }
    }

    /// The page [`wants_page`](Self::wants_page) asked for, in order: `complete` when
    /// it ended short of the page's size because the state has no more.
    pub fn add_page(&mut self, page: Vec<Timer>, complete: bool) {
        debug_assert!(complete || !page.is_empty(), "a full page holds timers");
        let last = page.last().cloned();
        self.held_bytes += page.iter().map(held_size).sum::<usize>();
        self.held.extend(page);
        self.known = match last {
            Some(last) if !complete => Known::UpTo(last),
            _ => Known::All,
        };
    }

    /// The earliest timer, once [`wants_page`](Self::wants_page) is satisfied.
    pub fn first(&self) -> Option<&Timer> {
        self.held.first()
    }

    /// Take the earliest timer if `due` says it is due.
    pub fn pop_if(&mut self, due: impl FnOnce(&Timer) -> bool) -> Option<Timer> {
        if !due(self.held.first()?) {
            return None;
        }
        let timer = self.held.pop_first()?;
        self.held_bytes -= held_size(&timer);
        Some(timer)
    }

    /// A timer was written to the state: held if it falls within what the head
    /// knows. Past [`MOST_HELD`] timers or [`MOST_BYTES`] the latest held go back to
    /// being only in the state, down to half of either, and the bound moves down to
    /// the last one kept.
    pub fn set(&mut self, timer: Timer) {
        let within = match &self.known {
            Known::Nothing => false,
            Known::UpTo(bound) => timer <= *bound,
            Known::All => true,
        };
        if !within {
            return;
        }
        let size = held_size(&timer);
        if self.held.insert(timer) {
            self.held_bytes += size;
        }
        if self.held.len() > MOST_HELD || self.held_bytes > MOST_BYTES {
            while self.held.len() > 1
                && (self.held.len() > PAGE || self.held_bytes > MOST_BYTES / 2)
            {
                let last = self.held.pop_last().expect("more than one held");
                self.held_bytes -= held_size(&last);
            }
            let last = self.held.last().cloned().expect("one timer is left");
            self.known = Known::UpTo(last);
        }
    }

    /// A timer was deleted from the state.
    pub fn delete(&mut self, timer: &Timer) {
        if self.held.remove(timer) {
            self.held_bytes -= held_size(timer);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::time::TimeDomain;

    fn timer(at: i64, key: u8) -> Timer {
        Timer::new(TimeDomain::Event, at, vec![key])
    }

    /// splitmix64: reproducible random steps without a dependency.
    struct Dice(u64);

    impl Dice {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) % n
        }

        fn timer(&mut self) -> Timer {
            timer(self.below(5_000) as i64, self.below(256) as u8)
        }
    }

    /// Answer the head's page request from `state`, as the engine does.
    fn fill(head: &mut TimerHead, state: &BTreeSet<Timer>) {
        if let Some(after) = head.wants_page() {
            let page: Vec<Timer> = state
                .iter()
                .filter(|t| after.is_none_or(|after| *t > after))
                .take(PAGE)
                .cloned()
                .collect();
            let complete = page.len() < PAGE;
            head.add_page(page, complete);
        }
    }

    /// The head against a plain set of every pending timer (the state): whatever is
    /// set, deleted, popped or forgotten, in random order, the head's first is the
    /// set's first and what it pops is what is due.
    #[test]
    fn the_head_always_shows_the_earliest_pending_timer() {
        for seed in 0..20 {
            let mut dice = Dice(seed);
            let initial = dice.below(3 * PAGE as u64);
            let mut state: BTreeSet<Timer> = (0..initial).map(|_| dice.timer()).collect();
            let mut head = TimerHead::default();
            for _ in 0..6_000 {
                match dice.below(9) {
                    0..4 => {
                        let t = dice.timer();
                        state.insert(t.clone());
                        head.set(t);
                    }
                    4 => {
                        let t = dice.timer();
                        state.remove(&t);
                        head.delete(&t);
                    }
                    5..8 => {
                        let upto = dice.below(5_000) as i64;
                        fill(&mut head, &state);
                        let popped = head.pop_if(|t| t.at <= upto);
                        let due = state.first().filter(|t| t.at <= upto).cloned();
                        assert_eq!(popped, due, "seed {seed}");
                        if let Some(popped) = popped {
                            state.remove(&popped);
                        }
                    }
                    _ => head.forget(),
                }
                fill(&mut head, &state);
                assert_eq!(head.first(), state.first(), "seed {seed}");
                assert!(head.held.len() <= MOST_HELD);
                let bytes: usize = head.held.iter().map(held_size).sum();
                assert_eq!(head.held_bytes, bytes, "seed {seed}");
            }
        }
    }

    #[test]
    fn a_head_past_its_size_keeps_the_earliest_and_lowers_its_bound() {
        let mut head = TimerHead::default();
        head.add_page(Vec::new(), true);
        for at in (0..=MOST_HELD as i64).rev() {
            head.set(timer(at, 0));
        }
        assert_eq!(head.held.len(), PAGE);
        assert_eq!(head.first(), Some(&timer(0, 0)));
        let bound = timer(PAGE as i64 - 1, 0);
        assert_eq!(head.known, Known::UpTo(bound.clone()));
        head.set(timer(PAGE as i64 + 5, 0));
        assert_eq!(head.held.len(), PAGE, "past the bound: only in the state");
        for _ in 0..PAGE {
            assert!(head.pop_if(|_| true).is_some());
        }
        assert_eq!(head.wants_page(), Some(Some(&bound)));
    }

    #[test]
    fn timers_with_large_keys_are_held_by_bytes_not_by_count() {
        let mut head = TimerHead::default();
        head.add_page(Vec::new(), true);
        let large = |at: i64| Timer::new(TimeDomain::Event, at, vec![7; 64 << 10]);
        for at in 0..100 {
            head.set(large(at));
            assert!(
                head.held_bytes <= MOST_BYTES,
                "{} bytes held",
                head.held_bytes
            );
        }
        assert!(head.held.len() < 100);
        assert_eq!(head.first(), Some(&large(0)));
        let Known::UpTo(bound) = &head.known else {
            panic!("trimmed: {:?}", head.known);
        };
        assert_eq!(Some(bound), head.held.last());
    }
}
