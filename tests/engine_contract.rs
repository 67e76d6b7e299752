//! Modules that do not fit the contract are refused at load, with an error that
//! names the problem, and the engine goes on working.

use weir_runtime::engine::EngineError;
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
