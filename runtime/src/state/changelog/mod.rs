//! The changelog: how a partition's state writes are recorded in Kafka, and how a
//! restore decides which of those records to apply.
//!
//! Every checkpoint gets a random id and produces a *marker* record under the reserved
//! empty key, then one record per written key (a delete is a tombstone). The marker
//! carries three headers:
//!
//! * `weir.checkpoint`: the checkpoint's id;
//! * `weir.parent`: the id of the previous checkpoint of this partition (0 before the
//!   first), so checkpoints form a chain;
//! * `weir.offset`: the input offset the checkpoint commits.
//!
//! The state records after it are plain keys and values, as in a Kafka Streams
//! changelog: they belong to the marker before them ([`Framer`]). Headers on every
//! record cost more than the records: on a counter's state write (a 13-byte key, a
//! short value) they were some 75 bytes more for the broker to store and six more
//! fields to parse, and a stateful count end to end ran at 29-43% of a pass-through
//! with them, 50-53% without (BENCHMARKS.md). Changelogs written by earlier versions,
//! with the headers on every record and the marker last, restore the same way; those
//! versions cannot restore a header-less record, so a pipeline can still write the
//! headers on every record (`changelog_format = "every-record"`) while its group mixes
//! versions.
//!
//! The group's committed input offset `C` therefore names the committed *head*: the last
//! checkpoint in the changelog whose marker says `weir.offset = C`. The committed
//! checkpoints are that head and its ancestors; a checkpoint's records are applied only
//! if it is one of them. This does not trust the broker to hide aborted transactions
//! (librdkafka's mock cluster does not), nor to keep offset-commit metadata (not every
//! Kafka-compatible broker does), and it is exact: a transaction that aborted after the
//! same inputs were committed by a retry is still recognised. Nor does it need the
//! changelog to be transactional: under at-least-once the changelog also holds blocks
//! of intervals whose offsets never committed, and they are off the chain the same way.
//!
//! Why this holds: a writer takes a checkpoint's parent from the last checkpoint it
//! *committed*, so a checkpoint named as a parent has committed; and two checkpoints'
//! records never interleave, because a partition is written by one producer at a time:
//! its new owner starts writing only once the group gave it the partition, and a
//! previous owner's transaction still open is fenced (KIP-447: its offsets are refused
//! with the group's new generation) or times out, and is waited for (`start`) before
//! the restore reads past it.
//!
//! This module is pure logic: no Kafka, no RocksDB.

mod framing;

pub use framing::{Framer, Identity, RawRecord, Unframed};

use std::collections::VecDeque;

/// Header naming the checkpoint a changelog record belongs to.
pub const CHECKPOINT_HEADER: &str = "weir.checkpoint";
/// Header naming the checkpoint before it on the partition's chain.
pub const PARENT_HEADER: &str = "weir.parent";
/// Header naming the input offset the checkpoint commits.
pub const OFFSET_HEADER: &str = "weir.offset";

/// Key of a checkpoint's marker record. Transforms may not write it (the engine refuses
/// the empty key), so markers never mix with state.
pub const MARKER_KEY: &[u8] = b"";

/// Id of "no checkpoint yet": the parent of a partition's first checkpoint.
pub const ROOT: u64 = 0;

/// A header value for a checkpoint id: 16 hex digits, readable in any Kafka tool.
pub fn encode_id(id: u64) -> String {
    format!("{id:016x}")
}

/// A checkpoint id from a header value.
pub fn decode_id(bytes: &[u8]) -> Option<u64> {
    let hex = std::str::from_utf8(bytes).ok().filter(|h| h.len() == 16)?;
    u64::from_str_radix(hex, 16).ok()
}

/// One changelog record, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogRecord {
    /// Offset in the changelog partition.
    pub offset: i64,
    pub checkpoint: u64,
    pub parent: u64,
    /// The input offset the checkpoint commits.
    pub input_offset: i64,
    pub key: Vec<u8>,
    /// `None` deletes the key.
    pub value: Option<Vec<u8>>,
}

impl ChangelogRecord {
    /// A checkpoint's marker, not a state write.
    pub fn is_marker(&self) -> bool {
        self.key == MARKER_KEY
    }
}

