//! Run a transform natively, without Wasm or a host: for `cargo test`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use crate::time::NO_WATERMARK;
use crate::{Config, Error, Output, Record, StateBackend, TimeDomain, Timer, Transform};

/// In-memory state with the host's semantics: a failed record's writes (and the
/// timers it set or deleted) are undone.
#[derive(Debug, Default, Clone)]
pub struct MemoryState {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
    timers: BTreeSet<Timer>,
    /// The pipeline's tables by name: rows a test sets, as the host reads them from
    /// their topics.
    tables: BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
    undo: Vec<Undo>,
}

#[derive(Debug, Clone)]
enum Undo {
    Entry(Vec<u8>, Option<Vec<u8>>),
    /// The timer, and whether it was set before.
    Timer(Timer, bool),
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

    /// Set the row of `key` in table `table` (a record of the table topic), or delete
    /// it with `None` (a tombstone). Transforms only read tables.
    pub fn set_table_row(
        &mut self,
        table: &str,
        key: impl AsRef<[u8]>,
        value: Option<impl AsRef<[u8]>>,
    ) {
        let rows = self.tables.entry(table.to_owned()).or_default();
        match value {
            Some(value) => rows.insert(key.as_ref().to_vec(), value.as_ref().to_vec()),
            None => rows.remove(key.as_ref()),
        };
    }

    /// The timers set, earliest first.
    pub fn timers(&self) -> impl Iterator<Item = &Timer> {
        self.timers.iter()
    }

    fn record(&mut self, key: &[u8], previous: Option<Vec<u8>>) {
        self.undo.push(Undo::Entry(key.to_vec(), previous));
    }

    fn rollback(&mut self) {
        while let Some(undo) = self.undo.pop() {
            match undo {
                Undo::Entry(key, Some(value)) => {
                    self.entries.insert(key, value);
                }
                Undo::Entry(key, None) => {
                    self.entries.remove(&key);
                }
                Undo::Timer(timer, true) => {
                    self.timers.insert(timer);
                }
                Undo::Timer(timer, false) => {
                    self.timers.remove(&timer);
                }
            }
        }
    }

    /// Take the earliest timer of `domain` due at `upto`.
    fn take_due(&mut self, domain: TimeDomain, upto: i64) -> Option<Timer> {
        let first = Timer {
            domain,
            at: i64::MIN,
            key: Vec::new(),
        };
        let due = self
            .timers
            .range(first..)
            .next()
            .filter(|timer| timer.domain == domain && timer.at <= upto)
            .cloned()?;
        self.delete_timer(&due);
        Some(due)
    }
}

impl StateBackend for MemoryState {
    fn set_timer(&mut self, timer: &Timer) {
        let was_set = !self.timers.insert(timer.clone());
        self.undo.push(Undo::Timer(timer.clone(), was_set));
    }

    fn delete_timer(&mut self, timer: &Timer) {
        let was_set = self.timers.remove(timer);
        self.undo.push(Undo::Timer(timer.clone(), was_set));
    }

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
        scan_map(&self.entries, prefix, start_after, limit)
    }

    fn table_get(&mut self, table: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.tables.get(table)?.get(key).cloned()
    }

    fn table_scan(
        &mut self,
        table: &str,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: u32,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.tables
            .get(table)
            .map(|rows| scan_map(rows, prefix, start_after, limit))
            .unwrap_or_default()
    }
}

