//! Where a partition's fetch stands, and what to make of each record fetched.
//!
//! A partition is processed in offset order from a known position: the
//! committed offset, or the log start for a partition the group never committed. Two
//! things can arrive that are not the next record:
//!
//! * a record *before* the position: fetched before the last seek (librdkafka may still
//!   hold it), or the rest of a batch the broker answered a fetch inside of. Its
//!   effects are already in state or will be redone: skip it.
//! * a record *after* the position, first after a seek. Offsets can be missing for
//!   good reasons (transaction markers, records of aborted transactions a
//!   `read_committed` consumer never sees, compaction, retention), but a broker that
//!   answers a fetch with the wrong batch, or a fetch that started before the seek took
//!   effect, looks the same, and taking the record would commit past records never
//!   processed. So the task seeks back to the position once more: if the same record
//!   comes first again, the gap is real and `explained`; if an earlier one comes, the
//!   first answer was wrong and the gap is `recovered`. Answers that keep disagreeing
//!   leave the gap unsettled, and the partition stops rather than guess.
//!
//! Gaps in mid-stream (between two records of one fetch run) are the markers and
//! aborted records of transactional inputs, and are taken as they come.
//!
//! Pure logic: the task does the seeking and counting.

/// How often one position is fetched again while the first record after it keeps
/// changing, before the gap is called unsettled.
const MAX_VERIFICATIONS: u32 = 5;

/// What to do with a fetched record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Process it: it is the next record (or the first after a real gap).
    Take { gap: Option<GapOutcome> },
    /// Drop it: it is before the position.
    Skip,
    /// Drop it and fetch again from `to`: records may be missing before it.
    SeekBack { to: i64 },
    /// The broker's answers after a seek to `expected` kept disagreeing (the last two
    /// began at `first` and `then`): whether records are missing is unknown, so nothing
    /// past `expected` may be processed.
    Unsettled {
        expected: i64,
        first: i64,
        then: i64,
    },
}

/// How a gap after a seek turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapOutcome {
    /// Seeking back found records the first fetch had skipped.
    Recovered,
    /// The same record came first again: the offsets between do not exist.
    Explained,
}

impl GapOutcome {
    pub fn label(self) -> &'static str {
        match self {
            GapOutcome::Recovered => "recovered",
            GapOutcome::Explained => "explained",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Mid-stream: records come as the broker has them.
    None,
    /// A seek happened: the next record must be the position, or is verified.
    AfterSeek,
    /// A gap was seen up to `seen` and the position fetched again.
    Verifying { seen: i64, attempts: u32 },
}

/// The position of one partition's fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    next: i64,
    check: Check,
    /// A gap was recovered while verifying: reported with the record that ends it.
    recovered: bool,
}

impl Position {
    /// Fetching starts at `next` (a seek to it was made).
    pub fn at(next: i64) -> Self {
        Self {
            next,
            check: Check::AfterSeek,
            recovered: false,
        }
    }

    /// The next offset to process.
    pub fn next(&self) -> i64 {
        self.next
    }

    /// The task sought to `to` (a rewind): the first record after it is checked.
    pub fn seeked(&mut self, to: i64) {
        *self = Self::at(to);
    }

