//! Modules that do not fit the contract are refused at load, with an error that
//! names the problem, and the engine goes on working.

use weir_runtime::engine::bindings::EARLIER_CONTRACT_VERSION;
use weir_runtime::engine::{Contract, EngineError, InputRecord};
use weir_runtime::pipeline::{ErrorPolicy, run_batch};
use weir_runtime::state::PartitionState;
use weir_tests::languages::{Lang, lang_guest};
use weir_tests::{engine, guest};

fn load_wat(text: &str) -> Result<weir_runtime::engine::Module, EngineError> {
    engine().load(&wat::parse_str(text).expect("test WAT parses"))
}

#[test]
fn an_import_weir_does_not_provide_is_named() {
    let err = load_wat(
        r#"(component
            (import "acme:db/query@1.0.0" (instance (export "run" (func (result u32)))))
            (import "wasi:cli/stdout@0.2.0" (instance))
        )"#,
    )
    .unwrap_err();
    assert!(
        matches!(&err, EngineError::UnsupportedImports { names, .. } if names == &["acme:db/query@1.0.0"]),
        "{err:?}"
    );
    assert!(err.to_string().contains("acme:db/query@1.0.0"), "{err}");
}

#[test]
fn another_contract_version_is_refused() {
    // 0.1.0 is the contract before batches went flat: its modules must be rebuilt.
    let err =
        load_wat(r#"(component (import "weir:transform/state@0.1.0" (instance)))"#).unwrap_err();
    assert!(
        matches!(err, EngineError::ContractVersion { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("weir:transform@0.1.0"), "{err}");
}

/// `wasm` with every `weir:transform/<interface>@<from>` import name renamed to `@<to>`
/// (the versions have the same length, so the binary stays valid).
fn with_contract_version(wasm: &[u8], from: &str, to: &str) -> Vec<u8> {
    const PREFIX: &[u8] = b"weir:transform/";
    let (from, to) = (format!("@{from}"), format!("@{to}"));
    assert_eq!(from.len(), to.len());
    let mut out = wasm.to_vec();
    let mut renamed = 0;
    let mut at = 0;
    while let Some(found) = out[at..].windows(PREFIX.len()).position(|w| w == PREFIX) {
        let name = at + found + PREFIX.len();
        let interface = out[name..]
            .iter()
            .take_while(|b| b.is_ascii_lowercase() || **b == b'-');
        let version = name + interface.count();
        if out[version..].starts_with(from.as_bytes()) {
            out[version..version + to.len()].copy_from_slice(to.as_bytes());
            renamed += 1;
        }
        at = version;
    }
    assert!(renamed > 0, "no import of the contract at {from}");
    out
}

/// Run `wasm` over one record "weir weir" and return its output values.
fn word_counts(wasm: &[u8]) -> Vec<Vec<u8>> {
    let module = engine().load(wasm).expect("the component loads");
    let labels = weir_runtime::engine::InstanceLabels {
        pipeline: "older".into(),
        partition: 0,
        module: module.id().short().into(),
    };
    let mut instance = engine()
        .instantiate(
            &module,
            labels,
            std::sync::Arc::from([]),
            PartitionState::default(),
        )
        .expect("instantiates");
    let input = [InputRecord::from_value("in", 0, 0, "weir weir")];
    let outcome = run_batch(&mut instance, &input, ErrorPolicy::Fail).expect("runs");
    outcome
        .outputs
        .iter()
        .map(|o| o.value.clone().unwrap())
        .collect()
}

#[test]
fn components_of_contract_0_2_and_its_earlier_patches_run() {
    // The C example is built against contract 0.2.2 (no watermarks, no timers): it
    // runs unchanged. Patches only add imports (0.2.1 `get-small`, 0.2.2 `write-all`),
    // so what a 0.2.0 component imports is all there too; a newer patch is refused.
    let c = std::fs::read(lang_guest(Lang::C, "word-count")).unwrap();
    let module = engine().load(&c).unwrap();
    assert_eq!(module.contract(), Contract::V0_2);
    assert_eq!(word_counts(&c), [b"1".to_vec(), b"2".to_vec()]);
    let older = with_contract_version(&c, EARLIER_CONTRACT_VERSION, "0.2.0");
    assert_eq!(word_counts(&older), [b"1".to_vec(), b"2".to_vec()]);

    let newer = with_contract_version(&c, EARLIER_CONTRACT_VERSION, "0.2.9");
    let err = engine().load(&newer).unwrap_err();
    assert!(
        matches!(err, EngineError::ContractVersion { .. }),
        "{err:?}"
    );

    let rust = std::fs::read(guest("word-count")).unwrap();
    assert_eq!(engine().load(&rust).unwrap().contract(), Contract::V0_3);
    assert_eq!(word_counts(&rust), [b"1".to_vec(), b"2".to_vec()]);
}

#[test]
fn a_component_without_the_exports_is_not_a_transform() {
    let err = load_wat("(component)").unwrap_err();
    assert!(matches!(err, EngineError::NotATransform { .. }), "{err:?}");
}

#[test]
fn a_core_module_is_told_how_to_become_a_component() {
    let err = load_wat("(module)").unwrap_err();
    assert!(matches!(err, EngineError::CoreModule { .. }), "{err:?}");
    assert!(err.to_string().contains("wasm32-wasip2"), "{err}");
}

#[test]
fn a_file_that_is_not_wasm_is_refused() {
    let err = engine().load(b"#!/bin/sh\necho hi\n").unwrap_err();
    assert!(matches!(err, EngineError::NotWasm { .. }), "{err:?}");
    let err = engine().load(b"\0asm\x0d\0\x01\0garbage").unwrap_err();
    assert!(
        matches!(err, EngineError::InvalidComponent { .. }),
        "{err:?}"
    );
}

#[test]
fn the_engine_keeps_working_after_refusals() {
    let _ = engine().load(b"nope");
    let _ = load_wat("(component)");
    engine()
        .load_file(&guest("word-count"))
        .expect("a good module still loads");
}