/// The records of one checkpoint, in changelog order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub checkpoint: u64,
    pub parent: u64,
    pub input_offset: i64,
    pub records: Vec<ChangelogRecord>,
}

impl Block {
    /// Changelog offset of the block's last record: where the next restore may start
    /// (it skips the records of the checkpoint it already has).
    pub fn last_offset(&self) -> i64 {
        self.records.last().map_or(0, |r| r.offset)
    }
}

/// Where local state stands: its last checkpoint, and the input offset that committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    pub head: u64,
    /// `None` for a store that never checkpointed.
    pub offset: Option<i64>,
}

impl Local {
    pub const EMPTY: Local = Local {
        head: ROOT,
        offset: None,
    };
}

/// The changelog and the committed offsets disagree: the local store cannot be brought
/// to the committed state from this changelog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error(
        "changelog checkpoint {named:016x} is not in the history of the local state \
         (local head {local:016x}): the local state does not belong to this consumer \
         group (was the data directory copied, or the changelog topic recreated?). Stop \
         Weir, delete this partition's state directory and start again to rebuild it \
         from the changelog"
    )]
    Diverged { named: u64, local: u64 },
    #[error(
        "the group's committed offset {offset} matches no checkpoint in the changelog. \
         The broker may still be completing transactions (Weir asks again), or the \
         offsets were reset or written by another application, or the changelog topic was \
         deleted: restore the offsets, or delete the partition's state directory and \
         reset the offsets to where processing should start"
    )]
    UnknownOffset { offset: i64 },
    #[error(
        "the changelog holds committed checkpoint {checkpoint:016x} for input offset \
         {checkpoint_offset}, beyond the group's committed offset ({}): the broker gave a \
         stale answer, or the offsets were reset. Weir asks again; if this persists, restore \
         the offsets or delete the partition's state directory and its changelog",
        committed.map_or("none".to_owned(), |o| o.to_string())
    )]
    BehindChangelog {
        checkpoint: u64,
        checkpoint_offset: i64,
        committed: Option<i64>,
    },
    #[error(
        "the consumer group has no committed offset for this partition, but local state \
         is at changelog checkpoint {local:016x}. Offsets were deleted or expired: stop \
         Weir, delete this partition's state directory, and start again"
    )]
    NoCommittedOffset { local: u64 },
}

/// What a restore decided about one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The block committed: apply it.
    Apply(Block),
    /// The block belongs to a transaction that never committed: skip it.
    Discard(Block),
}

/// Replays a changelog partition onto local state in one pass, holding in memory only
/// the blocks not yet known to be committed (normally just the latest one).
///
/// A block is decided when a later block names its parent `p`, or at the end, where
/// `p` is the committed head:
///
/// 1. `p` is the last applied block (or the local head we started from): every pending
///    block aborted.
/// 2. `p` is a pending block: it committed, and so did its pending ancestors; the other
///    blocks before it did not (a committed block is an ancestor of every later
///    committed block, because the chain is linear).
/// 3. A later block names a `p` never seen: its records were compacted away, which
///    only a broker that also removes aborted transactions does (Kafka's log cleaner
///    does), so the pending blocks are trusted and applied.
///
/// Records of the local head's own checkpoint are skipped (a restore starts after that
/// block; earlier versions of Weir started at its last record). Anything else that
/// breaks the chain (it restarting from [`ROOT`], a committed head the changelog never
/// reaches) means the local state and the group's history disagree.
#[derive(Debug)]
pub struct Restorer {
    local: Local,
    committed_offset: Option<i64>,
    /// The last checkpoint seen whose records commit `committed_offset`.
    committed_head: Option<u64>,
    /// The head after the last applied block.
    applied: u64,
    pending: VecDeque<Block>,
}

impl Restorer {
    /// Start from `local` state, towards the group's `committed_offset` (`None` when the
    /// group has none for the partition).
    pub fn new(local: Local, committed_offset: Option<i64>) -> Self {
        Self {
            local,
            committed_offset,
            committed_head: None,
            applied: local.head,
            pending: VecDeque::new(),
        }
    }

    /// Whether local state is already at the committed offset: nothing to replay.
    pub fn is_current(&self) -> bool {
        self.committed_offset.is_some() && self.local.offset == self.committed_offset
    }

