//! [`PartitionState`]: the write buffer between a transform and its committed store.
//!
//! Two scopes nest here. The *checkpoint* scope collects every write since the last
//! checkpoint; [`PartitionState::checkpoint`] hands it to the store in one atomic commit.
//! Inside it, a *batch* scope records how to undo each write, so a batch that fails part
//! way can be rolled back without touching what earlier batches wrote. Undo is a log of
//! previous buffer entries rather than a second overlay map, so a read costs one hash
//! lookup in the buffer, not two: reads are the hot path of a stateful transform.
//!
//! Below the buffer sits a bounded cache of *committed* values (and of keys known to be
//! absent). A checkpoint moves the buffer into it instead of dropping it, so the keys a
//! transform just wrote are read back from memory rather than from RocksDB's memtable,
//! where a profile showed most of the time of a stateful count going. The cache only
//! ever holds what the store holds, so scans and commits can ignore it.
//!
//! Both maps keep short keys and values ([`Bytes`]) inside their own slots: a lookup
//! of a small key then touches the slot alone, not the slot and two allocations, and
//! these lookups are memory-bound once the state outgrows the CPU caches.

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;

use foldhash::fast::RandomState;
use smallvec::SmallVec;

use super::{Entry, MemoryStore, StateError, StateStore};

/// A key or value in the buffer: up to 16 bytes stored inline (a typical key of a
/// counting or keyed-aggregate transform fits), longer ones on the heap.
type Bytes = SmallVec<[u8; 16]>;

/// Writes since the last checkpoint: `Some(value)` to store, `None` to delete.
#[derive(Debug, Default)]
pub struct WriteSet {
    entries: HashMap<Bytes, Option<Bytes>, RandomState>,
}

impl WriteSet {
    /// Every buffered write, in no particular order.
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

    /// Bytes of keys and values held, a measure of checkpoint size.
    pub fn bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|(key, value)| key.len() + value.as_ref().map_or(0, |v| v.len()))
            .sum()
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

/// Default memory for a partition's read cache.
pub const DEFAULT_READ_CACHE_BYTES: usize = 32 << 20;
/// Rough per-entry overhead of the cache (hash slot, two `Vec` headers, allocator).
const CACHE_ENTRY_OVERHEAD: usize = 64;

/// Committed values recently read or written; `None` marks a key known to be absent.
#[derive(Debug)]
struct ReadCache {
    entries: HashMap<Bytes, Option<Bytes>, RandomState>,
    bytes: usize,
    budget: usize,
}

impl ReadCache {
    fn new(budget: usize) -> Self {
        Self {
            entries: HashMap::default(),
            bytes: 0,
            budget,
        }
    }

    fn size(key: &[u8], value: &Option<Bytes>) -> usize {
        key.len() + value.as_ref().map_or(0, |v| v.len()) + CACHE_ENTRY_OVERHEAD
    }

    fn insert(&mut self, key: Bytes, value: Option<Bytes>) {
        self.bytes += Self::size(&key, &value);
        match self.entries.entry(key) {
            Slot::Occupied(mut entry) => {
                self.bytes -= Self::size(entry.key(), entry.get());
                entry.insert(value);
            }
            Slot::Vacant(entry) => {
                entry.insert(value);
            }
        }
        if self.bytes > self.budget {
            self.shrink();
        }
    }

    /// Drop about half of the entries, in the map's (random) order: cheaper than
    /// tracking recency on every read, and a hot key that goes is read back once.
    fn shrink(&mut self) {
        let mut keep = false;
        let mut freed = 0;
        self.entries.retain(|key, value| {
            keep = !keep;
            if !keep {
                freed += Self::size(key, value);
            }
            keep
        });
        self.bytes -= freed;
    }
}

/// How to restore one buffer entry: the key and what the buffer held before
/// (`None`: the key was not buffered at all).
type Undo = (Bytes, Option<Option<Bytes>>);

/// The state of one partition as a transform sees it: committed store plus buffer.
pub struct PartitionState {
    store: Box<dyn StateStore>,
    writes: WriteSet,
    /// Present while a batch scope is open.
    undo: Option<Vec<Undo>>,
    cache: ReadCache,
}

