//! The RocksDB [`StateStore`]: one database per partition, on local disk.
//!
//! Transform keys live in the default column family so point reads skip a
//! column-family lookup; metadata (input offsets, module version) lives in a `meta`
//! column family so a transform can never read or overwrite it. A commit is one
//! `WriteBatch` across both, with the WAL on and no fsync: a process crash loses
//! nothing, and a power loss can only leave the store *behind* Kafka, which the
//! changelog replay repairs.
//!
//! A database per partition keeps restore, revocation and deletion per partition (a
//! directory each), but RocksDB's memory is per database by default: a block cache and
//! memtables each, multiplied by the partitions a daemon owns. So every store of a
//! process shares one [`RocksMemory`]: one block cache, with every memtable charged to
//! it by a write-buffer manager, under one budget.

use std::path::{Path, PathBuf};

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Options, WriteBatch, WriteBufferManager,
};

use super::{Entry, StateError, StateStore, WriteSet};

const META_CF: &str = "meta";
/// Memtable size. RocksDB's 64 MiB default is a lot per partition, and a smaller
/// memtable keeps its skiplist shallow: inserting into it dominated checkpoints. The
/// shared write-buffer manager flushes memtables earlier when they add up.
const WRITE_BUFFER_BYTES: usize = 16 << 20;
/// A memtable grows in blocks of this size, and even an almost empty one holds a block:
/// RocksDB's default (an eighth of the write buffer, 2 MiB here) times a thousand
/// partitions would be 2 GiB of memtables however little they hold.
const ARENA_BLOCK_BYTES: usize = 64 << 10;
/// The `meta` column family holds three keys.
const META_WRITE_BUFFER_BYTES: usize = 64 << 10;
/// Memtable inserts start from where the previous insert landed (one hint for all
/// keys: the empty prefix) instead of the skiplist's head. A commit writes its keys in
/// order, so the next position is usually a few entries on, and the search is
/// logarithmic in that distance rather than in the memtable's size. The C API has no
/// setter for this option, hence the options string.
const INSERT_HINTS: &str = "memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.0";
/// No preallocation: RocksDB reserves real disk blocks (fallocate) of about 1.1 write
/// buffers for each WAL and 4 MiB for each manifest (set to 0 below), 22 MB per store
/// before it holds anything: a thousand partitions filled a disk with it. The C API has
/// no setter for this one either.
const NO_FALLOCATE: &str = "allow_fallocate=false";

/// RocksDB memory shared by the partition stores of a process: one LRU block cache,
/// and a write-buffer manager charging every memtable to it, so that block cache and
/// memtables together stay within `budget` however many partitions are open. Cheap to
/// clone (reference counted).
#[derive(Clone)]
pub struct RocksMemory {
    cache: Cache,
    write_buffers: WriteBufferManager,
    budget: usize,
    max_open_files: i32,
}

impl std::fmt::Debug for RocksMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksMemory")
            .field("budget", &self.budget)
            .field("max_open_files", &self.max_open_files)
            .finish_non_exhaustive()
    }
}

impl RocksMemory {
    /// A budget of `budget` bytes for block cache and memtables together, and at most
    /// `max_open_files` table files open per store.
    pub fn new(budget: usize, max_open_files: u32) -> Self {
        let cache = Cache::new_lru_cache(budget);
        // Memtables may hold up to half of the budget: past it, a store being written
        // flushes its oldest memtable (RocksDB flushes the writer's own, so the busy
        // stores flush and the idle ones keep what little they hold). No stall: a
        // checkpoint's write never waits for a flush.
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            budget / 2,
            false,
            cache.clone(),
        );
        Self {
            cache,
            write_buffers,
            budget,
            max_open_files: i32::try_from(max_open_files).unwrap_or(i32::MAX),
        }
    }

    /// Bytes the block cache and the memtables charged to it hold now.
    pub fn usage(&self) -> usize {
        self.cache.get_usage()
    }

    /// Bytes the memtables of every store hold now.
    pub fn memtable_usage(&self) -> usize {
        self.write_buffers.get_usage()
    }

    pub fn budget(&self) -> usize {
        self.budget
    }
}

