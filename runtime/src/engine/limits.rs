//! Sandbox limits: how much memory, time and state one transform instance may use.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::ResourceLimiter;

/// Per-instance limits, with defaults that fit interpreted guests (Python, JS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest linear memory one instance may grow to, in bytes.
    pub memory_limit_bytes: u64,
    /// Wall-clock time one call into the guest (a whole batch) may run, in milliseconds.
    pub call_timeout_ms: u64,
    /// Largest state key a transform may write, in bytes.
    pub max_state_key_bytes: u32,
    /// Largest state value a transform may write, in bytes. The changelog carries
    /// each value in a Kafka record, so this stays under Kafka's default 1 MiB.
    pub max_state_value_bytes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_limit_bytes: 256 << 20,
            call_timeout_ms: 5_000,
            max_state_key_bytes: 64 << 10,
            max_state_value_bytes: 900 << 10,
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

/// Enforces the memory cap and remembers the last refused growth, so a trap that
/// follows it (the guest's allocator giving up) can be reported as what it is.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    limit: usize,
    refused: Option<usize>,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            refused: None,
        }
    }

    /// The size of the last refused growth since the previous call, clearing it.
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
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Refuse rather than trap: a guest whose allocator copes with failure may go on.
        if desired > self.limit {
            self.refused = Some(desired);
            return Ok(false);
        }
        Ok(true)
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
