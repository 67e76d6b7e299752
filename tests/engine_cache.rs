//! The compiled-module cache: a module is compiled once, then loaded from disk.

use weir_runtime::engine::{Engine, EngineConfig, LoadSource};
use weir_tests::{guest, test_limits};

fn engine_with_cache(dir: &std::path::Path) -> Engine {
    Engine::new(EngineConfig {
        limits: test_limits(),
        cache_dir: Some(dir.to_path_buf()),
    })
    .unwrap()
}

#[test]
fn a_second_load_reads_the_compiled_artifact() {
    let cache = tempfile::tempdir().unwrap();
    let wasm = std::fs::read(guest("word-count")).unwrap();

    let first = engine_with_cache(cache.path()).load(&wasm).unwrap();
    assert_eq!(first.source(), LoadSource::Compiled);
    // A new engine, as after a restart: the artifact on disk is reused.
    let engine = engine_with_cache(cache.path());
    let second = engine.load(&wasm).unwrap();
    assert_eq!(second.source(), LoadSource::Cache);
    assert_eq!(first.id(), second.id());
    assert_eq!(engine.load(&wasm).unwrap().source(), LoadSource::Cache);
}

#[test]
fn a_damaged_artifact_is_recompiled() {
    let cache = tempfile::tempdir().unwrap();
    let wasm = std::fs::read(guest("json-filter")).unwrap();
    engine_with_cache(cache.path()).load(&wasm).unwrap();

    // Artifacts only: the cache also holds each module's (empty) compile lock file.
    let artifacts: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    std::fs::write(&artifacts[0], b"not machine code").unwrap();

    let engine = engine_with_cache(cache.path());
    assert_eq!(engine.load(&wasm).unwrap().source(), LoadSource::Compiled);
    assert_eq!(engine.load(&wasm).unwrap().source(), LoadSource::Cache);
}

#[test]
fn without_a_cache_every_load_compiles() {
    let engine = Engine::new(EngineConfig {
        limits: test_limits(),
        cache_dir: None,
    })
    .unwrap();
    let wasm = std::fs::read(guest("byte-map")).unwrap();
    assert_eq!(engine.load(&wasm).unwrap().source(), LoadSource::Compiled);
    assert_eq!(engine.load(&wasm).unwrap().source(), LoadSource::Compiled);
}