/// The memory of a store opened on its own ([`RocksStore::open`]: tools and tests).
const OWN_MEMORY_BYTES: usize = 64 << 20;
const OWN_MAX_OPEN_FILES: u32 = 64;

/// Committed state of one partition in a RocksDB database.
pub struct RocksStore {
    db: DB,
    path: PathBuf,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RocksStore {
    /// Open the store at `path`, creating it when missing, with memory of its own
    /// (tools and tests; a daemon's stores share theirs, see [`RocksStore::open_in`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StateError> {
        Self::open_in(
            path,
            &RocksMemory::new(OWN_MEMORY_BYTES, OWN_MAX_OPEN_FILES),
        )
    }

    /// Open the store at `path`, creating it when missing, within `memory`.
    pub fn open_in(path: impl AsRef<Path>, memory: &RocksMemory) -> Result<Self, StateError> {
        let path = path.as_ref().to_path_buf();
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&memory.cache);
        table.set_bloom_filter(10.0, false);
        // Index and filter blocks count against the shared budget too (and are not
        // pinned, which would let them grow past it).
        table.set_cache_index_and_filter_blocks(true);

        let open_error = |source| StateError::Open {
            path: path.clone(),
            source,
        };
        let mut state_opts = Options::default()
            .get_options_from_string(format!("{INSERT_HINTS};{NO_FALLOCATE}"))
            .map_err(open_error)?;
        state_opts.set_block_based_table_factory(&table);
        state_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        state_opts.set_write_buffer_size(WRITE_BUFFER_BYTES);
        state_opts.set_arena_block_size(ARENA_BLOCK_BYTES);

        let mut db_opts = state_opts.clone();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_write_buffer_manager(&memory.write_buffers);
        db_opts.set_max_open_files(memory.max_open_files);
        // RocksDB's info log, per store: small, and two files of it at most.
        db_opts.set_max_log_file_size(1 << 20);
        db_opts.set_keep_log_file_num(2);
        db_opts.set_manifest_preallocation_size(0);

        let mut meta_opts = Options::default();
        meta_opts.set_write_buffer_size(META_WRITE_BUFFER_BYTES);
        // Without the shared table options it would get a block cache of its own.
        meta_opts.set_block_based_table_factory(&table);
        let families = [
            ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, state_opts),
            ColumnFamilyDescriptor::new(META_CF, meta_opts),
        ];
        let db = DB::open_cf_descriptors(&db_opts, &path, families).map_err(open_error)?;
        Ok(Self { db, path })
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io_error(&self, operation: &'static str) -> impl FnOnce(rocksdb::Error) -> StateError + '_ {
        move |source| StateError::Io {
            path: self.path.clone(),
            operation,
            source,
        }
    }

    fn meta_cf(&self) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(META_CF)
            .expect("the meta column family is created by RocksStore::open")
    }
}