impl std::fmt::Debug for PartitionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionState")
            .field("buffered_keys", &self.writes.len())
            .field("in_batch", &self.undo.is_some())
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

    /// A partition whose read cache may hold about `bytes` of committed state.
    pub fn with_cache_budget(store: Box<dyn StateStore>, bytes: usize) -> Self {
        Self {
            store,
            writes: WriteSet::default(),
            undo: None,
            cache: ReadCache::new(bytes),
        }
    }

    /// The value of `key`: buffered writes first, then the read cache, then the store.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        if let Some(buffered) = self.writes.entries.get(key) {
            return Ok(buffered.as_deref().map(<[u8]>::to_vec));
        }
        if let Some(cached) = self.cache.entries.get(key) {
            return Ok(cached.as_deref().map(<[u8]>::to_vec));
        }
        let value = self.store.get(key)?;
        self.cache.insert(
            Bytes::from_slice(key),
            value.as_deref().map(Bytes::from_slice),
        );
        Ok(value)
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.write(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.write(key, None);
    }

    fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let key = Bytes::from_vec(key);
        let value = value.map(Bytes::from_vec);
        match &mut self.undo {
            Some(undo) => {
                let previous = self.writes.entries.insert(key.clone(), value);
                undo.push((key, previous));
            }
            None => {
                self.writes.entries.insert(key, value);
            }
        }
    }

    /// Up to `limit` entries under `prefix` after `start_after`, merging buffered writes
    /// (which win, and whose deletes hide committed keys) with the committed store.
    pub fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StateError> {
        let mut buffered: Vec<(&[u8], Option<&[u8]>)> = self
            .writes
            .iter()
            .filter(|(key, _)| {
                key.starts_with(prefix) && start_after.is_none_or(|after| *key > after)
            })
            .collect();
        buffered.sort_unstable_by_key(|(key, _)| *key);
        let mut buffered = buffered.into_iter().peekable();

        let mut out = Vec::new();
        let mut cursor = start_after.map(<[u8]>::to_vec);
        while out.len() < limit {
            // Fetch a full page: buffered deletes may hide some of it.
            let page = self.store.scan(prefix, cursor.as_deref(), limit)?;
            let store_exhausted = page.len() < limit;
            for committed in page {
                let mut shadowed = false;
                while let Some((key, value)) =
                    buffered.next_if(|(key, _)| *key <= committed.key.as_slice())
                {
                    shadowed = key == committed.key.as_slice();
                    out.extend(value.map(|value| Entry {
                        key: key.to_vec(),
                        value: value.to_vec(),
                    }));
                }
                cursor = Some(committed.key.clone());
                if !shadowed {
                    out.push(committed);
                }
                if out.len() >= limit {
                    break;
                }
            }
            if store_exhausted {
                out.extend(buffered.by_ref().filter_map(|(key, value)| {
                    value.map(|value| Entry {
                        key: key.to_vec(),
                        value: value.to_vec(),
                    })
                }));
                break;
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    /// Open a batch scope: writes from here on can be undone by [`rollback_batch`].
    ///
    /// [`rollback_batch`]: PartitionState::rollback_batch
    pub fn begin_batch(&mut self) {
        debug_assert!(self.undo.is_none(), "batch scopes do not nest");
        self.undo = Some(Vec::new());
    }

    /// Keep the batch's writes in the checkpoint buffer.
    pub fn commit_batch(&mut self) {
        self.undo = None;
    }

    /// Undo every write made since [`begin_batch`](PartitionState::begin_batch).
    pub fn rollback_batch(&mut self) {
        let Some(undo) = self.undo.take() else { return };
        for (key, previous) in undo.into_iter().rev() {
            match previous {
                Some(value) => self.writes.entries.insert(key, value),
                None => self.writes.entries.remove(&key),
            };
        }
    }

    /// Apply buffered writes and `metadata` to the store in one atomic commit, then
    /// move the buffer into the read cache. On error the buffer is kept, so the
    /// checkpoint can be retried.
    pub fn checkpoint(
        &mut self,
        metadata: &[(&str, &[u8])],
    ) -> Result<CheckpointStats, StateError> {
        debug_assert!(self.undo.is_none(), "checkpoint inside an open batch");
        let stats = CheckpointStats {
            keys: self.writes.len(),
            bytes: self.writes.bytes(),
        };
        self.store.commit(&self.writes, metadata)?;
        for (key, value) in self.writes.entries.drain() {
            self.cache.insert(key, value);
        }
        Ok(stats)
    }

    /// Drop every write since the last checkpoint (the pipeline failed or the
    /// partition was lost): the store keeps its committed state.
    pub fn discard_uncommitted(&mut self) {
        self.undo = None;
        self.writes.entries.clear();
    }

    /// Writes waiting for the next checkpoint.
    pub fn pending(&self) -> &WriteSet {
        &self.writes
    }

    /// The committed value of `key`, ignoring buffered writes: what a reader outside
    /// the transform may see (buffered writes can still be rolled back).
    pub fn get_committed(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.store.get(key)
    }

    /// Committed metadata, e.g. the input offsets of the last checkpoint.
    pub fn metadata(&self, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.store.metadata(name)
    }
}
