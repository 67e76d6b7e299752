//! What `process` works with: the partition's state and the outputs of the record.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Output, Timer};

/// Where state lives. In a component it is the Weir host; natively it is
/// [`testing::MemoryState`](crate::testing::MemoryState) or a host embedding the
/// transform.
pub trait StateBackend {
    fn get(&mut self, key: &[u8]) -> Option<Vec<u8>>;
    /// The value of `key` in `out` (replacing what it held); `false` when there is
    /// none. A backend that can read into a reused buffer overrides it.
    fn get_into(&mut self, key: &[u8], out: &mut Vec<u8>) -> bool {
        out.clear();
        self.get(key)
            .map(|value| out.extend_from_slice(&value))
            .is_some()
    }
    fn put(&mut self, key: &[u8], value: &[u8]);
    fn delete(&mut self, key: &[u8]);
    /// Up to `limit` entries under `prefix` strictly after `start_after`, by key.
    fn scan(
        &mut self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: u32,
    ) -> Vec<(Vec<u8>, Vec<u8>)>;
    /// The row of `key` in the pipeline's table `table` (see [`KafkaTable`]).
    fn table_get(&mut self, table: &str, key: &[u8]) -> Option<Vec<u8>>;
    /// Up to `limit` rows of `table` under `prefix` strictly after `start_after`, by key.
    fn table_scan(
        &mut self,
        table: &str,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: u32,
    ) -> Vec<(Vec<u8>, Vec<u8>)>;
    /// Set `timer`; setting one that is set changes nothing.
    fn set_timer(&mut self, timer: &Timer);
    /// Cancel `timer`, if set.
    fn delete_timer(&mut self, timer: &Timer);
}

/// The host, reached through the `weir:transform/state` imports, with the batch's
/// writes kept in the guest until it succeeds (see `writes`).
#[cfg(target_arch = "wasm32")]
#[derive(Debug)]
pub(crate) struct WasmState {
    writes: crate::writes::WriteBuffer,
}

#[cfg(target_arch = "wasm32")]
impl WasmState {
    /// Run `f` with the component's state backend (one per instance).
    pub(crate) fn with<R>(f: impl FnOnce(&mut Self) -> R) -> R {
        std::thread_local! {
            static STATE: std::cell::RefCell<WasmState> = const {
                std::cell::RefCell::new(WasmState {
                    writes: crate::writes::WriteBuffer::new(),
                })
            };
        }
        STATE.with_borrow_mut(f)
    }

    /// Send the kept writes to the host.
    pub(crate) fn flush(&mut self) {
        if !self.writes.is_empty() {
            self.send();
        }
    }

    /// Out of line: a stateless transform never gets here, and its batch loop stays
    /// as small as it was.
    #[inline(never)]
    fn send(&mut self) {
        crate::bindings::weir::transform::state::write_all(self.writes.writes());
        self.writes.clear();
    }

    /// Forget the kept writes.
    pub(crate) fn discard(&mut self) {
        self.writes.clear();
    }
}

#[cfg(target_arch = "wasm32")]
impl StateBackend for WasmState {
    fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let mut value = Vec::new();
        self.get_into(key, &mut value).then_some(value)
    }

    /// The batch's own writes first. Short values then come back in `get-small`'s
    /// result; only longer ones take a second call, `get`, whose list result the host
    /// allocates in this guest.
    fn get_into(&mut self, key: &[u8], out: &mut Vec<u8>) -> bool {
        use crate::bindings::weir::transform::state;
        out.clear();
        if let Some(written) = self.writes.get(key) {
            return written.map(|value| out.extend_from_slice(value)).is_some();
        }
        let small = state::get_small(key);
        match usize::try_from(small.len) {
            Ok(len) if len <= 16 => {
                let mut bytes = [0_u8; 16];
                bytes[..8].copy_from_slice(&small.low.to_le_bytes());
                bytes[8..].copy_from_slice(&small.high.to_le_bytes());
                out.extend_from_slice(&bytes[..len]);
                true
            }
            _ if small.len == -1 => false,
            _ => state::get(key).map(|value| *out = value).is_some(),
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8]) {
        self.writes.write(key, Some(value));
    }

    fn delete(&mut self, key: &[u8]) {
        self.writes.write(key, None);
    }

    /// The host merges its buffer with the store; the kept writes go to it first so
    /// the scan sees them.
    fn scan(
        &mut self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: u32,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.flush();
        crate::bindings::weir::transform::state::scan(prefix, start_after, limit)
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect()
    }

    fn table_get(&mut self, table: &str, key: &[u8]) -> Option<Vec<u8>> {
        crate::bindings::weir::transform::tables::get(table, key)
    }

    fn table_scan(
        &mut self,
        table: &str,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: u32,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        crate::bindings::weir::transform::tables::scan(table, prefix, start_after, limit)
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect()
    }

    fn set_timer(&mut self, timer: &Timer) {
        crate::bindings::weir::transform::timers::set(timer.domain.into(), timer.at, &timer.key);
    }

    fn delete_timer(&mut self, timer: &Timer) {
        crate::bindings::weir::transform::timers::delete(timer.domain.into(), timer.at, &timer.key);
    }
}

