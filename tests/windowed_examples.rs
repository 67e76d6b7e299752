//! The windowed examples (tumbling count, sessions, sliding fraud rule) in Rust,
//! Python and JavaScript, and the tumbling count in C: their fixtures through `weir test` at any batch size, the
//! same outputs from every language on random out-of-order input at random batch
//! boundaries, swaps between them that keep the open windows, and `weir test`'s time
//! lines.

use std::sync::Arc;

use serde_json::Value;
use weir_runtime::engine::{
    Engine, EngineConfig, InputRecord, Instance, InstanceLabels, Limits, Module, OutputRecord,
};
use weir_runtime::pipeline::{ErrorPolicy, Processor as _, run_batch};
use weir_runtime::state::PartitionState;
use weir_tests::languages::{Lang, lang_guest};
use weir_tests::{Dice, fixture, guest, run_weir_test, shared_cache_dir, stderr, test_limits};

const EXE: &str = env!("CARGO_BIN_EXE_weir-under-test");

/// The languages besides Rust with an example called `name`: Python and JavaScript
/// have every kind of window, C tumbling and hopping ones.
fn langs(name: &str) -> Vec<Lang> {
    let mut langs = vec![Lang::Python, Lang::Js];
    if name == "tumbling-count" {
        langs.push(Lang::C);
    }
    langs
}

/// Each example with the out-of-orderness its fixture is run with.
const EXAMPLES: [(&str, u64); 3] = [
    ("tumbling-count", 0),
    ("sessions", 300_000),
    ("fraud-rule", 30_000),
];

#[test]
fn every_windowed_example_passes_its_fixture_in_every_language_at_any_batch_size() {
    for (name, out_of_orderness) in EXAMPLES {
        let input = fixture(&format!("{name}/input.jsonl"));
        let expected = fixture(&format!("{name}/expected.jsonl"));
        let allowance = out_of_orderness.to_string();
        let others = langs(name).into_iter().map(|lang| lang_guest(lang, name));
        for module in std::iter::once(guest(name)).chain(others) {
            for batch_size in ["1", "4", "256"] {
                let out = run_weir_test(
                    EXE,
                    &module,
                    &input,
                    &[
                        &"--expect",
                        &expected,
                        &"--batch-size",
                        &batch_size,
                        &"--max-out-of-orderness-ms",
                        &allowance,
                    ],
                );
                assert!(
                    out.status.success(),
                    "{} at batches of {batch_size}: {}",
                    module.display(),
                    stderr(&out)
                );
            }
        }
    }
}

fn engine(out_of_orderness: u64) -> Engine {
    Engine::new(EngineConfig {
        limits: Limits {
            max_out_of_orderness_ms: out_of_orderness,
            ..test_limits()
        },
        cache_dir: Some(shared_cache_dir()),
    })
    .unwrap()
}

fn start(engine: &Engine, module: &Module, config: &[(&str, &str)]) -> Instance {
    let labels = InstanceLabels {
        pipeline: "windows".into(),
        partition: 0,
        module: module.id().short().into(),
    };
    let config: Arc<[(String, String)]> = config
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    engine
        .instantiate(module, labels, config, PartitionState::default())
        .unwrap()
}

/// Keyed records `step` ms apart on average, some behind by up to `behind` (on time
/// or late), values a page view or not.
fn records(dice: &mut Dice, count: i64, step: i64, behind: i64) -> Vec<InputRecord> {
    let base = 1_700_000_000_000_i64;
    let mut clock = base;
    (0..count)
        .map(|offset| {
            clock += dice.below(2 * step as u64) as i64;
            let late = if dice.below(8) == 0 {
                dice.below(behind as u64) as i64
            } else {
                0
            };
            let value = if dice.below(2) == 0 {
                r#"{"page":"/"}"#
            } else {
                "{}"
            };
            let mut record = InputRecord::from_value("in", 0, offset, value);
            record.key = Some(format!("k{}", dice.below(4)).into_bytes());
            record.timestamp = clock - late;
            record
        })
        .collect()
}

/// An output as compared: topic, key, value as JSON (formatting aside), timestamp.
type Compared = (Option<String>, Option<Vec<u8>>, Value, Option<i64>);

fn compared(outputs: Vec<OutputRecord>) -> Vec<Compared> {
    outputs
        .into_iter()
        .map(|o| {
            let value = serde_json::from_slice(o.value.as_deref().unwrap_or_default())
                .unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&o.value.unwrap_or_default()).into())
                });
            (o.topic, o.key, value, o.timestamp)
        })
        .collect()
}

/// Run `input` through `instance` in batches of random sizes.
fn run(instance: &mut Instance, input: &[InputRecord], dice: &mut Dice) -> Vec<Compared> {
    let mut outputs = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let size = (1 + dice.below(40) as usize).min(rest.len());
        let (batch, after) = rest.split_at(size);
        outputs.extend(
            run_batch(instance, batch, ErrorPolicy::Fail)
                .unwrap()
                .outputs,
        );
        rest = after;
    }
    compared(outputs)
}

/// An example with its out-of-orderness, config and input.
type Case = (
    &'static str,
    u64,
    Vec<(&'static str, &'static str)>,
    Vec<InputRecord>,
);

