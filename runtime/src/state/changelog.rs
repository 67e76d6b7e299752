//! The changelog: how a partition's state writes are recorded in Kafka, and how a
//! restore decides which of those records to apply.
//!
//! Every checkpoint that writes state gets a random id and produces one changelog
//! record per written key (a delete is a tombstone). Each record carries three headers:
//!
//! * `weir.checkpoint`: the checkpoint's id;
//! * `weir.parent`: the id of the previous checkpoint of this partition that wrote
//!   state (its *head*, 0 before the first), so checkpoints form a chain;
//! * `weir.offset`: the input offset the checkpoint commits (for people reading the
//!   topic; restore does not need it).
//!
//! The transaction that commits a checkpoint also commits the input offset with the
//! head in its metadata ([`encode_head`]). A restore therefore knows the *committed*
//! head, and a checkpoint's records are kept only if that checkpoint is on the chain
//! that leads to it. This does not trust the broker to hide aborted transactions (the
//! test brokers do not), and it is exact, not a heuristic over offsets: a transaction
//! that aborted after the same inputs were committed by a retry is still recognised.
//!
//! Why a chain suffices: a writer advances its head only after its transaction
//! commits, so a checkpoint named as someone's parent has committed, and two blocks of
//! records never interleave, because each input partition has one transactional id and
//! a new owner fences the old one before it writes. See [`Restorer`] for the rules.
//!
//! This module is pure logic: no Kafka, no RocksDB.

use std::collections::VecDeque;

/// Header naming the checkpoint a changelog record belongs to.
pub const CHECKPOINT_HEADER: &str = "weir.checkpoint";
/// Header naming the checkpoint before it on the partition's chain.
pub const PARENT_HEADER: &str = "weir.parent";
/// Header naming the input offset the checkpoint commits.
pub const OFFSET_HEADER: &str = "weir.offset";

/// Id of "no checkpoint yet": the parent of a partition's first checkpoint.
pub const ROOT: u64 = 0;

/// Prefix of the offset-commit metadata Weir writes, versioned for later changes.
const HEAD_METADATA_PREFIX: &str = "weir1:";

/// Offset-commit metadata recording the partition's changelog head.
pub fn encode_head(head: u64) -> String {
    format!("{HEAD_METADATA_PREFIX}{head:016x}")
}

/// The head recorded by [`encode_head`]; `None` for metadata Weir did not write.
pub fn decode_head(metadata: &str) -> Option<u64> {
    let hex = metadata.strip_prefix(HEAD_METADATA_PREFIX)?;
    u64::from_str_radix(hex, 16).ok()
}

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
    pub key: Vec<u8>,
    /// `None` deletes the key.
    pub value: Option<Vec<u8>>,
}

/// The records of one checkpoint, in changelog order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub checkpoint: u64,
    pub parent: u64,
    pub records: Vec<ChangelogRecord>,
}

impl Block {
    /// The changelog offset after this block's last record.
    pub fn end(&self) -> i64 {
        self.records.last().map_or(0, |r| r.offset + 1)
    }
}

/// The changelog and the committed offsets disagree: the local store cannot be brought
/// to the committed state from this changelog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error(
        "changelog checkpoint {named:016x} is not in the history of the local state \
         (local head {local:016x}): the local state does not belong to this consumer \
         group (was the data directory copied, or were offsets reset?). Stop Weir, \
         delete this partition's state directory and start again to rebuild it from \
         the changelog"
    )]
    Diverged { named: u64, local: u64 },
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
/// Anything else (the chain restarting from [`ROOT`], a committed head the changelog
/// never reaches) means the local state and the group's history disagree.
#[derive(Debug)]
pub struct Restorer {
    /// The head after the last applied block.
    applied: u64,
    pending: VecDeque<Block>,
}

impl Restorer {
    /// Start from local state whose head is `local_head`.
    pub fn new(local_head: u64) -> Self {
        Self {
            applied: local_head,
            pending: VecDeque::new(),
        }
    }