    /// Feed the next record, in changelog order; returns the blocks it decided.
    pub fn push(&mut self, record: ChangelogRecord) -> Result<Vec<Decision>, RestoreError> {
        if record.checkpoint == self.local.head {
            return Ok(Vec::new());
        }
        if Some(record.input_offset) == self.committed_offset {
            self.committed_head = Some(record.checkpoint);
        }
        if let Some(block) = self
            .pending
            .iter_mut()
            .find(|b| b.checkpoint == record.checkpoint)
        {
            block.records.push(record);
            return Ok(Vec::new());
        }
        let decisions = match self.resolve(record.parent)? {
            Some(decisions) => decisions,
            None if record.parent == ROOT => {
                return Err(RestoreError::Diverged {
                    named: ROOT,
                    local: self.applied,
                });
            }
            None => {
                // Rule 3.
                self.applied = record.parent;
                let decisions: Vec<_> = self.pending.drain(..).map(Decision::Apply).collect();
                self.check_committable(&decisions)?;
                decisions
            }
        };
        self.pending.push_back(Block {
            checkpoint: record.checkpoint,
            parent: record.parent,
            input_offset: record.input_offset,
            records: vec![record],
        });
        Ok(decisions)
    }

    /// The changelog is exhausted: decide the remaining blocks. Returns the last
    /// decisions and the head the state is at after applying them.
    pub fn finish(mut self) -> Result<(Vec<Decision>, u64), RestoreError> {
        let Some(offset) = self.committed_offset else {
            if self.local.head != ROOT {
                return Err(RestoreError::NoCommittedOffset {
                    local: self.local.head,
                });
            }
            // Nothing ever committed: whatever is in the changelog aborted.
            let discarded = self.pending.drain(..).map(Decision::Discard).collect();
            return Ok((discarded, ROOT));
        };
        let committed = match self.committed_head {
            Some(head) => head,
            None if self.local.offset == Some(offset) => self.local.head,
            None => return Err(RestoreError::UnknownOffset { offset }),
        };
        let Some(mut decisions) = self.resolve(committed)? else {
            return Err(RestoreError::Diverged {
                named: committed,
                local: self.applied,
            });
        };
        decisions.extend(self.pending.drain(..).map(Decision::Discard));
        Ok((decisions, self.applied))
    }

    /// A block known to have committed must commit an input offset the group has
    /// committed too (offsets only grow along the chain). If not, the group's answer is
    /// stale or was reset, and applying the block would put local state ahead of it.
    fn check_committable(&self, decisions: &[Decision]) -> Result<(), RestoreError> {
        for decision in decisions {
            if let Decision::Apply(block) = decision
                && self.committed_offset.is_none_or(|c| block.input_offset > c)
            {
                return Err(RestoreError::BehindChangelog {
                    checkpoint: block.checkpoint,
                    checkpoint_offset: block.input_offset,
                    committed: self.committed_offset,
                });
            }
        }
        Ok(())
    }

