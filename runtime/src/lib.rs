//! The Weir host runtime.
//!
//! * [`engine`] loads transform components, sandboxes them and serves their host imports.
//! * [`state`] holds keyed state: a per-partition write buffer over RocksDB.
//! * [`pipeline`] runs batches through a transform, applies the per-record error policy,
//!   and runs Kafka partitions: restore, process, checkpoint.
//! * [`kafka`] talks to Kafka: client settings, the embedded broker, topics, producers.
//! * [`config`] is the TOML pipeline configuration and its validation.
//! * [`daemon`] runs the pipelines of a config: `weir serve` without the signals; it
//!   supervises pipelines, reloads config and serves the [`admin`] API.
//! * [`time`] is event time: watermarks, timers, and where batches are cut for them.
//! * [`table`] is tables: compacted topics kept materialized for transforms to look up.
//! * [`registry`] keeps module versions and deployment history in the data directory.
//! * [`metrics`] are the daemon's Prometheus metrics.
//! * [`jsonl`] reads and writes records as JSON lines, the fixture format.
//! * [`cli`] is the `weir` command line.

pub mod admin;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod failpoint;
#[doc(hidden)]
pub mod fuzzing;
pub mod jsonl;
pub mod kafka;
pub mod metrics;
pub mod pipeline;
pub mod registry;
pub mod state;
pub mod table;
pub mod time;

/// The allocator the `weir` binary (and the benchmarks, which measure it) runs with.
///
/// The host path allocates per record (lifted output fields, state keys and values,
/// the write buffer and its read cache), and many partition threads allocate at once.
/// On the single-threaded engine benches it measured no different from glibc's malloc
/// within the machine's noise (BENCHMARKS.md); the benches run with it so that they
/// measure what the binary runs.
pub use mimalloc::MiMalloc as HostAllocator;