/// Buffers a batch reuses for every typed state access: the full key (prefix and
/// key) and the encoded value, read or to write. Allocating both for every access
/// added two to the handful of allocations a word count makes per word, in a guest
/// where the allocator is a third of the transform's time (BENCHMARKS.md).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    key: Vec<u8>,
    value: Vec<u8>,
}

/// The context of one `process` or `on_timer` call.
pub struct Context<'a> {
    state: &'a mut dyn StateBackend,
    outputs: &'a mut Vec<Output>,
    scratch: &'a mut Scratch,
    timestamp: i64,
    watermark: i64,
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        state: &'a mut dyn StateBackend,
        outputs: &'a mut Vec<Output>,
        scratch: &'a mut Scratch,
        timestamp: i64,
        watermark: i64,
    ) -> Self {
        Self {
            state,
            outputs,
            scratch,
            timestamp,
            watermark,
        }
    }

    /// The partition's watermark as this record arrives (or this timer fires): every
    /// record older than it is late. [`NO_WATERMARK`](crate::time::NO_WATERMARK) until
    /// a record with a timestamp has been seen.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Whether an event at `timestamp` is late: older than the watermark.
    pub fn is_late(&self, timestamp: i64) -> bool {
        timestamp < self.watermark
    }

    /// Call [`Transform::on_timer`](crate::Transform::on_timer) with `timer` once its
    /// time has come. Setting a timer that is set already changes nothing.
    pub fn set_timer(&mut self, timer: &Timer) {
        self.state.set_timer(timer);
    }

    /// Cancel `timer`; cancelling one that is not set does nothing.
    pub fn delete_timer(&mut self, timer: &Timer) {
        self.state.delete_timer(timer);
    }

    /// Raw byte-keyed state of the partition.
    pub fn state(&mut self) -> State<'_> {
        State {
            backend: &mut *self.state,
        }
    }

    /// Typed state: values of type `V` stored as JSON under keys that start with
    /// `prefix`. JSON keeps the state readable by a transform in any language.
    pub fn table<'t, V>(&'t mut self, prefix: &'t str) -> Table<'t, V> {
        Table {
            backend: &mut *self.state,
            prefix: prefix.as_bytes(),
            scratch: &mut *self.scratch,
            value: PhantomData,
        }
    }

    /// A table the pipeline declares (`[pipelines.NAME.tables.<name>]`): a compacted
    /// topic the host keeps materialized for this partition, to join records with.
    /// It is read only, and holds every table record at or before this record's
    /// timestamp (and, for a record older than its partition's stream time, up to
    /// that; see the README's "Tables and joins").
    pub fn kafka_table<'t>(&'t mut self, name: &'t str) -> KafkaTable<'t> {
        KafkaTable {
            backend: &mut *self.state,
            name,
        }
    }

    /// Emit `output`. Without a timestamp of its own it gets the input record's.
    pub fn emit(&mut self, mut output: Output) {
        output.timestamp.get_or_insert(self.timestamp);
        self.outputs.push(output);
    }

    /// Emit `value` under `key` to the default output topic.
    pub fn send(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.emit(Output::new(value).with_key(key));
    }

    /// Emit `value` as JSON under `key` to the default output topic.
    pub fn send_json<T: Serialize + ?Sized>(
        &mut self,
        key: impl Into<Vec<u8>>,
        value: &T,
    ) -> Result<(), Error> {
        self.emit(Output::json(value)?.with_key(key));
        Ok(())
    }
}

/// Byte-keyed state. Writes become durable at the host's next checkpoint, together
/// with the input offsets they belong to.
pub struct State<'a> {
    backend: &'a mut dyn StateBackend,
}

impl State<'_> {
    pub fn get(&mut self, key: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        self.backend.get(key.as_ref())
    }

    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.backend.put(key.as_ref(), value.as_ref());
    }

    pub fn delete(&mut self, key: impl AsRef<[u8]>) {
        self.backend.delete(key.as_ref());
    }

    /// Every entry whose key starts with `prefix`, in key order, fetched a page at a time.
    pub fn scan(&mut self, prefix: impl AsRef<[u8]>) -> Scan<'_> {
        Scan::new(&mut *self.backend, prefix.as_ref().to_vec())
    }
}

/// A table the pipeline declares, read only. See [`Context::kafka_table`].
///
/// A stream-table join is a lookup by the record's key: an inner join skips records
/// whose key has no row, a left join goes on without one.
///
/// ```ignore
/// let Some(customer) = ctx.kafka_table("customers").get_json::<Customer>(key)? else {
///     return Ok(()); // inner join: no customer, no output
/// };
/// ```
pub struct KafkaTable<'a> {
    backend: &'a mut dyn StateBackend,
    name: &'a str,
}

