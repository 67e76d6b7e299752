//! Setup shared by the transform benches (`transform`, `compare`): the engine, guest
//! instances, state stores and the records of each case.

use std::sync::Arc;

use weir_runtime::engine::InputRecord;
use weir_runtime::engine::{Engine, EngineConfig, Instance, InstanceLabels, Limits};
use weir_runtime::pipeline::{ErrorPolicy, Processor, run_batch};
use weir_runtime::state::{PartitionState, RocksStore};
use weir_tests::guest;

pub const DISTINCT_KEYS: usize = 100_000;
pub const STATE_BATCH: usize = 256;
/// Batches between checkpoints in the stateful case: 64 x 256 = 16384 records.
pub const CHECKPOINT_EVERY: usize = 64;

pub fn record(offset: usize, value: Vec<u8>) -> InputRecord {
    InputRecord {
        timestamp: 1_700_000_000_000,
        ..InputRecord::from_value("events", 0, offset as i64, value)
    }
}

pub fn engine() -> Engine {
    Engine::new(EngineConfig {
        limits: Limits::default(),
        cache_dir: None,
    })
    .expect("engine")
}

pub fn wasm_instance(
    engine: &Engine,
    example: &str,
    config: &[(&str, &str)],
    state: PartitionState,
) -> Instance {
    let module = engine.load_file(&guest(example)).expect("guest loads");
    let labels = InstanceLabels {
        pipeline: "bench".into(),
        partition: 0,
        module: module.id().short().into(),
    };
    let config: Arc<[(String, String)]> = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    engine
        .instantiate(&module, labels, config, state)
        .expect("instantiates")
}

pub fn rocksdb_state(dir: &tempfile::TempDir, name: &str) -> PartitionState {
    PartitionState::new(Box::new(
        RocksStore::open(dir.path().join(name)).expect("rocksdb opens"),
    ))
}

/// Run `batch` through `processor` once.
pub fn run(processor: &mut dyn Processor, batch: &[InputRecord]) -> usize {
    let outcome = run_batch(processor, batch, ErrorPolicy::Fail).expect("batch succeeds");
    outcome.outputs.len()
}

/// `size` records of 100 lowercase bytes, for the byte map.
pub fn byte_map_batch(size: usize) -> Vec<InputRecord> {
    (0..size)
        .map(|i| record(i, vec![b'a' + (i % 26) as u8; 100]))
        .collect()
}

pub fn json_events(n: usize) -> Vec<InputRecord> {
    (0..n)
        .map(|i| {
            let event = ["purchase", "view", "purchase", "signup"][i % 4];
            let json = format!(
                r#"{{"event":"{event}","user":{{"id":{},"name":"user-{}"}},"amount_cents":{},"country":"GB","session":"s-{i:08}"}}"#,
                i % 1000,
                i % 1000,
                (i * 37) % 5000
            );
            record(i, json.into_bytes())
        })
        .collect()
}

/// Batches of one-word records cycling through `DISTINCT_KEYS` words in a scattered order.
pub fn word_batches() -> Vec<Vec<InputRecord>> {
    let mut offset = 0;
    (0..DISTINCT_KEYS.div_ceil(STATE_BATCH))
        .map(|_| {
            (0..STATE_BATCH)
                .map(|_| {
                    let word = (offset * 7919) % DISTINCT_KEYS;
                    offset += 1;
                    record(offset, format!("w{word:06}").into_bytes())
                })
                .collect()
        })
        .collect()
}

/// Cycle through `batches`, checkpointing every `CHECKPOINT_EVERY` batches.
pub fn stateful_iteration(
    processor: &mut dyn Processor,
    batches: &[Vec<InputRecord>],
    next: &mut usize,
) -> usize {
    let batch = &batches[*next % batches.len()];
    *next += 1;
    let outputs = run(processor, batch);
    if next.is_multiple_of(CHECKPOINT_EVERY) {
        processor
            .state()
            .checkpoint(&[("offset", &next.to_le_bytes())])
            .expect("checkpoint");
    }
    outputs
}