    /// Decide pending blocks now that `parent` is known to have committed; `None` when
    /// `parent` is neither applied nor pending.
    fn resolve(&mut self, parent: u64) -> Result<Option<Vec<Decision>>, RestoreError> {
        if parent == self.applied {
            return Ok(Some(
                self.pending.drain(..).map(Decision::Discard).collect(),
            ));
        }
        let Some(position) = self.pending.iter().position(|b| b.checkpoint == parent) else {
            return Ok(None);
        };
        // Rule 2: walk the ancestors of `parent` back through the pending blocks. One
        // that is missing was compacted away (rule 3 for the rest of the walk).
        let mut chain = vec![position];
        let mut next = self.pending[position].parent;
        while next != self.applied {
            match self.pending.iter().position(|b| b.checkpoint == next) {
                Some(ancestor) => {
                    chain.push(ancestor);
                    next = self.pending[ancestor].parent;
                }
                None => break,
            }
        }
        let decided: Vec<Block> = self.pending.range(..=position).cloned().collect();
        let decisions: Vec<Decision> = decided
            .into_iter()
            .enumerate()
            .map(|(i, block)| {
                if chain.contains(&i) {
                    Decision::Apply(block)
                } else {
                    Decision::Discard(block)
                }
            })
            .collect();
        self.check_committable(&decisions)?;
        self.pending.drain(..=position);
        self.applied = parent;
        Ok(Some(decisions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record of checkpoint `checkpoint` (parent `parent`) committing input `input`.
    fn record(offset: i64, checkpoint: u64, parent: u64, input: i64, key: &str) -> ChangelogRecord {
        ChangelogRecord {
            offset,
            checkpoint,
            parent,
            input_offset: input,
            key: key.as_bytes().to_vec(),
            value: Some(offset.to_string().into_bytes()),
        }
    }

    /// Run a whole changelog; return the checkpoint ids applied and discarded, and the
    /// head reached.
    fn replay(
        local: Local,
        records: Vec<ChangelogRecord>,
        committed: Option<i64>,
    ) -> Result<(Vec<u64>, Vec<u64>, u64), RestoreError> {
        let mut restorer = Restorer::new(local, committed);
        let mut decisions = Vec::new();
        for r in records {
            decisions.extend(restorer.push(r)?);
        }
        let (last, head) = restorer.finish()?;
        decisions.extend(last);
        let mut applied = Vec::new();
        let mut discarded = Vec::new();
        for d in decisions {
            match d {
                Decision::Apply(b) => applied.push(b.checkpoint),
                Decision::Discard(b) => discarded.push(b.checkpoint),
            }
        }
        Ok((applied, discarded, head))
    }

    fn at(head: u64, offset: i64) -> Local {
        Local {
            head,
            offset: Some(offset),
        }
    }

    #[test]
    fn ids_round_trip_as_hex() {
        assert_eq!(encode_id(0xdead_beef), "00000000deadbeef");
        assert_eq!(decode_id(encode_id(7).as_bytes()), Some(7));
        assert_eq!(decode_id(b"short"), None);
        assert_eq!(decode_id(b"not hex at all!!"), None);
    }

    #[test]
    fn a_linear_committed_chain_is_applied_in_order() {
        let log = vec![
            record(0, 1, ROOT, 10, "a"),
            record(1, 1, ROOT, 10, "b"),
            record(2, 2, 1, 20, "a"),
            record(3, 3, 2, 30, ""),
        ];
        assert_eq!(
            replay(Local::EMPTY, log, Some(30)),
            Ok((vec![1, 2, 3], vec![], 3))
        );
    }

    #[test]
    fn the_last_block_is_discarded_when_its_transaction_never_committed() {
        let log = vec![record(0, 1, ROOT, 10, "a"), record(1, 2, 1, 20, "a")];
        assert_eq!(
            replay(Local::EMPTY, log, Some(10)),
            Ok((vec![1], vec![2], 1))
        );
    }

    #[test]
    fn an_aborted_block_followed_by_a_retry_of_the_same_inputs_is_discarded() {
        // Checkpoint 2 committed input offset 20 but aborted (crash before commit);
        // after restart the same inputs committed as checkpoint 3: same parent, same
        // offset. Only the later one counts.
        let log = vec![
            record(0, 1, ROOT, 10, "a"),
            record(1, 2, 1, 20, "a"),
            record(2, 2, 1, 20, "zombie-only-key"),
            record(3, 3, 1, 20, "a"),
            record(4, 4, 3, 30, "b"),
        ];
        assert_eq!(
            replay(Local::EMPTY, log.clone(), Some(30)),
            Ok((vec![1, 3, 4], vec![2], 4))
        );
        assert_eq!(
            replay(Local::EMPTY, log[..4].to_vec(), Some(20)),
            Ok((vec![1, 3], vec![2], 3))
        );
    }

    #[test]
    fn several_aborted_attempts_in_a_row_are_all_discarded() {
        let log = vec![
            record(0, 1, ROOT, 10, "a"),
            record(1, 2, 1, 15, "a"),
            record(2, 3, 1, 25, "a"),
            record(3, 4, 1, 20, "a"),
        ];
        assert_eq!(
            replay(Local::EMPTY, log, Some(20)),
            Ok((vec![1, 4], vec![2, 3], 4))
        );
    }

    #[test]
    fn an_aborted_first_block_is_discarded() {
        let log = vec![record(0, 9, ROOT, 10, "a"), record(1, 1, ROOT, 10, "a")];
        assert_eq!(
            replay(Local::EMPTY, log, Some(10)),
            Ok((vec![1], vec![9], 1))
        );
    }

    #[test]
    fn a_restore_skips_records_of_the_local_head() {
        // A restore starts after the local head's block (5), as of this version; earlier
        // ones started at its last record.
        let log = vec![
            record(9, 5, 4, 50, "z"),
            record(10, 6, 5, 60, "a"),
            record(11, 7, 6, 70, "b"),
        ];
        assert_eq!(
            replay(at(5, 50), log, Some(70)),
            Ok((vec![6, 7], vec![], 7))
        );
    }

    #[test]
    fn local_state_at_the_committed_offset_is_current() {
        assert!(Restorer::new(at(5, 50), Some(50)).is_current());
        assert!(!Restorer::new(at(5, 50), Some(60)).is_current());
        assert!(!Restorer::new(Local::EMPTY, None).is_current());
        // Read anyway, the aborted tail is discarded.
        let log = vec![record(10, 6, 5, 60, "a")];
        assert_eq!(replay(at(5, 50), log, Some(50)), Ok((vec![], vec![6], 5)));
    }

    #[test]
    fn a_committed_chain_without_a_committed_offset_is_refused_before_applying() {
        // A named as B's parent proves a commit the group does not show (expired or
        // stale offsets): nothing may be applied.
        let mut restorer = Restorer::new(Local::EMPTY, None);
        assert_eq!(restorer.push(record(0, 1, ROOT, 10, "a")), Ok(vec![]));
        assert_eq!(
            restorer.push(record(1, 2, 1, 20, "b")),
            Err(RestoreError::BehindChangelog {
                checkpoint: 1,
                checkpoint_offset: 10,
                committed: None
            })
        );
    }

    #[test]
    fn a_committed_offset_behind_the_changelog_is_refused_before_applying() {
        let mut restorer = Restorer::new(Local::EMPTY, Some(10));
        assert_eq!(restorer.push(record(0, 1, ROOT, 10, "a")), Ok(vec![]));
        assert!(matches!(restorer.push(record(1, 2, 1, 20, "b")), Ok(d) if d.len() == 1));
        assert_eq!(
            restorer.push(record(2, 3, 2, 30, "c")),
            Err(RestoreError::BehindChangelog {
                checkpoint: 2,
                checkpoint_offset: 20,
                committed: Some(10)
            })
        );
    }

    #[test]
    fn nothing_committed_discards_everything() {
        let log = vec![record(0, 1, ROOT, 10, "a")];
        assert_eq!(replay(Local::EMPTY, log, None), Ok((vec![], vec![1], ROOT)));
    }

    #[test]
    fn local_state_without_committed_offsets_is_refused() {
        assert_eq!(
            replay(at(5, 50), vec![], None),
            Err(RestoreError::NoCommittedOffset { local: 5 })
        );
    }

    #[test]
    fn a_committed_offset_no_checkpoint_commits_is_refused() {
        let log = vec![record(10, 6, 5, 60, "a")];
        assert_eq!(
            replay(at(5, 50), log, Some(55)),
            Err(RestoreError::UnknownOffset { offset: 55 })
        );
        assert_eq!(
            replay(Local::EMPTY, vec![], Some(3)),
            Err(RestoreError::UnknownOffset { offset: 3 })
        );
    }

    #[test]
    fn a_changelog_that_restarts_from_the_root_is_refused() {
        let log = vec![record(0, 1, ROOT, 10, "a")];
        assert_eq!(
            replay(at(8, 80), log, Some(10)),
            Err(RestoreError::Diverged {
                named: ROOT,
                local: 8
            })
        );
    }

    #[test]
    fn a_compacted_parent_trusts_the_broker() {
        // Checkpoint 2's records were all compacted away; 3 names it as parent.
        let log = vec![record(0, 1, ROOT, 10, "a"), record(5, 3, 2, 30, "b")];
        assert_eq!(
            replay(Local::EMPTY, log, Some(30)),
            Ok((vec![1, 3], vec![], 3))
        );
    }

    #[test]
    fn records_of_one_block_stay_together() {
        let mut restorer = Restorer::new(Local::EMPTY, Some(20));
        assert_eq!(restorer.push(record(0, 1, ROOT, 10, "a")), Ok(vec![]));
        assert_eq!(restorer.push(record(1, 1, ROOT, 10, "b")), Ok(vec![]));
        let decided = restorer.push(record(2, 2, 1, 20, "c")).unwrap();
        let [Decision::Apply(block)] = decided.as_slice() else {
            panic!("expected one applied block, got {decided:?}")
        };
        assert_eq!(block.records.len(), 2);
        assert_eq!(block.last_offset(), 1);
    }

    /// A writer that crashes before some commits (part way through writing a block, or
    /// after it) and restarts from the committed state, against a model that only ever
    /// sees committed writes. Restoring from any committed point must reproduce the
    /// model exactly, whether the blocks are framed by their markers or, as earlier
    /// versions wrote them, name their checkpoint on every record.
    #[test]
    fn restore_matches_committed_history_under_random_crashes() {
        use std::collections::BTreeMap;

        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..300 {
            let mut log: Vec<RawRecord> = Vec::new();
            let mut model = BTreeMap::new();
            // (local state, last changelog offset it applied, model) after each commit.
            let mut snapshots = vec![(Local::EMPTY, None::<i64>, model.clone())];
            let (mut head, mut committed_offset) = (ROOT, None::<i64>);
            let mut id = 0;
            for _ in 0..(next() % 12) {
                id += 1;
                // A retry after a crash may cover the very same inputs as the attempt
                // that aborted, so offsets repeat.
                let input = committed_offset.unwrap_or(0) + 1 + (next() % 2) as i64;
                let mut writes = BTreeMap::new();
                for _ in 0..(next() % 4) {
                    let key = format!("k{}", next() % 6);
                    let value = (next() % 3 != 0).then(|| id.to_string().into_bytes());
                    writes.insert(key, value);
                }
                let identity = Identity {
                    checkpoint: id,
                    parent: head,
                    input_offset: input,
                };
                let record = |key: Vec<u8>, value, identity| RawRecord {
                    offset: 0,
                    identity,
                    key,
                    value,
                };
                let marker = record(
                    MARKER_KEY.to_vec(),
                    Some(b"marker".to_vec()),
                    Some(identity),
                );
                let old_format = next() % 4 == 0;
                let state = writes.clone().into_iter().map(|(key, value)| {
                    record(key.into_bytes(), value, old_format.then_some(identity))
                });
                let block: Vec<RawRecord> = if old_format {
                    state.chain([marker]).collect()
                } else {
                    [marker].into_iter().chain(state).collect()
                };
                let commits = next() % 3 != 0;
                // A crash part way through leaves some of an aborted block in the log.
                let written = if commits {
                    block.len()
                } else {
                    (next() % (block.len() as u64 + 1)) as usize
                };
                for record in block.into_iter().take(written) {
                    let offset = log.len() as i64;
                    log.push(RawRecord { offset, ..record });
                }
                if commits {
                    for (key, value) in writes {
                        match value {
                            Some(v) => model.insert(key, v),
                            None => model.remove(&key),
                        };
                    }
                    head = id;
                    committed_offset = Some(input);
                    let local = Local {
                        head,
                        offset: Some(input),
                    };
                    snapshots.push((local, Some(log.len() as i64 - 1), model.clone()));
                }
            }
            for (local, position, start) in &snapshots {
                let mut state = start.clone();
                let mut framer = Framer::new();
                let mut restorer = Restorer::new(*local, committed_offset);
                let mut decisions = Vec::new();
                let from = position.map_or(0, |p| p + 1);
                let mut framed = Vec::new();
                for r in log.iter().filter(|r| r.offset >= from) {
                    framer.push(r.clone(), &mut framed);
                    for record in framed.drain(..) {
                        decisions.extend(restorer.push(record).unwrap());
                    }
                }
                framer.finish().unwrap();
                let (last, reached) = restorer.finish().unwrap();
                decisions.extend(last);
                for decision in decisions {
                    if let Decision::Apply(block) = decision {
                        for r in block.records.into_iter().filter(|r| !r.is_marker()) {
                            let key = String::from_utf8(r.key).unwrap();
                            match r.value {
                                Some(v) => state.insert(key, v),
                                None => state.remove(&key),
                            };
                        }
                    }
                }
                assert_eq!(reached, head);
                assert_eq!(state, model, "log {log:?} from {from}");
            }
        }
    }
}
