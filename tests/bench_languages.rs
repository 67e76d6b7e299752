//! Word count in every guest language through `weir test`'s engine path: the same
//! `Engine` (instances on demand, compiled cache), `Instance` and `run_batch` over a
//! `PartitionState`, with state in memory so the number is the transform's, not
//! RocksDB's. Prints one row per language; `BENCHMARKS.md` has the results.
//!
//! Run: `cargo run --release -p weir-tests --example bench-languages [LANG...]`.
//!
//! Per language: component size; compile time (a load with an empty compiled cache);
//! load time from the cache; instantiate time (a fresh instance plus its `init`); and
//! records per second over the word-count fixture's lines, batch 256, in a loop.
//! Surprising: an interpreter component loading from the cache in more than a second
//! (it should be a file map), or Python/JS within 10x of Rust in records per second.

#[global_allocator]
static ALLOCATOR: weir_runtime::HostAllocator = weir_runtime::HostAllocator;

use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_runtime::engine::InputRecord;
use weir_runtime::engine::{Engine, EngineConfig, Instance, InstanceLabels, Limits, Module};
use weir_runtime::pipeline::{ErrorPolicy, run_batch};
use weir_runtime::state::{MemoryStore, PartitionState};
use weir_tests::languages::{Lang, lang_guest};
use weir_tests::{fixture, guest};

/// How long each throughput measurement runs.
const MEASURE: Duration = Duration::from_secs(5);
const BATCH: usize = 256;

fn engine(cache: &std::path::Path) -> Engine {
    Engine::new(EngineConfig {
        limits: Limits::default(),
        cache_dir: Some(cache.to_path_buf()),
    })
    .expect("engine")
}

fn instance(engine: &Engine, module: &Module) -> Instance {
    let labels = InstanceLabels {
        pipeline: "bench".into(),
        partition: 0,
        module: module.id().short().into(),
    };
    engine
        .instantiate(
            module,
            labels,
            Arc::from(Vec::new()),
            PartitionState::new(Box::new(MemoryStore::new())),
        )
        .expect("instantiates")
}

/// The fixture's lines, repeated into one batch of `BATCH` records.
fn batch() -> Vec<InputRecord> {
    let text = std::fs::read_to_string(fixture("word-count/input.jsonl")).unwrap();
    let values: Vec<String> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["value"].as_str().unwrap().to_owned()
        })
        .collect();
    (0..BATCH)
        .map(|i| InputRecord::from_value("text", 0, i as i64, values[i % values.len()].clone()))
        .collect()
}

fn measure(name: &str, path: &std::path::Path) {
    let size = std::fs::metadata(path).unwrap().len();
    let wasm = std::fs::read(path).unwrap();
    let cache = tempfile::tempdir().unwrap();

    let started = Instant::now();
    let compiled = engine(cache.path()).load(&wasm).expect("loads");
    let compile = started.elapsed();
    drop(compiled);

    // A new engine, as a restarted process would have: only the disk cache is shared.
    let engine = engine(cache.path());
    let started = Instant::now();
    let module = engine.load(&wasm).expect("loads from the cache");
    let load = started.elapsed();

    let started = Instant::now();
    let mut inst = instance(&engine, &module);
    let instantiate = started.elapsed();

    let batch = batch();
    run_batch(&mut inst, &batch, ErrorPolicy::Fail).expect("warm-up batch");
    let started = Instant::now();
    let mut records = 0usize;
    while started.elapsed() < MEASURE {
        run_batch(&mut inst, &batch, ErrorPolicy::Fail).expect("batch succeeds");
        records += batch.len();
    }
    let rate = records as f64 / started.elapsed().as_secs_f64();
    println!(
        "| {name} | {:.2} MB | {:.2} s | {:.0} ms | {:.1} ms | {:.0} |",
        size as f64 / 1e6,
        compile.as_secs_f64(),
        load.as_secs_f64() * 1e3,
        instantiate.as_secs_f64() * 1e3,
        rate
    );
}

fn main() {
    // Arguments filter by language name.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    println!(
        "| language | component | compile | load from cache | instantiate + init | records/s |"
    );
    println!("|---|---|---|---|---|---|");
    if wanted("rust") {
        measure("rust", &guest("word-count"));
    }
    for lang in Lang::ALL {
        if wanted(lang.name()) {
            measure(lang.name(), &lang_guest(lang, "word-count"));
        }
    }
}
