//! One conformance suite for every [`StateStore`], run through [`PartitionState`] so it
//! also covers the buffer: each check runs against the in-memory store and RocksDB.

use std::collections::BTreeMap;

use super::{Entry, MemoryStore, PartitionState, RocksStore, StateStore};

type Check = fn(&mut dyn FnMut() -> Box<dyn StateStore>);

macro_rules! suite {
    ($($check:ident),* $(,)?) => {
        mod memory {
            $(#[test] fn $check() { super::$check(&mut || Box::new(super::MemoryStore::new())); })*
        }
        mod rocksdb {
            $(#[test] fn $check() {
                let dir = tempfile::tempdir().unwrap();
                let mut n = 0;
                super::$check(&mut || {
                    n += 1;
                    Box::new(super::RocksStore::open(dir.path().join(n.to_string())).unwrap())
                });
            })*
        }
        #[allow(dead_code, reason = "keeps every check typed as a Check")]
        const CHECKS: &[Check] = &[$($check),*];
    };
}

suite!(
    reads_see_buffer_before_store,
    deletes_hide_committed_keys,
    rollback_restores_the_buffer,
    checkpoint_applies_writes_and_metadata_together,
    discard_keeps_committed_state,
    scan_respects_prefix_order_and_paging,
    scan_matches_a_model_under_random_operations,
);

fn entry(key: &str, value: &str) -> Entry {
    Entry {
        key: key.into(),
        value: value.into(),
    }
}

fn get(state: &mut PartitionState, key: &str) -> Option<String> {
    state
        .get(key.as_bytes())
        .unwrap()
        .map(|value| String::from_utf8(value).unwrap())
}

fn reads_see_buffer_before_store(make: &mut dyn FnMut() -> Box<dyn StateStore>) {
    let mut state = PartitionState::new(make());
    assert_eq!(get(&mut state, "k"), None);
    state.put("k".into(), "1".into());
    assert_eq!(get(&mut state, "k"), Some("1".into()));
    state.checkpoint(&[]).unwrap();
    assert!(state.pending().is_empty());
    assert_eq!(get(&mut state, "k"), Some("1".into()), "committed value");
    state.put("k".into(), "2".into());
    assert_eq!(
        get(&mut state, "k"),
        Some("2".into()),
        "buffer shadows the store"
    );
}

fn deletes_hide_committed_keys(make: &mut dyn FnMut() -> Box<dyn StateStore>) {
    let mut state = PartitionState::new(make());
    state.put("a".into(), "1".into());
    state.put("b".into(), "2".into());
    state.checkpoint(&[]).unwrap();
    state.delete("a".into());
    assert_eq!(get(&mut state, "a"), None);
    assert_eq!(state.scan(b"", None, 10).unwrap(), vec![entry("b", "2")]);
    state.checkpoint(&[]).unwrap();
    assert_eq!(get(&mut state, "a"), None, "the delete was committed");
    state.delete("never-written".into());
    state.checkpoint(&[]).unwrap();
}

fn rollback_restores_the_buffer(make: &mut dyn FnMut() -> Box<dyn StateStore>) {
    let mut state = PartitionState::new(make());
    state.put("committed".into(), "c".into());
    state.checkpoint(&[]).unwrap();
    state.put("buffered".into(), "b1".into());

    state.begin_batch();
    state.put("buffered".into(), "b2".into());
    state.put("buffered".into(), "b3".into());
    state.put("new".into(), "n".into());
    state.delete("committed".into());
    assert_eq!(get(&mut state, "buffered"), Some("b3".into()));
    state.rollback_batch();

    assert_eq!(get(&mut state, "buffered"), Some("b1".into()));
    assert_eq!(get(&mut state, "new"), None);
    assert_eq!(get(&mut state, "committed"), Some("c".into()));
    assert_eq!(state.pending().len(), 1);

    state.begin_batch();
    state.put("kept".into(), "k".into());
    state.commit_batch();
    state.rollback_batch(); // no open batch: nothing to undo
    assert_eq!(get(&mut state, "kept"), Some("k".into()));
}

fn checkpoint_applies_writes_and_metadata_together(make: &mut dyn FnMut() -> Box<dyn StateStore>) {
    let mut state = PartitionState::new(make());
    assert_eq!(state.metadata("offset").unwrap(), None);
    state.put("k".into(), "value".into());
    let stats = state.checkpoint(&[("offset", b"42")]).unwrap();
    assert_eq!(stats.keys, 1);
    assert_eq!(stats.bytes, "k".len() + "value".len());
    assert_eq!(state.metadata("offset").unwrap(), Some(b"42".to_vec()));
    assert_eq!(
        get(&mut state, "offset"),
        None,
        "metadata is not transform state"
    );
    assert_eq!(
        state.scan(b"", None, 10).unwrap(),
        vec![entry("k", "value")]
    );
    state.checkpoint(&[("offset", b"43")]).unwrap();
    assert_eq!(state.metadata("offset").unwrap(), Some(b"43".to_vec()));
}

fn discard_keeps_committed_state(make: &mut dyn FnMut() -> Box<dyn StateStore>) {
    let mut state = PartitionState::new(make());
    state.put("k".into(), "1".into());
    state.checkpoint(&[]).unwrap();
    state.put("k".into(), "2".into());
    state.begin_batch();
    state.put("j".into(), "3".into());
    state.discard_uncommitted();
    assert_eq!(get(&mut state, "k"), Some("1".into()));
    assert_eq!(get(&mut state, "j"), None);
}