impl KafkaTable<'_> {
    /// The row of `key`: the value of the table topic's latest record with that key,
    /// unless that record deleted it (no value).
    pub fn get(&mut self, key: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        self.backend.table_get(self.name, key.as_ref())
    }

    /// The row of `key`, read as JSON.
    pub fn get_json<V: DeserializeOwned>(
        &mut self,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<V>, Error> {
        let key = key.as_ref();
        self.get(key)
            .map(|raw| {
                serde_json::from_slice(&raw).map_err(|e| {
                    Error::msg(format!(
                        "the row of {:?} in table {:?} is not the expected JSON: {e}",
                        String::from_utf8_lossy(key),
                        self.name
                    ))
                })
            })
            .transpose()
    }

    /// Every row whose key starts with `prefix`, in key order, fetched a page at a time.
    pub fn scan(&mut self, prefix: impl AsRef<[u8]>) -> Scan<'_> {
        let mut scan = Scan::new(&mut *self.backend, prefix.as_ref().to_vec());
        scan.table = Some(self.name.to_owned());
        scan
    }
}

/// Entries under a prefix, in key order. See [`State::scan`] and [`KafkaTable::scan`].
pub struct Scan<'a> {
    backend: &'a mut dyn StateBackend,
    /// The table scanned, or the partition's state.
    table: Option<String>,
    prefix: Vec<u8>,
    page: std::vec::IntoIter<(Vec<u8>, Vec<u8>)>,
    last: Option<Vec<u8>>,
    done: bool,
}

const SCAN_PAGE: u32 = 256;

impl<'a> Scan<'a> {
    fn new(backend: &'a mut dyn StateBackend, prefix: Vec<u8>) -> Self {
        Self {
            backend,
            table: None,
            prefix,
            page: Vec::new().into_iter(),
            last: None,
            done: false,
        }
    }
}

impl Iterator for Scan<'_> {
    type Item = (Vec<u8>, Vec<u8>);

    fn next(&mut self) -> Option<Self::Item> {
        if let Some((key, value)) = self.page.next() {
            self.last = Some(key.clone());
            return Some((key, value));
        }
        if self.done {
            return None;
        }
        let after = self.last.as_deref();
        let page = match &self.table {
            None => self.backend.scan(&self.prefix, after, SCAN_PAGE),
            Some(table) => self
                .backend
                .table_scan(table, &self.prefix, after, SCAN_PAGE),
        };
        self.done = page.len() < SCAN_PAGE as usize;
        self.page = page.into_iter();
        let (key, value) = self.page.next()?;
        self.last = Some(key.clone());
        Some((key, value))
    }
}

/// Values of type `V`, stored as JSON under `prefix` + key. See [`Context::table`].
pub struct Table<'a, V> {
    backend: &'a mut dyn StateBackend,
    prefix: &'a [u8],
    scratch: &'a mut Scratch,
    value: PhantomData<fn() -> V>,
}

impl<V: Serialize + DeserializeOwned> Table<'_, V> {
    /// Put `prefix` + `key` in the key scratch buffer.
    fn set_key(&mut self, key: &[u8]) {
        self.scratch.key.clear();
        self.scratch.key.extend_from_slice(self.prefix);
        self.scratch.key.extend_from_slice(key);
    }

    fn read(&mut self) -> Result<Option<V>, Error> {
        let Scratch { key, value } = &mut *self.scratch;
        if !self.backend.get_into(key, value) {
            return Ok(None);
        }
        decode(key, value).map(Some)
    }

    fn write(&mut self, value: &V) -> Result<(), Error> {
        self.scratch.value.clear();
        serde_json::to_writer(&mut self.scratch.value, value)?;
        self.backend.put(&self.scratch.key, &self.scratch.value);
        Ok(())
    }

    pub fn get(&mut self, key: impl AsRef<[u8]>) -> Result<Option<V>, Error> {
        self.set_key(key.as_ref());
        self.read()
    }

    pub fn put(&mut self, key: impl AsRef<[u8]>, value: &V) -> Result<(), Error> {
        self.set_key(key.as_ref());
        self.write(value)
    }

    pub fn delete(&mut self, key: impl AsRef<[u8]>) {
        self.set_key(key.as_ref());
        self.backend.delete(&self.scratch.key);
    }

    /// Replace the value under `key` with `f(current)` and return the new value.
    pub fn update(
        &mut self,
        key: impl AsRef<[u8]>,
        f: impl FnOnce(Option<V>) -> V,
    ) -> Result<V, Error> {
        self.set_key(key.as_ref());
        let new = f(self.read()?);
        self.write(&new)?;
        Ok(new)
    }

    /// Every entry of the table in key order, with the prefix taken off the keys.
    pub fn iter(&mut self) -> impl Iterator<Item = Result<(Vec<u8>, V), Error>> + '_ {
        let prefix_len = self.prefix.len();
        Scan::new(&mut *self.backend, self.prefix.to_vec()).map(move |(key, raw)| {
            decode(&key, &raw).map(|value| (key[prefix_len..].to_vec(), value))
        })
    }
}

fn decode<V: DeserializeOwned>(key: &[u8], raw: &[u8]) -> Result<V, Error> {
    serde_json::from_slice(raw).map_err(|e| {
        Error::msg(format!(
            "state under {:?} is not the expected JSON: {e}",
            String::from_utf8_lossy(key)
        ))
    })
}
