//! The host path with a Wasm transform against the same transform compiled natively.
//!
//! Every case runs `run_batch` (batch scope, write buffer, error policy) on a
//! `Processor`: a Wasm `Instance` of a guest example, or a `NativeProcessor` of the same
//! crate built for the host. Setup (loading, instantiating, building records) stays out
//! of the measured loop. Throughput is in records per second.
//!
//! * `byte_map/{wasm,native}/{1,16,256}`: 100-byte values, ASCII uppercased. Nearly all
//!   of the Wasm time is the boundary: the call, and copying records in and outputs out.
//!   Surprising: batch 256 below 3M records/s, or batch 1 faster per record than 256.
//! * `json_filter/{wasm,native}`: parse, filter and reshape JSON events (the example).
//!   Guest work dominates. Surprising: Wasm more than 2x native.
//! * `stateful_count/{wasm,native}`: word count with one word per record over 100k
//!   distinct keys in RocksDB, a get and a put per record, checkpointing every 16k
//!   records. Surprising: below 1M records/s for Wasm.
//! * `state/get_put`: the same state traffic with no transform at all, to separate the
//!   cost of state from the cost of the boundary.

#[global_allocator]
static ALLOCATOR: weir_runtime::HostAllocator = weir_runtime::HostAllocator;

mod common;

use std::time::Duration;

use common::*;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use weir_runtime::state::PartitionState;
use weir_tests::native::NativeProcessor;

fn byte_map(c: &mut Criterion) {
    let engine = engine();
    let mut group = c.benchmark_group("byte_map");
    for size in [1usize, 16, 256] {
        let batch = byte_map_batch(size);
        group.throughput(Throughput::Elements(size as u64));
        let mut wasm = wasm_instance(&engine, "byte-map", &[], PartitionState::default());
        group.bench_with_input(BenchmarkId::new("wasm", size), &batch, |b, batch| {
            b.iter(|| run(&mut wasm, batch))
        });
        let mut native =
            NativeProcessor::<weir_example_byte_map::ByteMap>::new(&[], PartitionState::default());
        group.bench_with_input(BenchmarkId::new("native", size), &batch, |b, batch| {
            b.iter(|| run(&mut native, batch))
        });
    }
    group.finish();
}

fn json_filter(c: &mut Criterion) {
    let engine = engine();
    let batch = json_events(256);
    let config = [("min_amount_cents", "1000")];
    let mut group = c.benchmark_group("json_filter");
    group.throughput(Throughput::Elements(batch.len() as u64));
    let mut wasm = wasm_instance(&engine, "json-filter", &config, PartitionState::default());
    group.bench_function("wasm", |b| b.iter(|| run(&mut wasm, &batch)));
    let mut native = NativeProcessor::<weir_example_json_filter::JsonFilter>::new(
        &config,
        PartitionState::default(),
    );
    group.bench_function("native", |b| b.iter(|| run(&mut native, &batch)));
    group.finish();
}

fn stateful_count(c: &mut Criterion) {
    let engine = engine();
    let dir = tempfile::tempdir().expect("temporary directory");
    let batches = word_batches();
    let mut group = c.benchmark_group("stateful_count");
    group.throughput(Throughput::Elements(STATE_BATCH as u64));

    let mut wasm = wasm_instance(&engine, "word-count", &[], rocksdb_state(&dir, "wasm"));
    let mut next = 0;
    group.bench_function("wasm", |b| {
        b.iter(|| stateful_iteration(&mut wasm, &batches, &mut next))
    });

    let state = rocksdb_state(&dir, "native");
    let mut native = NativeProcessor::<weir_example_word_count::WordCount>::new(&[], state);
    let mut next = 0;
    group.bench_function("native", |b| {
        b.iter(|| stateful_iteration(&mut native, &batches, &mut next))
    });
    group.finish();
}

fn state_only(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut state = rocksdb_state(&dir, "state");
    let keys: Vec<Vec<u8>> = (0..DISTINCT_KEYS)
        .map(|i| format!("count/w{:06}", (i * 7919) % DISTINCT_KEYS).into_bytes())
        .collect();
    let mut group = c.benchmark_group("state");
    group.throughput(Throughput::Elements(STATE_BATCH as u64));
    let mut next = 0usize;
    group.bench_function("get_put", |b| {
        b.iter(|| {
            for _ in 0..STATE_BATCH {
                let key = &keys[next % keys.len()];
                next += 1;
                let n = state.get(key).expect("get").map_or(0, |v| v.len());
                state.put(key.clone(), (n + 1).to_string().into_bytes());
            }
            if (next / STATE_BATCH).is_multiple_of(CHECKPOINT_EVERY) {
                state.checkpoint(&[]).expect("checkpoint");
            }
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(4))
}

criterion_group! {
    name = benches;
    config = config();
    targets = byte_map, json_filter, stateful_count, state_only
}
criterion_main!(benches);