fn scan_respects_prefix_order_and_paging(make: &mut dyn FnMut() -> Box<dyn StateStore>) {
    let mut state = PartitionState::new(make());
    for key in ["a", "ab", "abc", "abd", "ac", "b", "a\u{7f}"] {
        state.put(key.into(), key.to_uppercase().into());
    }
    state.checkpoint(&[]).unwrap();
    let keys = |entries: Vec<Entry>| -> Vec<String> {
        entries
            .into_iter()
            .map(|e| String::from_utf8(e.key).unwrap())
            .collect()
    };
    assert_eq!(
        keys(state.scan(b"ab", None, 10).unwrap()),
        ["ab", "abc", "abd"]
    );
    assert_eq!(keys(state.scan(b"ab", Some(b"abc"), 10).unwrap()), ["abd"]);
    assert_eq!(
        keys(state.scan(b"ab", Some(b"a"), 10).unwrap()),
        ["ab", "abc", "abd"]
    );
    assert_eq!(
        keys(state.scan(b"ab", Some(b"zz"), 10).unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(keys(state.scan(b"a", None, 2).unwrap()), ["a", "ab"]);
    assert_eq!(
        keys(state.scan(b"a", Some(b"ab"), 2).unwrap()),
        ["abc", "abd"]
    );
    assert_eq!(
        keys(state.scan(b"", None, 0).unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(state.scan(b"b", None, 5).unwrap(), vec![entry("b", "B")]);
}

/// Random puts, deletes, batches, rollbacks, checkpoints and discards, checked against a
/// BTreeMap after every step with scans of every page size and point reads.
fn scan_matches_a_model_under_random_operations(make: &mut dyn FnMut() -> Box<dyn StateStore>) {
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |bound: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % bound
    };
    // A tiny read cache, so eviction happens all the time.
    let mut state = PartitionState::with_cache_budget(make(), 512);
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut batch_start: Option<BTreeMap<Vec<u8>, Vec<u8>>> = None;
    let mut checkpointed = model.clone();

    for step in 0..2_000 {
        let key = format!("{}{}", ["p", "pa", "q"][next(3) as usize], next(12)).into_bytes();
        let touched = key.clone();
        match next(11) {
            0..=4 => {
                let value = format!("v{step}").into_bytes();
                state.put(key.clone(), value.clone());
                model.insert(key, value);
            }
            5 | 6 => {
                state.delete(key.clone());
                model.remove(&key);
            }
            7 if batch_start.is_none() => {
                state.begin_batch();
                batch_start = Some(model.clone());
            }
            7 | 8 => match batch_start.take() {
                Some(saved) if next(2) == 0 => {
                    state.rollback_batch();
                    model = saved;
                }
                Some(_) => state.commit_batch(),
                None => {}
            },
            9 => {
                if batch_start.take().is_some() {
                    state.commit_batch();
                }
                state.checkpoint(&[]).unwrap();
                checkpointed = model.clone();
            }
            _ => {
                batch_start = None;
                state.discard_uncommitted();
                model = checkpointed.clone();
            }
        }

        // Scans now and then: the buffer sorts the writes since its last scan together.
        let scans: &[&[u8]] = if next(4) == 0 {
            &[b"", b"p", b"pa", b"q"]
        } else {
            &[]
        };
        for &prefix in scans {
            let expected: Vec<Entry> = model
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| Entry {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect();
            for limit in [1, 3, 7, 1000] {
                let mut paged = Vec::new();
                loop {
                    let after = paged.last().map(|e: &Entry| e.key.clone());
                    let page = state.scan(prefix, after.as_deref(), limit).unwrap();
                    assert!(page.len() <= limit);
                    let done = page.len() < limit;
                    paged.extend(page);
                    if done {
                        break;
                    }
                }
                assert_eq!(
                    paged, expected,
                    "step {step} prefix {prefix:?} limit {limit}"
                );
            }
        }
        for (key, value) in &model {
            assert_eq!(state.get(key).unwrap().as_ref(), Some(value), "step {step}");
        }
        assert_eq!(
            state.get(&touched).unwrap(),
            model.get(&touched).cloned(),
            "step {step}: the key just touched"
        );
    }
}

#[test]
fn rocksdb_state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut state = PartitionState::new(Box::new(RocksStore::open(dir.path()).unwrap()));
        state.put("k".into(), "v".into());
        state.checkpoint(&[("offset", b"7")]).unwrap();
        state.put("uncommitted".into(), "x".into());
    }
    let mut state = PartitionState::new(Box::new(RocksStore::open(dir.path()).unwrap()));
    assert_eq!(get(&mut state, "k"), Some("v".into()));
    assert_eq!(
        get(&mut state, "uncommitted"),
        None,
        "only checkpoints are durable"
    );
    assert_eq!(state.metadata("offset").unwrap(), Some(b"7".to_vec()));
}

#[test]
fn rocksdb_open_error_names_the_path() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let err = RocksStore::open(file.path()).unwrap_err().to_string();
    assert!(err.contains(&file.path().display().to_string()), "{err}");
}
