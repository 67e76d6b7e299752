//! An in-memory [`StateStore`]: for `weir test` without `--state-dir`, native test
//! harnesses and benches. Its contents end with the process.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use super::{Entry, StateError, StateStore, WriteSet};

/// Committed state held in a sorted map.
#[derive(Debug, Default)]
pub struct MemoryStore {
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    metadata: HashMap<String, Vec<u8>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl StateStore for MemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.data.get(key).cloned())
    }

    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StateError> {
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        Ok(self
            .data
            .range::<[u8], _>((lower, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(limit)
            .map(|(key, value)| Entry {
                key: key.clone(),
                value: value.clone(),
            })
            .collect())
    }

    fn commit(&mut self, writes: &WriteSet, metadata: &[(&str, &[u8])]) -> Result<(), StateError> {
        for (key, value) in writes.iter() {
            match value {
                Some(value) => self.data.insert(key.to_vec(), value.to_vec()),
                None => self.data.remove(key),
            };
        }
        for (name, value) in metadata {
            self.metadata.insert((*name).to_owned(), value.to_vec());
        }
        Ok(())
    }

    fn metadata(&self, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.metadata.get(name).cloned())
    }
}
