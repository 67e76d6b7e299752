//! [`PartitionState`]: the write buffer between a transform and its committed store.
//!
//! Two scopes nest here. The *checkpoint* scope collects every write since the last
//! checkpoint; [`PartitionState::checkpoint`] hands it to the store in one atomic commit.
//! Inside it, a *batch* scope remembers how to undo its writes, so a batch that fails part
//! way can be rolled back without touching what earlier batches wrote.
//!
//! One hash map, `known`, holds the current value of every key the partition has read
//! or written recently, and [`WriteSet`] logs the writes since the last checkpoint in
//! the order their keys were first written. A slot stamped with the current
//! *generation* has a write in the log; any other slot holds a committed value. So:
//!
//! - a read is one lookup, and the write that usually follows it (a counter's `put`
//!   after its `get`) finds the same slot still in the CPU cache;
//! - a checkpoint commits the log, then starts a new generation: every written key
//!   becomes a cached committed value without being looked up again.
//!
//! A profile of a stateful count over 100k keys put most of the time in these lookups
//! and in RocksDB's memtable. An earlier layout, a buffer map over a cache map, paid
//! four lookups for a get, a put and the checkpoint of a key, three of them to memory
//! outside the CPU caches; this one pays one such lookup (BENCHMARKS.md has the gain).
//!
//! Undoing is what pays instead: a rolled-back or discarded write cannot restore the
//! committed value its slot held, so the slot is dropped and the next read goes to the
//! store. Both are failure paths (a rejected batch, a lost partition).
//!
//! Clean slots are a bounded cache of committed values, dropped at random past a
//! budget; slots of the current generation stay, as they are the buffer. The cache only
//! ever holds what the store holds, so scans and commits can ignore it.
//!
//! Short keys and values ([`Bytes`]) live inside the map's slots and the log's entries:
//! a lookup of a small key then touches the slot alone, not the slot and two
//! allocations, and these lookups are memory-bound once the state outgrows the CPU caches.

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;
use std::sync::Arc;

use foldhash::fast::RandomState;
use smallvec::SmallVec;

use super::committer::Committer;
use super::quota::{QuotaReached, StateQuota};
use super::{Entry, MemoryStore, StateError, StateStore};
use crate::time::timers::is_timer_key;

/// A key or value in the buffer: up to 16 bytes stored inline (a typical key of a
/// counting or keyed-aggregate transform fits), longer ones on the heap.
type Bytes = SmallVec<[u8; 16]>;

/// Writes since the last checkpoint, one per key, in the order each key was first
/// written: `Some(value)` to store, `None` to delete.
#[derive(Debug, Default)]
pub struct WriteSet {
    entries: Vec<(Bytes, Option<Bytes>)>,
    /// Bytes of the keys and values in `entries`, kept as they change: the host bounds
    /// a partition's buffered writes by it on every write.
    bytes: usize,
    /// `entries`' indices in key order, for scans: see [`KeyOrder`].
    order: KeyOrder,
}

/// The write log's entries in key order, brought up to date when a scan needs it, so
/// that a scan finds its buffered writes by a binary search instead of a pass over
/// every write of the checkpoint. A partition that fires thousands of timers scans the
/// timer range often while the log holds their deletions; a pass per scan made that
/// quadratic. Writes cost nothing extra: an overwrite keeps its key (and place), and a
/// new key waits at the end of the log until the next scan sorts it in.
#[derive(Debug, Default)]
struct KeyOrder {
    /// Indices of `entries[..covered]`, sorted by key (keys are unique in the log).
    sorted: Vec<u32>,
    covered: usize,
}

/// Bytes of one buffered write.
fn write_bytes(key: &[u8], value: Option<&Bytes>) -> usize {
    key.len() + value.map_or(0, |v| v.len())
}