/// Up to `limit` entries of `map` under `prefix` strictly after `start_after`.
fn scan_map(
    map: &BTreeMap<Vec<u8>, Vec<u8>>,
    prefix: &[u8],
    start_after: Option<&[u8]>,
    limit: u32,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let lower = match start_after {
        Some(after) if after >= prefix => Bound::Excluded(after),
        _ => Bound::Included(prefix),
    };
    map.range::<[u8], _>((lower, Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(prefix))
        .take(limit as usize)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
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
///
/// Time runs as on the host: each record meets the watermark left by the records
/// before it (their largest timestamp minus the allowed out-of-orderness, see
/// [`Harness::with_max_out_of_orderness`]), and event-time timers due at the
/// watermark a record leaves fire right after it (so, before the next record);
/// [`Harness::advance_processing_time`] fires processing-time timers.
pub struct Harness<T> {
    transform: T,
    state: MemoryState,
    next_offset: i64,
    max_out_of_orderness_ms: i64,
    /// The largest record timestamp seen.
    stream_time: Option<i64>,
    timer_errors: Vec<(Timer, Error)>,
    /// What the wall clock reads for processing-time timers.
    now: i64,
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
            max_out_of_orderness_ms: 0,
            stream_time: None,
            timer_errors: Vec::new(),
            now: i64::MIN,
        })
    }

    /// Let records be up to `ms` behind the newest and still on time (the pipeline's
    /// `max_out_of_orderness_ms`).
    pub fn with_max_out_of_orderness(mut self, ms: u64) -> Self {
        self.max_out_of_orderness_ms = i64::try_from(ms).unwrap_or(i64::MAX);
        self
    }

    /// The watermark the next record meets.
    pub fn watermark(&self) -> i64 {
        self.stream_time.map_or(NO_WATERMARK, |time| {
            time.saturating_sub(self.max_out_of_orderness_ms)
        })
    }

    /// Process one record as given, as the host runs a batch of one: the record,
    /// then the event-time timers due at the watermark it leaves; returns the
    /// record's outputs, then the timers'. On error the record's state writes are
    /// undone, as the host does. A timer that fails is deleted, as the host does under
    /// `skip` or `dead-letter`, and kept in [`Harness::timer_errors`].
    pub fn process(&mut self, record: Record) -> Result<Vec<Output>, Error> {
        let watermark = self.watermark();
        self.next_offset = record.offset + 1;
        let timestamp = record.timestamp;
        self.state.undo.clear();
        let records = vec![record];
        let mut outputs = match crate::run_timed_batch(
            &mut self.transform,
            records,
            &[watermark],
            &mut self.state,
        ) {
            Ok(outputs) => outputs,
            Err(error) => {
                self.state.rollback();
                return Err(Error::msg(error.message));
            }
        };
        if timestamp >= 0 {
            self.stream_time = Some(self.stream_time.map_or(timestamp, |t| t.max(timestamp)));
        }
        outputs.extend(self.fire());
        Ok(outputs)
    }

    /// Let the wall clock read `now` (it starts at the beginning of time and never goes
    /// back): the timers due by then fire.
    pub fn advance_processing_time(&mut self, now: i64) -> Vec<Output> {
        self.now = self.now.max(now);
        self.fire()
    }

    /// Move the watermark to `to` (never back), as if a record had arrived that far
    /// ahead (`to` plus the allowed out-of-orderness): the event-time timers due by
    /// then fire. `weir test` fixtures do the same with a `{"watermark": to}` line.
    pub fn advance_watermark(&mut self, to: i64) -> Vec<Output> {
        let stream_time = to.saturating_add(self.max_out_of_orderness_ms);
        self.stream_time = Some(self.stream_time.map_or(stream_time, |t| t.max(stream_time)));
        self.fire()
    }

    /// Timers whose `on_timer` failed (each deleted), with their errors, oldest first.
    pub fn timer_errors(&self) -> &[(Timer, Error)] {
        &self.timer_errors
    }

    /// Fire the timers due, as the host does at a firing point: event-time ones at the
    /// watermark, then processing-time ones at the clock, each deleted as it fires,
    /// until none is due, those the firing sets for a time already passed too (up to
    /// 100,000, as on the host). One timer per call here, where the host passes up to
    /// 256 and, after a failure, calls again: a transform must not count on its own
    /// fields (rather than state) to see a timer or record once.
    fn fire(&mut self) -> Vec<Output> {
        let mut outputs = Vec::new();
        let watermark = self.watermark();
        for _ in 0..100_000 {
            self.state.undo.clear();
            let due = self
                .state
                .take_due(TimeDomain::EventTime, watermark)
                .or_else(|| self.state.take_due(TimeDomain::ProcessingTime, self.now));
            let Some(timer) = due else {
                break;
            };
            let fired = vec![timer.clone()];
            match crate::run_timers(&mut self.transform, fired, watermark, &mut self.state) {
                Ok(more) => outputs.extend(more),
                Err(error) => {
                    // Its writes go; the timer stays deleted.
                    self.state.rollback();
                    self.state.delete_timer(&timer);
                    self.timer_errors.push((timer, Error::msg(error.message)));
                }
            }
        }
        outputs
    }

    /// Process a record that has only a value, at the offset after the last record.
    pub fn process_value(&mut self, value: impl Into<Vec<u8>>) -> Result<Vec<Output>, Error> {
        let mut record = Record::from_value(value);
        record.offset = self.next_offset;
        self.process(record)
    }

    /// Set the row of `key` in the pipeline's table `table`, as a record of the table
    /// topic would before the next record (`None` deletes it).
    pub fn set_table_row(
        &mut self,
        table: &str,
        key: impl AsRef<[u8]>,
        value: Option<impl AsRef<[u8]>>,
    ) {
        self.state.set_table_row(table, key, value);
    }

    /// The state as the transform left it.
    pub fn state(&self) -> &MemoryState {
        &self.state
    }

    pub fn transform(&self) -> &T {
        &self.transform
    }
}