    /// Judge the record at `offset`, the next one the fetch returned.
    pub fn judge(&mut self, offset: i64) -> Verdict {
        if offset < self.next {
            return Verdict::Skip;
        }
        let gap = match self.check {
            // Verifying: the position itself came, which the first answer skipped.
            Check::Verifying { .. } if offset == self.next => Some(GapOutcome::Recovered),
            _ if offset == self.next => None,
            Check::None => None,
            Check::AfterSeek => {
                self.check = Check::Verifying {
                    seen: offset,
                    attempts: 1,
                };
                return Verdict::SeekBack { to: self.next };
            }
            // The same first record again: the offsets before it are not in the log.
            Check::Verifying { seen, .. } if offset == seen => Some(if self.recovered {
                GapOutcome::Recovered
            } else {
                GapOutcome::Explained
            }),
            // Another answer: earlier records appeared (the last answer skipped them)
            // or later ones (records went, by retention or compaction): ask again.
            Check::Verifying { seen, attempts } => {
                if attempts >= MAX_VERIFICATIONS {
                    return Verdict::Unsettled {
                        expected: self.next,
                        first: seen,
                        then: offset,
                    };
                }
                self.recovered |= offset < seen;
                self.check = Check::Verifying {
                    seen: offset,
                    attempts: attempts + 1,
                };
                return Verdict::SeekBack { to: self.next };
            }
        };
        self.next = offset + 1;
        self.check = Check::None;
        self.recovered = false;
        Verdict::Take { gap }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_in_order_are_taken_and_earlier_ones_skipped() {
        let mut position = Position::at(10);
        assert_eq!(position.judge(8), Verdict::Skip);
        assert_eq!(position.judge(10), Verdict::Take { gap: None });
        assert_eq!(position.judge(11), Verdict::Take { gap: None });
        assert_eq!(position.judge(11), Verdict::Skip);
        assert_eq!(position.next(), 12);
    }

    #[test]
    fn a_gap_after_a_seek_is_fetched_again_and_explained_when_it_stays() {
        let mut position = Position::at(10);
        assert_eq!(position.judge(14), Verdict::SeekBack { to: 10 });
        assert_eq!(position.next(), 10, "nothing was taken");
        assert_eq!(
            position.judge(14),
            Verdict::Take {
                gap: Some(GapOutcome::Explained)
            }
        );
        assert_eq!(position.next(), 15);
        // Mid-stream gaps (transaction markers) are taken as they come.
        assert_eq!(position.judge(17), Verdict::Take { gap: None });
    }

    #[test]
    fn a_gap_that_seeking_back_fills_is_recovered() {
        let mut position = Position::at(10);
        assert_eq!(position.judge(14), Verdict::SeekBack { to: 10 });
        assert_eq!(
            position.judge(10),
            Verdict::Take {
                gap: Some(GapOutcome::Recovered)
            }
        );
        assert_eq!(position.judge(11), Verdict::Take { gap: None });
    }

    #[test]
    fn a_gap_that_shrinks_is_fetched_again_until_it_holds() {
        let mut position = Position::at(10);
        assert_eq!(position.judge(20), Verdict::SeekBack { to: 10 });
        // Offsets 10..12 are markers; 12.. exist and the first fetch skipped them.
        assert_eq!(position.judge(12), Verdict::SeekBack { to: 10 });
        assert_eq!(
            position.judge(12),
            Verdict::Take {
                gap: Some(GapOutcome::Recovered)
            }
        );
        assert_eq!(position.next(), 13);
    }

    #[test]
    fn answers_that_keep_disagreeing_leave_the_gap_unsettled() {
        let mut position = Position::at(0);
        let mut offset = 100;
        let mut seeks = 0;
        let verdict = loop {
            match position.judge(offset) {
                Verdict::SeekBack { to } => {
                    assert_eq!(to, 0);
                    seeks += 1;
                    // Alternately earlier and later: never the same twice.
                    offset = if seeks % 2 == 0 {
                        offset + 7
                    } else {
                        offset - 3
                    };
                }
                other => break other,
            }
        };
        assert!(
            matches!(verdict, Verdict::Unsettled { expected: 0, .. }),
            "{verdict:?}"
        );
        assert_eq!(seeks, MAX_VERIFICATIONS);
        assert_eq!(position.next(), 0, "nothing past the position was taken");
    }

    #[test]
    fn a_later_second_answer_is_asked_again_not_taken() {
        let mut position = Position::at(10);
        assert_eq!(position.judge(12), Verdict::SeekBack { to: 10 });
        // Records 12.. went meanwhile (retention): the new answer is asked again.
        assert_eq!(position.judge(15), Verdict::SeekBack { to: 10 });
        assert_eq!(
            position.judge(15),
            Verdict::Take {
                gap: Some(GapOutcome::Explained)
            }
        );
    }

    #[test]
    fn a_rewind_checks_the_first_record_again() {
        let mut position = Position::at(0);
        assert_eq!(position.judge(0), Verdict::Take { gap: None });
        assert_eq!(position.judge(1), Verdict::Take { gap: None });
        position.seeked(1);
        assert_eq!(position.judge(3), Verdict::SeekBack { to: 1 });
        assert_eq!(
            position.judge(1),
            Verdict::Take {
                gap: Some(GapOutcome::Recovered)
            }
        );
    }
}
