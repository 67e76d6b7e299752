//! Run a transform natively, without Wasm or a host: for `cargo test`.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::{Config, Error, Output, Record, StateBackend, Transform};

/// In-memory state with the host's semantics: a failed record's writes are undone.
#[derive(Debug, Default, Clone)]
pub struct MemoryState {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
    undo: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl MemoryState {
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<&[u8]> {
        self.entries.get(key.as_ref()).map(Vec::as_slice)
    }

    /// The value under `key` as UTF-8 text.
    pub fn get_str(&self, key: impl AsRef<[u8]>) -> Option<&str> {
        self.get(key).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    fn record(&mut self, key: &[u8], previous: Option<Vec<u8>>) {
        self.undo.push((key.to_vec(), previous));
    }

    fn rollback(&mut self) {
        while let Some((key, previous)) = self.undo.pop() {
            match previous {
                Some(value) => self.entries.insert(key, value),
                None => self.entries.remove(&key),
            };
        }
    }
}

impl StateBackend for MemoryState {
    fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        self.entries.get(key).cloned()
    }

    fn put(&mut self, key: &[u8], value: &[u8]) {
        let previous = self.entries.insert(key.to_vec(), value.to_vec());
        self.record(key, previous);
    }

    fn delete(&mut self, key: &[u8]) {
        let previous = self.entries.remove(key);
        self.record(key, previous);
    }

    fn scan(
        &mut self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: u32,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        self.entries
            .range::<[u8], _>((lower, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit as usize)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// A transform under test, with its own in-memory state.
///
/// ```
/// # use weir_sdk::{Config, Context, Error, Record, Transform};
/// # struct Upper;
/// # impl Transform for Upper {
/// #     fn init(_: &Config) -> Result<Self, Error> { Ok(Upper) }
/// #     fn process(&mut self, r: Record, ctx: &mut Context<'_>) -> Result<(), Error> {
/// #         ctx.send("k", r.value_str()?.to_uppercase()); Ok(())
/// #     }
/// # }
/// let mut harness = weir_sdk::testing::Harness::<Upper>::new()?;
/// let out = harness.process_value("hi")?;
/// assert_eq!(out[0].value_str()?, "HI");
/// # Ok::<(), weir_sdk::Error>(())
/// ```
pub struct Harness<T> {
    transform: T,
    state: MemoryState,
    next_offset: i64,
}

impl<T: Transform> Harness<T> {
    /// Initialise the transform with an empty configuration.
    pub fn new() -> Result<Self, Error> {
        Self::with_config(Config::default())
    }

    /// Initialise the transform with `config`, e.g. `[("min", "10")].into_iter().collect()`.
    pub fn with_config(config: Config) -> Result<Self, Error> {
        Ok(Self {
            transform: T::init(&config)?,
            state: MemoryState::default(),
            next_offset: 0,
        })
    }

    /// Process one record as given. On error its state writes are undone, as the
    /// host does.
    pub fn process(&mut self, record: Record) -> Result<Vec<Output>, Error> {
        self.next_offset = record.offset + 1;
        self.state.undo.clear();
        match crate::run_batch(&mut self.transform, vec![record], &mut self.state) {
            Ok(outputs) => Ok(outputs),
            Err(error) => {
                self.state.rollback();
                Err(Error::msg(error.message))
            }
        }
    }

    /// Process a record that has only a value, at the offset after the last record.
    pub fn process_value(&mut self, value: impl Into<Vec<u8>>) -> Result<Vec<Output>, Error> {
        let mut record = Record::from_value(value);
        record.offset = self.next_offset;
        self.process(record)
    }

    /// The state as the transform left it.
    pub fn state(&self) -> &MemoryState {
        &self.state
    }

    pub fn transform(&self) -> &T {
        &self.transform
    }
}
