//! `weir test`, run as a user runs it: the real binary, the example components and
//! their shared fixtures.

use std::path::Path;
use std::process::Output;

use weir_tests::{fixture, guest, run_weir_test, stderr};

const EXE: &str = env!("CARGO_BIN_EXE_weir-under-test");

fn test_cmd(module: &Path, input: &Path, extra: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    run_weir_test(EXE, module, input, extra)
}

#[test]
fn word_count_reproduces_its_fixtures_and_keeps_state_across_runs() {
    let module = guest("word-count");
    let input = fixture("word-count/input.jsonl");
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("state");

    let first = test_cmd(
        &module,
        &input,
        &[
            &"--expect",
            &fixture("word-count/expected.jsonl"),
            &"--state-dir",
            &state_dir,
        ],
    );
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let printed = String::from_utf8(first.stdout).unwrap();
    assert_eq!(printed.lines().next(), Some(r#"{"key":"the","value":"1"}"#));

    let second = test_cmd(
        &module,
        &input,
        &[
            &"--expect",
            &fixture("word-count/expected-second-run.jsonl"),
            &"--state-dir",
            &state_dir,
        ],
    );
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));

    // Without the state directory the counts start again, so the second fixture differs.
    let fresh = test_cmd(
        &module,
        &input,
        &[
            &"--expect",
            &fixture("word-count/expected-second-run.jsonl"),
        ],
    );
    assert_eq!(fresh.status.code(), Some(1));
    assert!(
        stderr(&fresh).contains(r#"-{"key":"the","value":"8"}"#),
        "{}",
        stderr(&fresh)
    );
    assert!(
        stderr(&fresh).contains(r#"+{"key":"the","value":"1"}"#),
        "{}",
        stderr(&fresh)
    );
}

#[test]
fn json_filter_reproduces_its_fixtures_with_config() {
    let module = guest("json-filter");
    let input = fixture("json-filter/input.jsonl");
    let out = test_cmd(
        &module,
        &input,
        &[&"--expect", &fixture("json-filter/expected.jsonl")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = test_cmd(
        &module,
        &input,
        &[
            &"--expect",
            &fixture("json-filter/expected-min-1000.jsonl"),
            &"--config",
            &"min_amount_cents=1000",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_failed_run_writes_no_state() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"value\":\"a\"}\n{\"value\":\"panic\"}\n").unwrap();
    let state_dir = dir.path().join("state");
    let module = guest("misbehave");

    let failed = test_cmd(&module, &input, &[&"--state-dir", &state_dir]);
    assert_eq!(failed.status.code(), Some(4));
    let err = stderr(&failed);
    assert!(err.contains("line 2 (offset 1) failed"), "{err}");
    assert!(err.contains("the record asked for a panic"), "{err}");

    std::fs::write(&input, "{\"value\":\"a\"}\n").unwrap();
    let ok = test_cmd(&module, &input, &[&"--state-dir", &state_dir]);
    assert_eq!(
        String::from_utf8(ok.stdout).unwrap().trim(),
        r#"{"key":"a","value":"1"}"#,
        "the failed run counted nothing"
    );
}

#[test]
fn skipped_and_dead_lettered_records_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"value\":\"a\"}\n{\"value\":\"reject\"}\n{\"value\":\"b\"}\n",
    )
    .unwrap();
    let out = test_cmd(
        &guest("misbehave"),
        &input,
        &[&"--on-error", &"dead-letter"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("line 2 (offset 1) dead-lettered: rejected by the transform"),
        "{}",
        stderr(&out)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 2);
}

#[test]
fn guest_output_lands_in_the_logs_with_its_labels() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"value\":\"log\"}\n").unwrap();
    let out = test_cmd(&guest("misbehave"), &input, &[]);
    let err = stderr(&out);
    for line in [
        "hello from stdout",
        "hello from stderr",
        "hello from the log import",
    ] {
        let logged = err
            .lines()
            .find(|l| l.contains(line))
            .unwrap_or_else(|| panic!("{line} missing from:\n{err}"));
        assert!(
            logged.contains("pipeline=test") && logged.contains("partition=0"),
            "{logged}"
        );
    }
}

#[test]
fn bad_inputs_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let module = guest("word-count");

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"value\":\"fine\"}\n{\"value\": oops}\n\n{\"vaule\":\"typo\"}\n",
    )
    .unwrap();
    let out = test_cmd(&module, &bad, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("bad.jsonl:line 2: not a record"), "{err}");
    assert!(
        err.contains("bad.jsonl:line 4: not a record: unknown field `vaule`"),
        "{err}"
    );

    let out = test_cmd(&module, &dir.path().join("missing.jsonl"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read the input file"),
        "{}",
        stderr(&out)
    );

    let good = fixture("word-count/input.jsonl");
    let out = test_cmd(&dir.path().join("missing.wasm"), &good, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read module"),
        "{}",
        stderr(&out)
    );

    let not_wasm = dir.path().join("notes.wasm");
    std::fs::write(&not_wasm, "plain text").unwrap();
    let out = test_cmd(&not_wasm, &good, &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("is not a WebAssembly file"),
        "{}",
        stderr(&out)
    );

    let out = test_cmd(&module, &good, &[&"--config", &"no-equals-sign"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("expected KEY=VALUE"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unsupported_import_is_refused_by_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("foreign.wasm");
    std::fs::write(
        &module,
        wat::parse_str(r#"(component (import "acme:db/query@1.0.0" (instance)))"#).unwrap(),
    )
    .unwrap();
    let out = test_cmd(&module, &fixture("word-count/input.jsonl"), &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("imports acme:db/query@1.0.0, which Weir does not provide"),
        "{}",
        stderr(&out)
    );
}
