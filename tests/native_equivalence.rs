//! The same transform, compiled natively and to Wasm, gives the same outputs and the
//! same state through the host path: what the benchmarks compare is like for like.

use std::sync::Arc;

use weir_runtime::engine::InstanceLabels;
use weir_runtime::jsonl;
use weir_runtime::pipeline::{ErrorPolicy, Processor, run_batch};
use weir_runtime::state::PartitionState;
use weir_tests::native::NativeProcessor;
use weir_tests::{engine, fixture, guest};

#[test]
fn word_count_native_and_wasm_agree() {
    let input = std::fs::read_to_string(fixture("word-count/input.jsonl")).unwrap();
    let records: Vec<_> = jsonl::parse_inputs(&input, "in")
        .unwrap()
        .into_iter()
        .map(|(_, r)| r)
        .collect();

    let mut native =
        NativeProcessor::<weir_example_word_count::WordCount>::new(&[], PartitionState::default());
    let module = engine().load_file(&guest("word-count")).unwrap();
    let labels = InstanceLabels {
        pipeline: "eq".into(),
        partition: 0,
        module: module.id().short().into(),
    };
    let mut wasm = engine()
        .instantiate(&module, labels, Arc::from([]), PartitionState::default())
        .unwrap();

    let native_out = run_batch(&mut native, &records, ErrorPolicy::Fail)
        .unwrap()
        .outputs;
    let wasm_out = run_batch(&mut wasm, &records, ErrorPolicy::Fail)
        .unwrap()
        .outputs;
    assert_eq!(native_out, wasm_out);
    assert_eq!(native_out.len(), 25);

    let scan = |p: &mut dyn Processor| p.state().scan(b"count/", None, 1000).unwrap();
    assert_eq!(scan(&mut native), scan(&mut wasm));
}
