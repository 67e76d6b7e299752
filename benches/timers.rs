//! Timers fired per second on one thread (issue target: at least 1M per core), through
//! the host path a partition runs: timers set by records and checkpointed into
//! RocksDB, then one watermark move that makes them all due and batches that fire them
//! (`on-timers` calls of up to 256 timers, each deleted from state as it fires, its
//! outputs kept), then the checkpoint that writes the deletions to RocksDB. Setting the
//! timers is setup, outside the measured time.
//!
//! * `timers/fire/plain`: the misbehave guest's timers, whose `on_timer` emits one
//!   small output each (`fired`, with the timer's key and time).
//! * `timers/fire/window_close`: the tumbling count's windows, one per key: each timer
//!   reads and deletes a window's count and emits its JSON, the work of a window close.
//!
//! `cargo bench -p weir-benches --bench timers`.

#[global_allocator]
static ALLOCATOR: weir_runtime::HostAllocator = weir_runtime::HostAllocator;

#[allow(
    dead_code,
    reason = "shared with the transform benches; this one uses a part"
)]
mod common;

use std::time::{Duration, Instant};

use common::*;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use weir_runtime::engine::{Engine, InputRecord, Instance};
use weir_runtime::pipeline::{ErrorPolicy, Processor as _, run_batch};

/// Timers per measured firing.
const TIMERS: usize = 100_000;
const BASE: i64 = 1_700_000_000_000;

/// A fresh instance of `example` on RocksDB holding `TIMERS` timers set by `records`
/// and checkpointed.
fn with_timers(
    engine: &Engine,
    example: &str,
    config: &[(&str, &str)],
    records: &[InputRecord],
) -> (Instance, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut instance = wasm_instance(engine, example, config, rocksdb_state(&dir, "timers"));
    for batch in records.chunks(256) {
        run(&mut instance, batch);
    }
    instance.state().checkpoint(&[]).expect("checkpoint");
    // The commit runs on the state's own thread: wait until it has landed, so that
    // the measured firing does not pay for the setup's writes.
    instance
        .state()
        .metadata("landed")
        .expect("the setup's commit lands");
    (instance, dir)
}

/// Move the watermark to `to`, fire until `expected` outputs came, and checkpoint the
/// deletions into RocksDB, as a partition's next commit does: how long it took.
fn fire(instance: &mut Instance, to: i64, expected: usize) -> Duration {
    let started = Instant::now();
    assert!(instance.advance_watermark(to).expect("clock moves"));
    let mut fired = 0;
    while fired < expected {
        let outcome = run_batch(instance, &[], ErrorPolicy::Fail).expect("timers fire");
        assert!(!outcome.outputs.is_empty(), "{fired} of {expected} fired");
        fired += outcome.outputs.len();
    }
    instance.state().checkpoint(&[]).expect("checkpoint");
    // The commit runs on the state's own thread; the firing is done once it landed.
    instance
        .state()
        .metadata("landed")
        .expect("the commit lands");
    let elapsed = started.elapsed();
    assert_eq!(fired, expected);
    elapsed
}

fn timers(c: &mut Criterion) {
    let engine = engine();
    // Distinct keys over a thousand distinct times, as many windows' closes are.
    let plain: Vec<InputRecord> = (0..TIMERS)
        .map(|i| {
            let command = format!("timer:{}:k{i}", BASE + (i % 1_000) as i64);
            InputRecord {
                timestamp: BASE - 1_000_000,
                ..InputRecord::from_value("events", 0, i as i64, command)
            }
        })
        .collect();
    let windows: Vec<InputRecord> = (0..TIMERS)
        .map(|i| {
            let mut record = record(i, b"click".to_vec());
            record.key = Some(format!("k{i}").into_bytes());
            record.timestamp = BASE + (i % 1_000) as i64;
            record
        })
        .collect();

    let mut group = c.benchmark_group("timers");
    group.throughput(Throughput::Elements(TIMERS as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("fire/plain", |b| {
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| {
                    let (mut instance, _dir) = with_timers(&engine, "misbehave", &[], &plain);
                    fire(&mut instance, BASE + 1_000, TIMERS)
                })
                .sum()
        })
    });
    let config = [("window_ms", "60000"), ("grace_ms", "0")];
    group.bench_function("fire/window_close", |b| {
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| {
                    let (mut instance, _dir) =
                        with_timers(&engine, "tumbling-count", &config, &windows);
                    fire(&mut instance, BASE + 120_000, TIMERS)
                })
                .sum()
        })
    });
    group.finish();
}

criterion_group!(benches, timers);
criterion_main!(benches);
