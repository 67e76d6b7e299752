//! Integration tests: the engine, the sandbox and `weir test`, on real components,
//! RocksDB on disk and the real `weir` binary.

mod cli_test;
mod engine_cache;
mod engine_contract;
mod engine_sandbox;
mod event_time;
mod native_equivalence;
mod windowed_examples;