impl WriteSet {
    /// Every buffered write, each key once.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.entries
            .iter()
            .map(|(key, value)| (key.as_slice(), value.as_deref()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(super) fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
        self.order.sorted.clear();
        self.order.covered = 0;
    }

    /// Sort the entries written since the last call into the key order: the newcomers
    /// are sorted alone, then merged in from the back, in place.
    fn sort_keys(&mut self) {
        let (entries, order) = (&self.entries, &mut self.order);
        if order.covered == entries.len() {
            return;
        }
        let key = |index: u32| entries[index as usize].0.as_slice();
        let mut fresh: Vec<u32> = (order.covered..entries.len())
            .map(|index| index as u32)
            .collect();
        fresh.sort_unstable_by(|&a, &b| key(a).cmp(key(b)));
        let sorted = &mut order.sorted;
        let mut old_end = sorted.len();
        sorted.resize(old_end + fresh.len(), 0);
        let mut out = sorted.len();
        while let Some(&newest) = fresh.last() {
            out -= 1;
            if old_end > 0 && key(sorted[old_end - 1]) > key(newest) {
                old_end -= 1;
                sorted[out] = sorted[old_end];
            } else {
                sorted[out] = newest;
                fresh.pop();
            }
        }
        order.covered = entries.len();
    }

    /// The writes under `prefix` strictly after `start_after`, in key order; call
    /// [`sort_keys`](Self::sort_keys) first.
    fn in_key_order<'a>(
        &'a self,
        prefix: &'a [u8],
        start_after: Option<&'a [u8]>,
    ) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        debug_assert_eq!(self.order.covered, self.entries.len(), "sort_keys first");
        let key = |index: u32| self.entries[index as usize].0.as_slice();
        let sorted = &self.order.sorted;
        let first = sorted.partition_point(|&index| {
            let key = key(index);
            key < prefix || start_after.is_some_and(|after| key <= after)
        });
        sorted[first..]
            .iter()
            .map(move |&index| {
                let (key, value) = &self.entries[index as usize];
                (key.as_slice(), value.as_deref())
            })
            .take_while(move |(key, _)| key.starts_with(prefix))
    }

    /// Bytes of keys and values held, a measure of checkpoint size.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn push(&mut self, key: Bytes, value: Option<Bytes>) {
        self.bytes += write_bytes(&key, value.as_ref());
        self.entries.push((key, value));
    }

    /// Set entry `index`'s value, returning the one it replaces.
    fn replace(&mut self, index: usize, value: Option<Bytes>) -> Option<Bytes> {
        let slot = &mut self.entries[index].1;
        self.bytes += value.as_ref().map_or(0, |v| v.len());
        self.bytes -= slot.as_ref().map_or(0, |v| v.len());
        std::mem::replace(slot, value)
    }

    /// Remove the entries from `first` on, handing each key to `forget`.
    fn truncate_from(&mut self, first: usize, mut forget: impl FnMut(&Bytes)) {
        if self.order.covered > first {
            self.order.sorted.retain(|&index| (index as usize) < first);
            self.order.covered = first;
        }
        for (key, value) in self.entries.drain(first..) {
            self.bytes -= write_bytes(&key, value.as_ref());
            forget(&key);
        }
    }
}

/// What a checkpoint wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckpointStats {
    /// Keys written or deleted.
    pub keys: usize,
    /// Bytes of keys and values written.
    pub bytes: usize,
}

/// Default memory for a partition's cache of committed values.
pub const DEFAULT_READ_CACHE_BYTES: usize = 32 << 20;
/// Rough per-key overhead of the known keys (hash slot, control byte, spare capacity).
const KNOWN_ENTRY_OVERHEAD: usize = 64;

/// One key of `known`.
#[derive(Debug)]
struct Known {
    /// The current value, `None` when the key is absent (or deleted).
    value: Option<Bytes>,
    /// The generation of the key's last write; when it is the current one, the write
    /// is pending and sits in the write log at `index`.
    generation: u32,
    index: u32,
}

/// Memory charged to the cache budget for a clean key.
fn cached_size(key: &[u8], value: Option<&[u8]>) -> usize {
    key.len() + value.map_or(0, <[u8]>::len) + KNOWN_ENTRY_OVERHEAD
}

/// Committed entries a scan reads from the store at a time.
pub const SCAN_STORE_PAGE: usize = 64;

/// How to undo the writes of an open batch.
#[derive(Debug, Default)]
struct BatchScope {
    /// Length of the write log when the batch began: every entry from here on was
    /// first written by this batch, and rolling back drops it.
    first_write: usize,
    /// Values of older log entries that this batch overwrote, oldest first.
    overwritten: Vec<(usize, Option<Bytes>)>,
}

