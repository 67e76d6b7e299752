//! Event time through the engine (contract 0.3): watermarks, timers fired between the
//! records around them, and a windowed count that matches a plain reference on
//! shuffled input, whatever the batch boundaries.

use std::sync::Arc;

use weir_runtime::engine::{Engine, EngineConfig, InputRecord, InstanceLabels, Limits};
use weir_runtime::pipeline::{ErrorPolicy, run_batch};
use weir_runtime::state::PartitionState;
use weir_tests::windows::{GRACE_MS, WINDOW_MS, closed_window, reference};
use weir_tests::{Dice, fixture, guest, run_weir_test, shared_cache_dir, stderr, test_limits};

const EXE: &str = env!("CARGO_BIN_EXE_weir-under-test");

#[test]
fn the_tumbling_count_fixtures_pass_at_any_batch_size() {
    let module = guest("tumbling-count");
    let input = fixture("tumbling-count/input.jsonl");
    let expected = fixture("tumbling-count/expected.jsonl");
    for batch_size in ["1", "3", "256"] {
        let out = run_weir_test(
            EXE,
            &module,
            &input,
            &[&"--expect", &expected, &"--batch-size", &batch_size],
        );
        assert!(
            out.status.success(),
            "batches of {batch_size}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn shuffled_input_is_windowed_as_the_reference_does_at_random_batch_boundaries() {
    const OUT_OF_ORDERNESS: i64 = 5_000;
    let engine = Engine::new(EngineConfig {
        limits: Limits {
            max_out_of_orderness_ms: OUT_OF_ORDERNESS as u64,
            ..test_limits()
        },
        cache_dir: Some(shared_cache_dir()),
    })
    .unwrap();
    let module = engine.load_file(&guest("tumbling-count")).unwrap();
    let mut dice = Dice(0x5eed_1234_abcd_0001);
    for round in 0..4 {
        // Mostly in order, a second apart; some a little behind (within or past the
        // allowance and the grace), a few far behind (late).
        let base = 1_700_000_000_000_i64;
        let records: Vec<(String, i64)> = (0..3_000)
            .map(|i| {
                let key = format!("k{}", dice.below(7));
                let on_time = base + i * 1_000;
                let behind = match dice.below(20) {
                    0 => 300_000 + dice.below(120_000) as i64,
                    1..=4 => dice.below(20_000) as i64,
                    _ => 0,
                };
                (key, on_time - behind)
            })
            .collect();
        let expected = reference(&records, WINDOW_MS, GRACE_MS, OUT_OF_ORDERNESS);
        assert!(
            expected.len() > 100,
            "round {round}: {} windows",
            expected.len()
        );

        let labels = InstanceLabels {
            pipeline: "windows".into(),
            partition: 0,
            module: module.id().short().into(),
        };
        let mut instance = engine
            .instantiate(&module, labels, Arc::from([]), PartitionState::default())
            .unwrap();
        let input: Vec<InputRecord> = records
            .iter()
            .enumerate()
            .map(|(offset, (key, timestamp))| {
                let mut record = InputRecord::from_value("clicks", 0, offset as i64, "click");
                record.key = Some(key.clone().into_bytes());
                record.timestamp = *timestamp;
                record
            })
            .collect();
        let mut got = Vec::new();
        let mut rest = &input[..];
        while !rest.is_empty() {
            let size = (1 + dice.below(64) as usize).min(rest.len());
            let (batch, after) = rest.split_at(size);
            let outcome = run_batch(&mut instance, batch, ErrorPolicy::Fail).unwrap();
            for output in outcome.outputs {
                got.push(closed_window(
                    output.key.as_deref().unwrap(),
                    output.value.as_deref().unwrap(),
                ));
            }
            rest = after;
        }
        assert_eq!(got.len(), expected.len(), "round {round}");
        assert_eq!(got, expected, "round {round}");
    }
}

/// An instance of the misbehave guest (whose timers act by their keys).
fn misbehave(max_out_of_orderness_ms: u64) -> weir_runtime::engine::Instance {
    let engine = Engine::new(EngineConfig {
        limits: Limits {
            max_out_of_orderness_ms,
            call_timeout_ms: 1_000,
            ..test_limits()
        },
        cache_dir: Some(shared_cache_dir()),
    })
    .unwrap();
    let module = engine.load_file(&guest("misbehave")).unwrap();
    let labels = InstanceLabels {
        pipeline: "timers".into(),
        partition: 0,
        module: module.id().short().into(),
    };
    engine
        .instantiate(&module, labels, Arc::from([]), PartitionState::default())
        .unwrap()
}

/// Records of `(value, timestamp)`, at offsets from `first`.
fn timed(first: i64, records: &[(&str, i64)]) -> Vec<InputRecord> {
    records
        .iter()
        .zip(first..)
        .map(|((value, timestamp), offset)| {
            let mut record = InputRecord::from_value("in", 0, offset, *value);
            record.timestamp = *timestamp;
            record
        })
        .collect()
}

fn values(outputs: &[weir_runtime::engine::OutputRecord]) -> Vec<String> {
    outputs
        .iter()
        .map(|o| String::from_utf8_lossy(o.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

#[test]
fn timers_fire_between_the_records_around_their_time_in_one_batch() {
    let mut instance = misbehave(0);
    let input = timed(
        0,
        &[
            ("timer:150:b", 100),
            ("timer:120:a", 100),
            ("timer:150:a", 101),
            ("x", 130), // meets 101: nothing due
            ("y", 160), // meets 130: a@120 fires before it
            ("z", 170), // meets 160: a@150 and b@150, in key order
        ],
    );
    let outcome = run_batch(&mut instance, &input, ErrorPolicy::Fail).unwrap();
    assert_eq!(
        values(&outcome.outputs),
        [
            "set",
            "set",
            "set",
            "1",
            "a@120 wm=130",
            "2",
            "a@150 wm=160",
            "b@150 wm=160",
            "3"
        ]
    );
    // Each fired once: a later batch past their time fires nothing again.
    let later = run_batch(&mut instance, &timed(6, &[("w", 500)]), ErrorPolicy::Fail).unwrap();
    assert_eq!(values(&later.outputs), ["4"]);
}

#[test]
fn a_failing_timer_gets_the_error_policy_and_the_others_still_fire() {
    for (failing, kind) in [
        ("reject", "rejected"),
        ("panic", "trap"),
        ("loop", "timeout"),
    ] {
        let mut instance = misbehave(0);
        let set = format!("timer:200:{failing}");
        let input = timed(
            0,
            &[
                ("timer:200:a", 100),
                (set.as_str(), 100),
                ("timer:200:z", 100),
                ("x", 300), // meets 100: nothing due yet
            ],
        );
        let outcome = run_batch(&mut instance, &input, ErrorPolicy::DeadLetter).unwrap();
        // Due at the batch's end (watermark 300): the group holding the failing timer
        // fails, and is fired again one timer at a time.
        let fired: Vec<_> = values(&outcome.outputs)
            .into_iter()
            .filter(|v| v.contains('@'))
            .collect();
        assert_eq!(fired, ["a@200 wm=300", "z@200 wm=300"], "{failing}");
        assert_eq!(outcome.timer_failures.len(), 1, "{failing}");
        let failure = &outcome.timer_failures[0];
        assert_eq!(failure.timer.key, failing.as_bytes(), "{failing}");
        assert_eq!(failure.reason.kind(), kind, "{failing}");
        assert!(
            outcome.failures.is_empty(),
            "{failing}: no record is blamed"
        );
        // Deleted: it does not fire (and fail) again.
        let later = run_batch(&mut instance, &timed(4, &[("y", 400)]), ErrorPolicy::Fail).unwrap();
        assert_eq!(values(&later.outputs), ["2"], "{failing}");
    }
}

#[test]
fn a_timer_set_before_a_failed_record_fires_before_the_records_after_it() {
    // The timer is due once the first record has passed; the second record fails (a
    // rejection, or a trap that makes the host look for it record by record). Either
    // way the timer fires before the second record, whatever the batch boundaries.
    for failing in ["reject", "panic"] {
        let input = timed(
            0,
            &[("timer:150:t", 200), (failing, 201), ("x", 202), ("y", 203)],
        );
        for cut in [1, 2, 4] {
            let mut instance = misbehave(0);
            let mut got = Vec::new();
            let mut failed = 0;
            for batch in input.chunks(cut) {
                let outcome = run_batch(&mut instance, batch, ErrorPolicy::Skip).unwrap();
                got.extend(values(&outcome.outputs));
                failed += outcome.failures.len();
            }
            assert_eq!(
                got,
                ["set", "t@150 wm=200", "1", "2"],
                "{failing}, batches of {cut}"
            );
            assert_eq!(failed, 1, "{failing}, batches of {cut}");
        }
    }
}

#[test]
fn a_failing_timer_under_fail_stops_the_batch() {
    let mut instance = misbehave(0);
    let input = timed(0, &[("timer:150:reject", 100), ("x", 200), ("y", 201)]);
    let error = run_batch(&mut instance, &input, ErrorPolicy::Fail).unwrap_err();
    assert!(
        matches!(
            error,
            weir_runtime::pipeline::BatchError::TimerFailed { .. }
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("event-time timer at 150"),
        "{error}"
    );
}

#[test]
fn the_hosts_keys_stay_hidden_from_the_guest() {
    let mut instance = misbehave(0);
    let input = timed(
        0,
        &[("timer:900:k", 100), ("set:a=1", 100), ("scan-all", 101)],
    );
    let outcome = run_batch(&mut instance, &input, ErrorPolicy::Fail).unwrap();
    // The clock and the timer are in state, but a scan sees the guest's one key.
    assert_eq!(values(&outcome.outputs).last().unwrap(), "1 0");
    let outcome = run_batch(
        &mut instance,
        &timed(3, &[("put-reserved", 102)]),
        ErrorPolicy::Skip,
    )
    .unwrap();
    assert_eq!(outcome.failures.len(), 1);
    assert_eq!(outcome.failures[0].reason.kind(), "reserved_key");
}

#[test]
fn timers_and_the_watermark_survive_a_restart_from_the_state_store() {
    // weir test with a state directory: the first run sets timers and leaves the
    // watermark at 100; the second fires them once a record moves the watermark past.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let module = guest("misbehave");
    let run = |lines: &str, name: &str| {
        let input = dir.path().join(name);
        std::fs::write(&input, lines).unwrap();
        let out = run_weir_test(EXE, &module, &input, &[&"--state-dir", &state]);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run(
        concat!(
            r#"{"value": "timer:150:a", "timestamp": 100}"#,
            "\n",
            r#"{"value": "timer:250:b", "timestamp": 100}"#,
            "\n"
        ),
        "first.jsonl",
    );
    assert!(!first.contains("fired"), "{first}");
    // Meets the restored watermark of 100, then moves it to 200: a@150 fires after it.
    let second = run(r#"{"value": "x", "timestamp": 200}"#, "second.jsonl");
    let fired: Vec<_> = second.lines().filter(|l| l.contains("fired")).collect();
    assert_eq!(fired.len(), 1, "{second}");
    assert!(fired[0].contains("a@150 wm=200"), "{second}");
    let third = run(r#"{"value": "x", "timestamp": 300}"#, "third.jsonl");
    assert!(third.contains("b@250 wm=300"), "{third}");
    assert!(!third.contains("a@150"), "{third}");
}