impl StateStore for RocksStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.db.get(key).map_err(self.io_error("read a key"))
    }

    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StateError> {
        let mut entries = Vec::new();
        if limit == 0 {
            return Ok(entries);
        }
        let mut iter = self.db.raw_iterator();
        let after = start_after.filter(|after| *after >= prefix);
        iter.seek(after.unwrap_or(prefix));
        if let (Some(after), Some(key)) = (after, iter.key())
            && key == after
        {
            iter.next();
        }
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            if !key.starts_with(prefix) || entries.len() == limit {
                break;
            }
            entries.push(Entry {
                key: key.to_vec(),
                value: value.to_vec(),
            });
            iter.next();
        }
        iter.status().map_err(self.io_error("scan keys"))?;
        Ok(entries)
    }

    fn commit(&mut self, writes: &WriteSet, metadata: &[(&str, &[u8])]) -> Result<(), StateError> {
        // In key order: with the insert hint each skiplist search then starts next to
        // the previous key's position (see `INSERT_HINTS`).
        let mut sorted: Vec<_> = writes.iter().collect();
        sorted.sort_unstable_by_key(|(key, _)| *key);
        let mut batch = WriteBatch::default();
        for (key, value) in sorted {
            match value {
                Some(value) => batch.put(key, value),
                None => batch.delete(key),
            }
        }
        let meta = self.meta_cf();
        for (name, value) in metadata {
            batch.put_cf(meta, name.as_bytes(), value);
        }
        self.db
            .write(batch)
            .map_err(self.io_error("commit a checkpoint"))
    }

    fn metadata(&self, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.db
            .get_cf(self.meta_cf(), name.as_bytes())
            .map_err(self.io_error("read metadata"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An open store holds the disk its data needs, not preallocated room: RocksDB's
    /// default reserves about 1.1 write buffers for each WAL (fallocate, real blocks)
    /// and 4 MiB for each manifest, which across a thousand partitions filled a
    /// 20 GB disk before a record was processed.
    #[test]
    fn an_open_store_reserves_no_disk_ahead() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let mut store = RocksStore::open(dir.path()).unwrap();
        store
            .commit(&WriteSet::default(), &[("offset", b"1")])
            .unwrap();
        let allocated: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().metadata().unwrap().blocks() * 512)
            .sum();
        assert!(
            allocated < 1 << 20,
            "an open store with one commit holds {allocated} bytes of disk"
        );
    }

    /// The insert hint is set through an options string, which RocksDB would reject
    /// at open if the name changed; this checks it also took effect.
    #[test]
    fn the_memtable_insert_hint_reaches_rocksdb() {
        let dir = tempfile::tempdir().unwrap();
        drop(RocksStore::open(dir.path()).unwrap());
        let mut files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| {
                path.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("OPTIONS-")
            })
            .collect();
        files.sort();
        let latest = files.last().expect("RocksDB writes an OPTIONS file");
        let options = std::fs::read_to_string(latest).unwrap();
        assert!(
            options.contains("memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.0"),
            "{options}"
        );
    }

    /// Stores that share memory flush their memtables when those add up to the shared
    /// budget, though none reached its own 16 MiB write buffer: without sharing, all
    /// 32 MiB written here would stay in memtables.
    #[test]
    fn stores_that_share_memory_flush_when_their_memtables_add_up() {
        let budget = 16 << 20;
        let memory = RocksMemory::new(budget, 64);
        let dir = tempfile::tempdir().unwrap();
        let stores: Vec<RocksStore> = (0..8)
            .map(|n| RocksStore::open_in(dir.path().join(n.to_string()), &memory).unwrap())
            .collect();
        let value = vec![7u8; 4 << 10];
        for (n, store) in stores.iter().enumerate() {
            for key in 0..1024u32 {
                store.db.put(format!("{n}/{key:08}"), &value).unwrap();
            }
        }
        let tables = || {
            walk_files(dir.path())
                .filter(|path| path.extension().is_some_and(|x| x == "sst"))
                .count()
        };
        // 32 MiB written, a flush due every ~7 MiB; flushes run in the background.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while tables() < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "{} table files after 32 MiB written under a {budget}-byte budget",
                tables()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // Everything written reads back, from memtables or flushed files.
        for (n, store) in stores.iter().enumerate() {
            let key = format!("{n}/{:08}", 1000);
            assert_eq!(
                store.get(key.as_bytes()).unwrap().as_deref(),
                Some(&value[..])
            );
        }
    }

    fn walk_files(dir: &Path) -> impl Iterator<Item = PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .flat_map(|path| {
                if path.is_dir() {
                    walk_files(&path).collect::<Vec<_>>()
                } else {
                    vec![path]
                }
            })
    }
}
