//! Wasm against native, interleaved batch by batch: `cargo bench -p weir-benches --bench
//! compare`.
//!
//! The criterion bench (`transform`) measures the Wasm and the native case of each
//! transform one after the other, seconds apart. On a shared machine whose speed drifts
//! by a factor of two within a minute (ours does), a ratio of two such measurements says
//! more about the drift than about Wasm. Here the two run alternately, one batch each,
//! for the same seconds, so a slow stretch slows both: the ratio of their totals is the
//! cost of Wasm whatever the machine is doing meanwhile.
//!
//! Prints, per case, the median batch time of each side, the ratio of the total times
//! and the records per second of each side over its total time (checkpoints included,
//! for the stateful count). WEIR_COMPARE_SECONDS sets the seconds per case (default 20).

#[global_allocator]
static ALLOCATOR: weir_runtime::HostAllocator = weir_runtime::HostAllocator;

mod common;

use std::time::{Duration, Instant};

use common::*;
use weir_runtime::pipeline::Processor;
use weir_runtime::state::PartitionState;
use weir_tests::native::NativeProcessor;

/// Batch times of one side of a case.
#[derive(Default)]
struct Side {
    times: Vec<Duration>,
    records: usize,
}

impl Side {
    fn total(&self) -> Duration {
        self.times.iter().sum()
    }

    fn median(&mut self) -> Duration {
        self.times.sort_unstable();
        self.times[self.times.len() / 2]
    }

    fn records_per_second(&self) -> f64 {
        self.records as f64 / self.total().as_secs_f64()
    }
}

/// Time `step` once, adding to `side`; `step` returns the records it processed.
fn timed(side: &mut Side, step: &mut dyn FnMut() -> usize) {
    let started = Instant::now();
    let records = step();
    side.times.push(started.elapsed());
    side.records += records;
}

/// Run `wasm` and `native` alternately for `seconds` after a warm-up, each call one
/// batch, and print the comparison. Which side goes first alternates too.
fn compare(
    name: &str,
    seconds: u64,
    wasm: &mut dyn FnMut() -> usize,
    native: &mut dyn FnMut() -> usize,
) {
    let warm_up = Instant::now() + Duration::from_secs(2);
    while Instant::now() < warm_up {
        wasm();
        native();
    }
    let (mut w, mut n) = (Side::default(), Side::default());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut round = 0u64;
    while Instant::now() < deadline {
        if round.is_multiple_of(2) {
            timed(&mut w, wasm);
            timed(&mut n, native);
        } else {
            timed(&mut n, native);
            timed(&mut w, wasm);
        }
        round += 1;
    }
    let ratio = w.total().as_secs_f64() / n.total().as_secs_f64();
    println!(
        "{name:<22} {:>10.1} {:>10.1} {ratio:>8.2}x {:>10.3} {:>10.3} {:>8}",
        w.median().as_secs_f64() * 1e6,
        n.median().as_secs_f64() * 1e6,
        w.records_per_second() / 1e6,
        n.records_per_second() / 1e6,
        w.times.len(),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let seconds = std::env::var("WEIR_COMPARE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let engine = engine();
    println!(
        "{:<22} {:>10} {:>10} {:>9} {:>10} {:>10} {:>8}",
        "case", "wasm µs", "native µs", "wasm/nat", "wasm M/s", "native M/s", "batches"
    );

    let batch = byte_map_batch(256);
    let mut wasm = wasm_instance(&engine, "byte-map", &[], PartitionState::default());
    let mut native =
        NativeProcessor::<weir_example_byte_map::ByteMap>::new(&[], PartitionState::default());
    compare(
        "byte map, batch 256",
        seconds,
        &mut || run_counted(&mut wasm, &batch),
        &mut || run_counted(&mut native, &batch),
    );

    let batch = json_events(256);
    let config = [("min_amount_cents", "1000")];
    let mut wasm = wasm_instance(&engine, "json-filter", &config, PartitionState::default());
    let mut native = NativeProcessor::<weir_example_json_filter::JsonFilter>::new(
        &config,
        PartitionState::default(),
    );
    compare(
        "JSON filter, batch 256",
        seconds,
        &mut || run_counted(&mut wasm, &batch),
        &mut || run_counted(&mut native, &batch),
    );

    let dir = tempfile::tempdir().expect("temporary directory");
    let batches = word_batches();
    let mut wasm = wasm_instance(&engine, "word-count", &[], rocksdb_state(&dir, "wasm"));
    let mut native = NativeProcessor::<weir_example_word_count::WordCount>::new(
        &[],
        rocksdb_state(&dir, "native"),
    );
    let (mut next_wasm, mut next_native) = (0, 0);
    compare(
        "stateful count",
        seconds,
        &mut || {
            stateful_iteration(&mut wasm, &batches, &mut next_wasm);
            STATE_BATCH
        },
        &mut || {
            stateful_iteration(&mut native, &batches, &mut next_native);
            STATE_BATCH
        },
    );
}

/// Run one batch and count its input records.
fn run_counted(
    processor: &mut dyn Processor,
    batch: &[weir_runtime::engine::InputRecord],
) -> usize {
    run(processor, batch);
    batch.len()
}
