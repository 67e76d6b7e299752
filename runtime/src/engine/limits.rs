//! Sandbox limits: how much memory, time and state one transform instance may use.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::ResourceLimiter;

/// Per-instance limits, with defaults that fit interpreted guests (Python, JS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// How large the linear memories of one instance may grow, all together, in bytes.
    pub memory_limit_bytes: u64,
    /// Wall-clock time one call into the guest (a whole batch) may run, in milliseconds.
    pub call_timeout_ms: u64,
    /// Largest state key a transform may write, in bytes.
    pub max_state_key_bytes: u32,
    /// Largest state value a transform may write, in bytes. The changelog carries
    /// each value in a Kafka record, so this stays under Kafka's default 1 MiB.
    pub max_state_value_bytes: u32,
    /// Most memory a partition's buffered state writes may hold before a checkpoint
    /// (keys and values twice, in the write log and the read cache, and a slot per
    /// key). Past half of it the partition checkpoints at once, between batches; a
    /// write that would pass it fails its record under `on_error` (`state_buffer_full`).
    pub max_pending_state_bytes: u64,
    /// Most bytes (keys and values) one `scan` call may return; a page past it fails
    /// its record under `on_error` (`scan_too_large`). The host reads the store 64
    /// entries at a time, so it never holds much more than this.
    pub max_scan_bytes: u64,
    /// Most disk the pipeline's state may take on this daemon, all its partitions
    /// together, in bytes (measured every second). Past it, writes that add state fail
    /// their record under `on_error` (`state_quota`); deletes still succeed. No limit
    /// by default.
    pub max_state_bytes: Option<u64>,
    /// Largest output a transform may send (key, value, headers and 128 bytes of
    /// framing), in bytes; a larger one fails its record under `on_error`. The default
    /// is librdkafka's `message.max.bytes`: raise both, and the topic's
    /// `max.message.bytes`, together.
    pub max_output_bytes: u64,
    /// Most bytes of outputs one batch may send (counted as for `max_output_bytes`);
    /// a call that passes it is run again one record at a time, and the record that
    /// takes the batch past it fails.
    pub max_batch_output_bytes: u64,
    /// Guest log lines (stdout, stderr and the log import together) an instance may
    /// write per second; more are dropped and counted.
    pub max_log_lines_per_second: u32,
    /// Bytes of guest log lines an instance may write per second.
    pub max_log_bytes_per_second: u64,
    /// No wall clock and no randomness, for transforms that must replay identically:
    /// the wall clock and the monotonic clock read 0, and random bytes (secure and
    /// insecure) are all zero. Off by default: a guest sees the host's wall clock, its
    /// own monotonic clock and the host's secure random generator.
    pub deterministic: bool,
    /// How far behind the newest record a record may be and still be on time, in
    /// milliseconds: the watermark trails the partition's largest timestamp by this.
    /// Set from the pipeline's `max_out_of_orderness_ms`, not in `[limits]`.
    #[serde(skip)]
    pub max_out_of_orderness_ms: u64,
    /// Processing time from this clock instead of the wall clock, for the guest's
    /// wall clock and processing-time timers alike (`weir test`, whose fixtures move
    /// it). Not in `[limits]`.
    #[serde(skip)]
    pub manual_clock: Option<crate::time::ManualClock>,
    /// The tables the pipeline declares (`tables` in its config): the names a
    /// transform may read with `tables.get` and `tables.scan`. Not in `[limits]`.
    #[serde(skip)]
    pub tables: std::sync::Arc<[String]>,
    /// Ignored, and warned about: this sized an instance pool, gone since instances are
    /// made on demand (2026-12-07). Accepted so that configs that raised it still load.
    #[serde(skip_serializing)]
    pub max_instances: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_limit_bytes: 256 << 20,
            call_timeout_ms: 5_000,
            max_state_key_bytes: 64 << 10,
            max_state_value_bytes: 900 << 10,
            max_pending_state_bytes: 64 << 20,
            max_state_bytes: None,
            max_scan_bytes: 64 << 20,
            max_output_bytes: 1_000_000,
            max_batch_output_bytes: 64 << 20,
            max_log_lines_per_second: 100,
            max_log_bytes_per_second: 64 << 10,
            deterministic: false,
            max_out_of_orderness_ms: 0,
            manual_clock: None,
            tables: std::sync::Arc::from([]),
            max_instances: None,
        }
    }
}

impl Limits {
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }
}

/// Most table elements a guest may grow to: generous for interpreters, bounded for bombs.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Most core instances, tables and linear memories one instance (a store) may create.
/// An interpreter component (Python, JS) bundles several core modules, but no real one
/// comes near these; without them a component could hold thousands of memories, each
/// up to the cap and each a few memory mappings of the process.
pub(crate) const MAX_CORE_INSTANCES: usize = 64;
pub(crate) const MAX_TABLES: usize = 64;
pub(crate) const MAX_MEMORIES: usize = 8;

/// Enforces the memory cap over all of an instance's linear memories together, and
/// remembers the last refused growth, so a trap that follows it (the guest's allocator
/// giving up) can be reported as what it is.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    limit: usize,
    /// Bytes of every linear memory of the store: memories only grow, and go away
    /// with the store.
    total: usize,
    refused: Option<usize>,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            total: 0,
            refused: None,
        }
    }

    /// The instance's memory the last refused growth would have made, since the
    /// previous call, clearing it.
    pub(crate) fn take_refusal(&mut self) -> Option<usize> {
        self.refused.take()
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Refuse rather than trap: a guest whose allocator copes with failure may go on.
        let total = self.total.saturating_sub(current).saturating_add(desired);
        if total > self.limit {
            self.refused = Some(total);
            return Ok(false);
        }
        self.total = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cap holds for an instance's memories together: a component of several
    /// memories used to get the cap once per memory.
    #[test]
    fn the_memory_cap_counts_every_memory_of_an_instance() {
        let mut limiter = MemoryLimiter::new(100);
        assert!(limiter.memory_growing(0, 60, None).unwrap());
        assert!(
            !limiter.memory_growing(0, 60, None).unwrap(),
            "a second memory"
        );
        assert_eq!(limiter.take_refusal(), Some(120));
        assert!(limiter.memory_growing(0, 40, None).unwrap());
        assert!(
            !limiter.memory_growing(60, 61, None).unwrap(),
            "one byte over"
        );
        assert!(limiter.memory_growing(40, 40, None).unwrap(), "no growth");
        assert_eq!(limiter.take_refusal(), Some(101));
        assert_eq!(limiter.take_refusal(), None);
    }
}