/// Per example: a config and input that make windows close, merge and see late records.
fn cases(dice: &mut Dice) -> Vec<Case> {
    vec![
        (
            "tumbling-count",
            5_000,
            vec![
                ("window_ms", "10000"),
                ("grace_ms", "2000"),
                ("late", "side-output:late"),
            ],
            records(dice, 600, 400, 30_000),
        ),
        (
            "tumbling-count",
            0,
            vec![("window_ms", "5000"), ("emit", "update")],
            records(dice, 300, 300, 3_000),
        ),
        (
            "sessions",
            60_000,
            vec![
                ("gap_ms", "120000"),
                ("grace_ms", "10000"),
                ("late", "side-output:late"),
            ],
            records(dice, 600, 60_000, 400_000),
        ),
        (
            "fraud-rule",
            10_000,
            vec![
                ("window_ms", "60000"),
                ("max_events", "4"),
                ("late", "side-output:late"),
            ],
            records(dice, 600, 5_000, 120_000),
        ),
    ]
}

#[test]
fn every_languages_windows_match_rust_on_random_out_of_order_input() {
    let mut dice = Dice(0x7151_ab1e_0000_0003);
    for (name, out_of_orderness, config, input) in cases(&mut dice) {
        let engine = engine(out_of_orderness);
        let rust = engine.load_file(&guest(name)).unwrap();
        let want = run(&mut start(&engine, &rust, &config), &input, &mut dice);
        let late = want
            .iter()
            .filter(|o| o.0.as_deref() == Some("late"))
            .count();
        let sends_late = config.iter().any(|(k, _)| *k == "late");
        assert!(
            want.len() > 20 && (late > 0 || !sends_late),
            "{name}: {} outputs, {late} late",
            want.len()
        );
        for lang in langs(name) {
            let other = engine.load_file(&lang_guest(lang, name)).unwrap();
            let got = run(&mut start(&engine, &other, &config), &input, &mut dice);
            assert_eq!(got, want, "{} {name} {config:?}", lang.name());
        }
    }
}

#[test]
fn swaps_between_languages_keep_the_open_windows() {
    let mut dice = Dice(0x5a09_0000_0000_0007);
    for (name, out_of_orderness, config, input) in cases(&mut dice) {
        let engine = engine(out_of_orderness);
        let rust = engine.load_file(&guest(name)).unwrap();
        let python = engine.load_file(&lang_guest(Lang::Python, name)).unwrap();
        let js = engine.load_file(&lang_guest(Lang::Js, name)).unwrap();
        // C has the tumbling count only; Rust stands in for it elsewhere.
        let c = match name {
            "tumbling-count" => engine.load_file(&lang_guest(Lang::C, name)).unwrap(),
            _ => rust.clone(),
        };
        let whole = run(&mut start(&engine, &rust, &config), &input, &mut dice);
        // Rust, then Python, JavaScript, C and Rust again, each after a checkpoint.
        let mut instance = start(&engine, &rust, &config);
        let mut got = Vec::new();
        for (part, next) in input
            .chunks(input.len() / 5 + 1)
            .zip([&python, &js, &c, &rust, &rust])
        {
            got.extend(run(&mut instance, part, &mut dice));
            instance.state().checkpoint(&[]).unwrap();
            let labels = InstanceLabels {
                pipeline: "windows".into(),
                partition: 0,
                module: next.id().short().into(),
            };
            instance.switch_to(next, labels).unwrap();
        }
        assert_eq!(got, whole, "{name} {config:?}");
    }
}

#[test]
fn fixture_lines_move_the_watermark_and_processing_time() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    // A processing-time timer at 5 s and an event-time timer at 100: each fires when
    // its clock is moved past it, not before.
    std::fs::write(
        &input,
        "{\"value\":\"ptimer:5000:p\",\"timestamp\":1}\n\
         {\"value\":\"timer:100:e\",\"timestamp\":2}\n\
         {\"processing_time\":4999}\n\
         {\"watermark\":99}\n\
         {\"value\":\"noop\",\"timestamp\":3}\n\
         {\"processing_time\":5000}\n\
         {\"value\":\"clock-random\",\"timestamp\":4}\n\
         {\"watermark\":100}\n",
    )
    .unwrap();
    let out = run_weir_test(EXE, &guest("misbehave"), &input, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let values: Vec<String> = std::str::from_utf8(&out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let output: Value = serde_json::from_str(line).unwrap();
            format!(
                "{} {}",
                output["key"].as_str().unwrap(),
                output["value"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(values.len(), 6, "{values:?}");
    assert_eq!(
        values[..3],
        ["ptimer:5000:p set", "timer:100:e set", "noop 1"]
    );
    assert_eq!(values[3], "fired p@5000 wm=99");
    // The transform's wall clock is the fixture's processing time: 5 s.
    assert!(values[4].starts_with("clock-random 5 "), "{values:?}");
    assert_eq!(values[5], "fired e@100 wm=100");

    // Time only goes forward; a 0.2 module has no watermark to move.
    let refused = |module: &std::path::Path, lines: &str, reason: &str| {
        std::fs::write(&input, lines).unwrap();
        let out = run_weir_test(EXE, module, &input, &[]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(reason), "{}", stderr(&out));
    };
    let misbehave = guest("misbehave");
    refused(
        &misbehave,
        "{\"processing_time\":10}\n{\"processing_time\":9}\n",
        "input.jsonl:2 moves processing time back",
    );
    refused(
        &misbehave,
        "{\"value\":\"x\",\"timestamp\":50}\n{\"watermark\":40}\n",
        "input.jsonl:2 moves the watermark back",
    );
    refused(
        &lang_guest(Lang::C, "word-count"),
        "{\"watermark\":10}\n",
        "contract 0.3",
    );
}