/// The state of one partition as a transform sees it: committed store plus buffer.
pub struct PartitionState {
    /// The committed store, behind the commit (if any) that is applying the last
    /// checkpoint to it.
    committer: Committer,
    known: HashMap<Bytes, Known, RandomState>,
    writes: WriteSet,
    /// Stamped on the keys written since the last checkpoint. Never 0: a slot read from
    /// the store gets generation 0, so it is clean from the start.
    generation: u32,
    /// Present while a batch scope is open.
    batch: Option<BatchScope>,
    /// Memory of the clean keys, and what it may reach before some are dropped.
    clean_bytes: usize,
    cache_budget: usize,
    /// The disk quota of the pipeline this partition belongs to, if any.
    quota: Option<Arc<StateQuota>>,
    /// Rollbacks and discards that undid writes of timers: see
    /// [`timer_undos`](Self::timer_undos).
    timer_undos: u64,
}

impl std::fmt::Debug for PartitionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionState")
            .field("buffered_keys", &self.writes.len())
            .field("known_keys", &self.known.len())
            .field("in_batch", &self.batch.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for PartitionState {
    /// An empty partition backed by a fresh in-memory store.
    fn default() -> Self {
        Self::new(Box::new(MemoryStore::new()))
    }
}

impl PartitionState {
    pub fn new(store: Box<dyn StateStore>) -> Self {
        Self::with_cache_budget(store, DEFAULT_READ_CACHE_BYTES)
    }

    /// A partition whose cache may hold about `bytes` of committed state.
    pub fn with_cache_budget(store: Box<dyn StateStore>, bytes: usize) -> Self {
        Self {
            committer: Committer::new(store),
            known: HashMap::default(),
            writes: WriteSet::default(),
            generation: 1,
            batch: None,
            clean_bytes: 0,
            cache_budget: bytes,
            quota: None,
            timer_undos: 0,
        }
    }

    /// This partition's store counts against `quota`, shared with the pipeline's other
    /// partitions on this daemon.
    pub fn with_quota(mut self, quota: Arc<StateQuota>) -> Self {
        self.quota = Some(quota);
        self
    }

    /// Whether the pipeline's state has reached its disk quota: writes that set a
    /// value are then refused (see [`StateQuota`]).
    pub fn quota_reached(&self) -> Option<QuotaReached> {
        self.quota.as_ref()?.reached()
    }

    /// The value of `key`: the transform's own writes first, then the committed value
    /// from the cache, then from the store.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.get_with(key, |value| value.map(<[u8]>::to_vec))
    }

    /// [`get`](Self::get) handing the value to `read` in place, without a copy of
    /// its own.
    pub fn get_with<R>(
        &mut self,
        key: &[u8],
        read: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R, StateError> {
        if let Some(known) = self.known.get(key) {
            return Ok(read(known.value.as_deref()));
        }
        let value = self.committer.store()?.get(key)?;
        let result = read(value.as_deref());
        self.clean_bytes += cached_size(key, value.as_deref());
        let known = Known {
            value: value.as_deref().map(Bytes::from_slice),
            generation: 0,
            index: 0,
        };
        self.known.insert(Bytes::from_slice(key), known);
        self.shrink_if_over_budget();
        Ok(result)
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.write(Bytes::from_vec(key), Some(Bytes::from_vec(value)));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.write(Bytes::from_vec(key), None);
    }

    /// A `put` (`Some`) or `delete` (`None`) of borrowed bytes, as a guest's batched
    /// writes arrive: short keys and values go into the buffer's slots with no
    /// allocation on the way.
    pub fn write_from(&mut self, key: &[u8], value: Option<&[u8]>) {
        self.write(Bytes::from_slice(key), value.map(Bytes::from_slice));
    }

    /// One hash lookup whatever the key's state: written before in this checkpoint
    /// (replace its log entry), clean (it joins the log) or unknown.
    fn write(&mut self, key: Bytes, value: Option<Bytes>) {
        let log = &mut self.writes;
        let fresh = Known {
            value: value.clone(),
            generation: self.generation,
            index: u32::try_from(log.len()).expect("under 2^32 writes per checkpoint"),
        };
        let key = match self.known.entry(key) {
            Slot::Occupied(mut slot) if slot.get().generation == self.generation => {
                let index = slot.get().index as usize;
                slot.get_mut().value = fresh.value;
                let previous = log.replace(index, value);
                if let Some(batch) = &mut self.batch
                    && index < batch.first_write
                {
                    batch.overwritten.push((index, previous));
                }
                return;
            }
            Slot::Occupied(mut slot) => {
                let clean = slot.insert(fresh);
                self.clean_bytes -= cached_size(slot.key(), clean.value.as_deref());
                slot.key().clone()
            }
            Slot::Vacant(slot) => {
                let key = slot.key().clone();
                slot.insert(fresh);
                key
            }
        };
        log.push(key, value);
    }

    /// Up to `limit` entries under `prefix` after `start_after`, merging buffered writes
    /// (which win, and whose deletes hide committed keys) with the committed store.
    pub fn scan(
        &mut self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StateError> {
        let page = self.scan_within(prefix, start_after, limit, usize::MAX)?;
        Ok(page.expect("no page passes usize::MAX bytes"))
    }

    /// [`scan`](Self::scan), or `None` as soon as the page's keys and values pass
    /// `max_bytes`: the committed store is read [`SCAN_STORE_PAGE`] entries at a time, so
    /// a page of large values is given up at its bound rather than read whole first.
    pub fn scan_within(
        &mut self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Option<Vec<Entry>>, StateError> {
        self.writes.sort_keys();
        let mut buffered = self.writes.in_key_order(prefix, start_after).peekable();

        let mut out = Vec::new();
        let mut bytes = 0_usize;
        // False once the page passes `max_bytes`.
        let mut push = |out: &mut Vec<Entry>, entry: Entry| {
            bytes = bytes.saturating_add(entry.key.len() + entry.value.len());
            out.push(entry);
            bytes <= max_bytes
        };
        let buffered_entry = |(key, value): (&[u8], Option<&[u8]>)| {
            value.map(|value| Entry {
                key: key.to_vec(),
                value: value.to_vec(),
            })
        };
        let mut cursor = start_after.map(<[u8]>::to_vec);
        while out.len() < limit {
            // A page at a time: buffered deletes may hide some of it.
            let want = (limit - out.len()).min(SCAN_STORE_PAGE);
            let page = self
                .committer
                .store()?
                .scan(prefix, cursor.as_deref(), want)?;
            let store_exhausted = page.len() < want;
            for committed in page {
                let mut shadowed = false;
                while let Some(write) =
                    buffered.next_if(|(key, _)| *key <= committed.key.as_slice())
                {
                    shadowed = write.0 == committed.key.as_slice();
                    if let Some(entry) = buffered_entry(write)
                        && !push(&mut out, entry)
                    {
                        return Ok(None);
                    }
                }
                cursor = Some(committed.key.clone());
                if !shadowed && !push(&mut out, committed) {
                    return Ok(None);
                }
                if out.len() >= limit {
                    break;
                }
            }
            if store_exhausted {
                for entry in buffered.by_ref().filter_map(buffered_entry) {
                    if out.len() >= limit {
                        break;
                    }
                    if !push(&mut out, entry) {
                        return Ok(None);
                    }
                }
                break;
            }
        }
        out.truncate(limit);
        Ok(Some(out))
    }

    /// Open a batch scope: writes from here on can be undone by [`rollback_batch`].
    ///
    /// [`rollback_batch`]: PartitionState::rollback_batch
    pub fn begin_batch(&mut self) {
        debug_assert!(self.batch.is_none(), "batch scopes do not nest");
        self.batch = Some(BatchScope {
            first_write: self.writes.len(),
            overwritten: Vec::new(),
        });
    }

    /// Keep the batch's writes in the checkpoint buffer.
    pub fn commit_batch(&mut self) {
        self.batch = None;
    }

    /// Undo every write made since [`begin_batch`](PartitionState::begin_batch).
    pub fn rollback_batch(&mut self) {
        let Some(batch) = self.batch.take() else {
            return;
        };
        let entries = &self.writes.entries;
        let timer = |(key, _): &(Bytes, Option<Bytes>)| is_timer_key(key);
        if entries[batch.first_write..].iter().any(timer)
            || batch
                .overwritten
                .iter()
                .any(|(index, _)| timer(&entries[*index]))
        {
            self.timer_undos += 1;
        }
        // Keys first written by the batch: their committed values were overwritten in
        // place, so they are forgotten and read from the store again.
        let known = &mut self.known;
        self.writes.truncate_from(batch.first_write, |key| {
            known.remove(key);
        });
        for (index, previous) in batch.overwritten.into_iter().rev() {
            if let Some(known) = self.known.get_mut(&self.writes.entries[index].0) {
                known.value.clone_from(&previous);
            }
            self.writes.replace(index, previous);
        }
    }

    /// Hand the buffered writes and `metadata` to the store as one atomic commit; the
    /// keys written stay in the cache with their new committed values. The commit runs
    /// on a thread of its own ([`Committer`]): it has landed once the next read of the
    /// store, the next checkpoint or the drop of this state returns. On error (the
    /// previous commit failed) nothing was handed over and the buffer is kept.
    pub fn checkpoint(
        &mut self,
        metadata: &[(&str, &[u8])],
    ) -> Result<CheckpointStats, StateError> {
        debug_assert!(self.batch.is_none(), "checkpoint inside an open batch");
        let stats = CheckpointStats {
            keys: self.writes.len(),
            bytes: self.writes.bytes(),
        };
        let writes = std::mem::take(&mut self.writes);
        self.writes = match self.committer.commit(writes, metadata) {
            Ok(empty) => empty,
            Err(failed) => {
                let (error, writes) = *failed;
                self.writes = writes;
                return Err(error);
            }
        };
        self.clean_bytes += stats.bytes + stats.keys * KNOWN_ENTRY_OVERHEAD;
        self.next_generation();
        self.shrink_if_over_budget();
        Ok(stats)
    }

    /// Drop every write since the last checkpoint (the pipeline failed or the
    /// partition was lost): the store keeps its committed state, and the keys written
    /// are forgotten, to be read from it again.
    pub fn discard_uncommitted(&mut self) {
        self.batch = None;
        if self.writes.entries.iter().any(|(key, _)| is_timer_key(key)) {
            self.timer_undos += 1;
        }
        let known = &mut self.known;
        self.writes.truncate_from(0, |key| {
            known.remove(key);
        });
    }

    /// How many times writes of timers ([`crate::time::timers`]) were undone, by a
    /// rolled-back batch or a discard: the engine's timer queue, which keeps the
    /// earliest timers in memory in step with its own writes, starts over when this
    /// moves. Undoing other keys (a transform's own, the partition's clock, which a
    /// batch cut where a timer falls due rolls back) leaves it alone.
    pub fn timer_undos(&self) -> u64 {
        self.timer_undos
    }

    /// Writes waiting for the next checkpoint.
    pub fn pending(&self) -> &WriteSet {
        &self.writes
    }

    /// Memory the writes waiting for the next checkpoint hold: each key and value in
    /// the log and, for reads, in the known keys, plus a slot's overhead per key.
    pub fn pending_memory(&self) -> usize {
        2 * self.writes.bytes() + self.writes.len() * KNOWN_ENTRY_OVERHEAD
    }

    /// The committed value of `key`, ignoring buffered writes: what a reader outside
    /// the transform may see (buffered writes can still be rolled back).
    pub fn get_committed(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.committer.store()?.get(key)
    }

    /// Committed metadata, e.g. the input offsets of the last checkpoint.
    pub fn metadata(&mut self, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.committer.store()?.metadata(name)
    }

    /// Every key of the last generation is committed now. When the counter would wrap,
    /// the cache starts over instead: an old stamp must never pass for the current one.
    fn next_generation(&mut self) {
        self.generation = match self.generation.checked_add(1) {
            Some(next) => next,
            None => {
                self.known.clear();
                self.clean_bytes = 0;
                1
            }
        };
    }

    /// Past the budget, drop about half of the clean keys, in the map's (random)
    /// order: cheaper than tracking recency on every read, and a hot key that goes is
    /// read back once. Keys with pending writes always stay: they are the buffer.
    fn shrink_if_over_budget(&mut self) {
        if self.clean_bytes <= self.cache_budget {
            return;
        }
        let generation = self.generation;
        let (mut keep, mut freed) = (false, 0);
        self.known.retain(|key, known| {
            if known.generation == generation {
                return true;
            }
            keep = !keep;
            if !keep {
                freed += cached_size(key, known.value.as_deref());
            }
            keep
        });
        self.clean_bytes -= freed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store whose commits all fail, as a full disk would make them.
    struct FullDisk;

    impl StateStore for FullDisk {
        fn get(&self, _: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
            Ok(None)
        }
        fn scan(&self, _: &[u8], _: Option<&[u8]>, _: usize) -> Result<Vec<Entry>, StateError> {
            Ok(Vec::new())
        }
        fn commit(&mut self, _: &WriteSet, _: &[(&str, &[u8])]) -> Result<(), StateError> {
            Err(StateError::EarlierCommitFailed(
                "no space left on device".into(),
            ))
        }
        fn metadata(&self, _: &str) -> Result<Option<Vec<u8>>, StateError> {
            Ok(None)
        }
    }

    #[test]
    fn a_failed_commit_stops_every_later_use_of_the_store() {
        let mut state = PartitionState::new(Box::new(FullDisk));
        state.put(b"a".to_vec(), b"1".to_vec());
        state
            .checkpoint(&[("offset", b"1")])
            .expect("handed to the commit thread");
        let err = state.get(b"unknown").unwrap_err().to_string();
        assert!(err.contains("no space left"), "{err}");
        state.put(b"b".to_vec(), b"2".to_vec());
        let err = state.checkpoint(&[("offset", b"2")]).unwrap_err();
        assert!(matches!(err, StateError::EarlierCommitFailed(_)), "{err}");
        assert!(err.to_string().contains("restart"), "{err}");
        assert_eq!(
            state.pending().len(),
            1,
            "the refused checkpoint keeps its writes"
        );
        assert!(state.metadata("offset").is_err());
    }

    #[test]
    fn a_wrapping_generation_starts_the_cache_over() {
        let mut state = PartitionState::default();
        state.put(b"a".to_vec(), b"1".to_vec());
        state.checkpoint(&[]).unwrap();
        state.generation = u32::MAX;
        state.put(b"b".to_vec(), b"2".to_vec());
        state.checkpoint(&[]).unwrap();
        assert_eq!(state.generation, 1);
        assert!(state.known.is_empty(), "no old stamp survives the wrap");
        assert_eq!(state.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(state.get(b"b").unwrap(), Some(b"2".to_vec()));
        state.put(b"a".to_vec(), b"3".to_vec());
        assert_eq!(state.pending().len(), 1);
    }

    #[test]
    fn the_budget_counts_clean_keys_only() {
        let mut state = PartitionState::default();
        state.put(b"key".to_vec(), b"value".to_vec());
        assert_eq!(
            state.clean_bytes, 0,
            "a pending write is the buffer, not cache"
        );
        state.checkpoint(&[]).unwrap();
        assert_eq!(state.clean_bytes, cached_size(b"key", Some(b"value")));
        state.put(b"key".to_vec(), b"v2".to_vec());
        assert_eq!(state.clean_bytes, 0);
        state.discard_uncommitted();
        assert_eq!(state.clean_bytes, 0);
        assert_eq!(state.get(b"key").unwrap(), Some(b"value".to_vec()));
        assert_eq!(state.clean_bytes, cached_size(b"key", Some(b"value")));
    }

    /// The byte count the host bounds writes by follows every change to the buffer:
    /// new keys, overwrites, a batch rolled back (new keys and overwrites alike), a
    /// discard and a checkpoint.
    #[test]
    fn buffered_bytes_follow_writes_rollbacks_and_checkpoints() {
        let mut state = PartitionState::default();
        let bytes = |state: &PartitionState| state.pending().bytes();
        let recount = |state: &PartitionState| -> usize {
            state
                .pending()
                .iter()
                .map(|(k, v)| k.len() + v.map_or(0, <[u8]>::len))
                .sum()
        };
        state.put(b"a".to_vec(), b"12345".to_vec());
        state.put(b"bb".to_vec(), vec![0; 100]);
        assert_eq!(bytes(&state), 6 + 102);
        state.put(b"a".to_vec(), b"1".to_vec());
        assert_eq!(bytes(&state), 2 + 102);

        state.begin_batch();
        state.put(b"a".to_vec(), vec![0; 1000]);
        state.delete(b"bb".to_vec());
        state.put(b"ccc".to_vec(), vec![0; 50]);
        assert_eq!(bytes(&state), 1001 + 2 + 53);
        assert_eq!(bytes(&state), recount(&state));
        state.rollback_batch();
        assert_eq!(bytes(&state), 2 + 102, "back to before the batch");
        assert_eq!(bytes(&state), recount(&state));

        state.checkpoint(&[]).unwrap();
        assert_eq!(bytes(&state), 0);
        state.put(b"d".to_vec(), b"x".to_vec());
        state.discard_uncommitted();
        assert_eq!(bytes(&state), 0);
    }
}
