//! The Weir host runtime.
//!
//! * [`engine`] loads transform components, sandboxes them and serves their host imports.
//! * [`state`] holds keyed state: a per-partition write buffer over RocksDB.
//! * [`pipeline`] runs batches through a transform and applies the per-record error policy.
//! * [`cli`] is the `weir` command line.

pub mod engine;
pub mod pipeline;
pub mod state;