    /// Feed the next record, in changelog order; returns the blocks it decided.
    pub fn push(&mut self, record: ChangelogRecord) -> Result<Vec<Decision>, RestoreError> {
        if let Some(block) = self
            .pending
            .iter_mut()
            .find(|b| b.checkpoint == record.checkpoint)
        {
            block.records.push(record);
            return Ok(Vec::new());
        }
        let decisions = match self.resolve(record.parent) {
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
                self.pending.drain(..).map(Decision::Apply).collect()
            }
        };
        self.pending.push_back(Block {
            checkpoint: record.checkpoint,
            parent: record.parent,
            records: vec![record],
        });
        Ok(decisions)
    }

    /// The changelog is exhausted. `committed_head` is the head in the committed offset
    /// metadata, `None` when the group has no committed offset for the partition.
    /// Returns the last decisions and the head the state is at after applying them.
    pub fn finish(
        mut self,
        committed_head: Option<u64>,
    ) -> Result<(Vec<Decision>, u64), RestoreError> {
        let Some(committed) = committed_head else {
            if self.applied != ROOT {
                return Err(RestoreError::NoCommittedOffset {
                    local: self.applied,
                });
            }
            // Nothing ever committed: whatever is in the changelog aborted.
            let discarded = self.pending.drain(..).map(Decision::Discard).collect();
            return Ok((discarded, ROOT));
        };
        let Some(mut decisions) = self.resolve(committed) else {
            return Err(RestoreError::Diverged {
                named: committed,
                local: self.applied,
            });
        };
        decisions.extend(self.pending.drain(..).map(Decision::Discard));
        Ok((decisions, self.applied))
    }

    /// Decide pending blocks now that `parent` is known to have committed; `None` when
    /// `parent` is neither applied nor pending.
    fn resolve(&mut self, parent: u64) -> Option<Vec<Decision>> {
        if parent == self.applied {
            return Some(self.pending.drain(..).map(Decision::Discard).collect());
        }
        let position = self.pending.iter().position(|b| b.checkpoint == parent)?;
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
        self.applied = parent;
        let decided: Vec<Block> = self.pending.drain(..=position).collect();
        Some(
            decided
                .into_iter()
                .enumerate()
                .map(|(i, block)| {
                    if chain.contains(&i) {
                        Decision::Apply(block)
                    } else {
                        Decision::Discard(block)
                    }
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: i64, checkpoint: u64, parent: u64, key: &str) -> ChangelogRecord {
        ChangelogRecord {
            offset,
            checkpoint,
            parent,
            key: key.as_bytes().to_vec(),
            value: Some(offset.to_string().into_bytes()),
        }
    }

    /// Run a whole changelog; return the checkpoint ids applied and discarded.
    fn replay(
        local: u64,
        records: Vec<ChangelogRecord>,
        committed: Option<u64>,
    ) -> Result<(Vec<u64>, Vec<u64>, u64), RestoreError> {
        let mut restorer = Restorer::new(local);
        let mut decisions = Vec::new();
        for r in records {
            decisions.extend(restorer.push(r)?);
        }
        let (last, head) = restorer.finish(committed)?;
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

    #[test]
    fn head_metadata_round_trips_and_ignores_foreign_metadata() {
        assert_eq!(decode_head(&encode_head(0xdead_beef)), Some(0xdead_beef));
        assert_eq!(decode_head(""), None);
        assert_eq!(decode_head("someone else's"), None);
        assert_eq!(decode_id(encode_id(7).as_bytes()), Some(7));
        assert_eq!(decode_id(b"short"), None);
    }

    #[test]
    fn a_linear_committed_chain_is_applied_in_order() {
        let log = vec![
            record(0, 1, ROOT, "a"),
            record(1, 1, ROOT, "b"),
            record(2, 2, 1, "a"),
            record(3, 3, 2, "c"),
        ];
        assert_eq!(replay(ROOT, log, Some(3)), Ok((vec![1, 2, 3], vec![], 3)));
    }

    #[test]
    fn the_last_block_is_discarded_when_its_transaction_never_committed() {
        let log = vec![record(0, 1, ROOT, "a"), record(1, 2, 1, "a")];
        assert_eq!(replay(ROOT, log, Some(1)), Ok((vec![1], vec![2], 1)));
    }

    #[test]
    fn an_aborted_block_followed_by_its_retry_is_discarded() {
        // Checkpoint 2 aborted (crash before commit); after restart the same inputs
        // were committed as checkpoint 3 with the same parent.
        let log = vec![
            record(0, 1, ROOT, "a"),
            record(1, 2, 1, "a"),
            record(2, 2, 1, "zombie-only-key"),
            record(3, 3, 1, "a"),
            record(4, 4, 3, "b"),
        ];
        assert_eq!(replay(ROOT, log, Some(4)), Ok((vec![1, 3, 4], vec![2], 4)));
    }

    #[test]
    fn several_aborted_attempts_in_a_row_are_all_discarded() {
        let log = vec![
            record(0, 1, ROOT, "a"),
            record(1, 2, 1, "a"),
            record(2, 3, 1, "a"),
            record(3, 4, 1, "a"),
        ];
        assert_eq!(replay(ROOT, log, Some(4)), Ok((vec![1, 4], vec![2, 3], 4)));
    }

    #[test]
    fn an_aborted_first_block_is_discarded() {
        let log = vec![record(0, 9, ROOT, "a"), record(1, 1, ROOT, "a")];
        assert_eq!(replay(ROOT, log, Some(1)), Ok((vec![1], vec![9], 1)));
    }

    #[test]
    fn a_restore_resumes_from_the_local_head() {
        // Local state already holds checkpoint 5; the changelog tail starts after it.
        let log = vec![record(10, 6, 5, "a"), record(11, 7, 6, "b")];
        assert_eq!(replay(5, log, Some(7)), Ok((vec![6, 7], vec![], 7)));
    }

    #[test]
    fn local_state_at_the_committed_head_applies_nothing_and_drops_aborted_tail() {
        let log = vec![record(10, 6, 5, "a")];
        assert_eq!(replay(5, log, Some(5)), Ok((vec![], vec![6], 5)));
    }

    #[test]
    fn nothing_committed_discards_everything() {
        let log = vec![record(0, 1, ROOT, "a")];
        assert_eq!(replay(ROOT, log, None), Ok((vec![], vec![1], ROOT)));
    }

    #[test]
    fn local_state_without_committed_offsets_is_refused() {
        assert_eq!(
            replay(5, vec![], None),
            Err(RestoreError::NoCommittedOffset { local: 5 })
        );
    }

    #[test]
    fn a_committed_head_that_the_changelog_does_not_reach_is_refused() {
        let log = vec![record(10, 6, 5, "a")];
        assert_eq!(
            replay(5, log, Some(3)),
            Err(RestoreError::Diverged { named: 3, local: 5 })
        );
        assert_eq!(
            replay(8, vec![], Some(3)),
            Err(RestoreError::Diverged { named: 3, local: 8 })
        );
    }

    #[test]
    fn a_changelog_that_restarts_from_the_root_is_refused() {
        let log = vec![record(0, 1, ROOT, "a")];
        assert_eq!(
            replay(8, log, Some(1)),
            Err(RestoreError::Diverged {
                named: ROOT,
                local: 8
            })
        );
    }

    #[test]
    fn a_compacted_parent_trusts_the_broker() {
        // Checkpoint 2's records were all compacted away; 3 names it as parent.
        let log = vec![record(0, 1, ROOT, "a"), record(5, 3, 2, "b")];
        assert_eq!(replay(ROOT, log, Some(3)), Ok((vec![1, 3], vec![], 3)));
    }

    #[test]
    fn records_of_one_block_stay_together() {
        let mut restorer = Restorer::new(ROOT);
        assert_eq!(restorer.push(record(0, 1, ROOT, "a")), Ok(vec![]));
        assert_eq!(restorer.push(record(1, 1, ROOT, "b")), Ok(vec![]));
        let decided = restorer.push(record(2, 2, 1, "c")).unwrap();
        let [Decision::Apply(block)] = decided.as_slice() else {
            panic!("expected one applied block, got {decided:?}")
        };
        assert_eq!(block.records.len(), 2);
        assert_eq!(block.end(), 2);
    }

    /// A writer that crashes before some commits and restarts from the committed head,
    /// against a model that only ever sees committed writes. Restoring from any
    /// committed point must reproduce the model exactly.
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
        for _ in 0..200 {
            let mut log = Vec::new();
            let mut model = BTreeMap::new();
            // (changelog position, head, model) after each commit: places to restore from.
            let mut snapshots = vec![(0_i64, ROOT, model.clone())];
            let mut head = ROOT;
            let mut id = 0;
            for _ in 0..(next() % 12) {
                id += 1;
                let mut writes = BTreeMap::new();
                for _ in 0..=(next() % 4) {
                    let key = format!("k{}", next() % 6);
                    let value = (next() % 3 != 0).then(|| id.to_string().into_bytes());
                    writes.insert(key, value);
                }
                for (key, value) in &writes {
                    log.push(ChangelogRecord {
                        offset: log.len() as i64,
                        checkpoint: id,
                        parent: head,
                        key: key.clone().into_bytes(),
                        value: value.clone(),
                    });
                }
                if next() % 3 != 0 {
                    for (key, value) in writes {
                        match value {
                            Some(v) => model.insert(key, v),
                            None => model.remove(&key),
                        };
                    }
                    head = id;
                    snapshots.push((log.len() as i64, head, model.clone()));
                }
            }
            for (position, local_head, start) in &snapshots {
                let mut state = start.clone();
                let mut restorer = Restorer::new(*local_head);
                let mut decisions = Vec::new();
                for r in log.iter().filter(|r| r.offset >= *position) {
                    decisions.extend(restorer.push(r.clone()).unwrap());
                }
                let committed = (head != ROOT || *local_head != ROOT).then_some(head);
                let (last, reached) = restorer.finish(committed).unwrap();
                decisions.extend(last);
                for decision in decisions {
                    if let Decision::Apply(block) = decision {
                        for r in block.records {
                            let key = String::from_utf8(r.key).unwrap();
                            match r.value {
                                Some(v) => state.insert(key, v),
                                None => state.remove(&key),
                            };
                        }
                    }
                }
                assert_eq!(reached, head);
                assert_eq!(state, model, "log {log:?} from {position}");
            }
        }
    }
}
