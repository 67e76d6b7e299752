//! The RocksDB [`StateStore`]: one database per partition, on local disk.
//!
//! Transform keys live in the default column family so point reads skip a
//! column-family lookup; metadata (input offsets, module version) lives in a `meta`
//! column family so a transform can never read or overwrite it. A commit is one
//! `WriteBatch` across both, with the WAL on and no fsync: a process crash loses
//! nothing, and a power loss can only leave the store *behind* Kafka, which the
//! changelog replay repairs.

use std::path::{Path, PathBuf};

use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Options, WriteBatch};

use super::{Entry, StateError, StateStore, WriteSet};

const META_CF: &str = "meta";
/// Block cache per partition store. Kept modest: a daemon may own many partitions.
const BLOCK_CACHE_BYTES: usize = 32 << 20;
/// Memtable size. RocksDB's 64 MiB default is a lot per partition, and a smaller
/// memtable keeps its skiplist shallow: inserting into it dominated checkpoints.
const WRITE_BUFFER_BYTES: usize = 16 << 20;
/// Memtable inserts start from where the previous insert landed (one hint for all
/// keys: the empty prefix) instead of the skiplist's head. A commit writes its keys in
/// order, so the next position is usually a few entries on, and the search is
/// logarithmic in that distance rather than in the memtable's size. The C API has no
/// setter for this option, hence the options string.
const INSERT_HINTS: &str = "memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.0";

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
    /// Open the store at `path`, creating it when missing.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StateError> {
        let path = path.as_ref().to_path_buf();
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&Cache::new_lru_cache(BLOCK_CACHE_BYTES));
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);

        let open_error = |source| StateError::Open {
            path: path.clone(),
            source,
        };
        let mut state_opts = Options::default()
            .get_options_from_string(INSERT_HINTS)
            .map_err(open_error)?;
        state_opts.set_block_based_table_factory(&table);
        state_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        state_opts.set_write_buffer_size(WRITE_BUFFER_BYTES);

        let mut db_opts = state_opts.clone();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);

        let families = [
            ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, state_opts),
            ColumnFamilyDescriptor::new(META_CF, Options::default()),
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
}
