//! The Weir host runtime.
//!
//! * [`engine`] loads transform components, sandboxes them and serves their host imports.
//! * [`state`] holds keyed state: a per-partition write buffer over RocksDB.
//! * [`pipeline`] runs batches through a transform and applies the per-record error policy.
//! * [`jsonl`] reads and writes records as JSON lines, the fixture format.
//! * [`cli`] is the `weir` command line.

pub mod cli;
pub mod engine;
pub mod jsonl;
pub mod pipeline;
pub mod state;
