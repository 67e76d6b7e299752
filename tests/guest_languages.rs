//! Python, JavaScript and C guests on the same contract as the Rust ones: each word
//! count reproduces the shared fixtures through `weir test` (state carried across runs
//! included), a guest's exception reaches Weir's error output with its message, and
//! `weir new` makes, for every language, a project that builds and passes its own
//! sample fixture.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use weir_tests::languages::{Lang, lang_guest};
use weir_tests::{fixture, guest_target_dir, run_weir, run_weir_test, stderr};

const EXE: &str = env!("CARGO_BIN_EXE_weir-under-test");

fn weir(args: &[&dyn AsRef<OsStr>]) -> Output {
    run_weir(EXE, args)
}

fn weir_test(module: &Path, input: &Path, extra: &[&dyn AsRef<OsStr>]) -> Output {
    run_weir_test(EXE, module, input, extra)
}

/// The enrichment join's fixture (table rows set between orders) in every language,
/// Rust's included, at any batch size; as a left join, the orders of unknown customers
/// go on too; and a table the run does not declare fails the record, naming it.
#[test]
fn every_languages_enrichment_join_meets_the_rows_set_before_each_order() {
    use weir_tests::guest;
    let input = fixture("enrich/input.jsonl");
    let expected = fixture("enrich/expected.jsonl");
    let others = Lang::ALL.into_iter().map(|lang| lang_guest(lang, "enrich"));
    for module in std::iter::once(guest("enrich")).chain(others) {
        for batch_size in ["1", "256"] {
            let out = weir_test(
                &module,
                &input,
                &[&"--expect", &expected, &"--batch-size", &batch_size],
            );
            assert_eq!(
                out.status.code(),
                Some(0),
                "{} at batches of {batch_size}: {}",
                module.display(),
                stderr(&out)
            );
        }
        let left = weir_test(&module, &input, &[&"--config", &"join=left"]);
        let text = String::from_utf8_lossy(&left.stdout);
        assert_eq!(
            text.lines().count(),
            6,
            "{}: {text}{}",
            module.display(),
            stderr(&left)
        );
        assert!(text.contains(r#""customer":null"#), "{text}");

        let orders = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(orders.path(), r#"{"key":"c1","value":{"id":"o1"}}"#).unwrap();
        let undeclared = weir_test(&module, orders.path(), &[]);
        assert_ne!(undeclared.status.code(), Some(0), "{}", module.display());
        assert!(
            stderr(&undeclared).contains("does not declare"),
            "{}: {}",
            module.display(),
            stderr(&undeclared)
        );
    }
}

/// The word-count fixtures twice over one state directory: the second run continues
/// the counts of the first.
fn word_count_reproduces_the_fixtures(lang: Lang) {
    let module = lang_guest(lang, "word-count");
    let input = fixture("word-count/input.jsonl");
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("state");
    for expected in [
        "word-count/expected.jsonl",
        "word-count/expected-second-run.jsonl",
    ] {
        let out = weir_test(
            &module,
            &input,
            &[&"--expect", &fixture(expected), &"--state-dir", &state_dir],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{} against {expected}: {}",
            lang.name(),
            stderr(&out)
        );
    }
    // The counts came from the state directory: without it the second fixture fails.
    let fresh = weir_test(
        &module,
        &input,
        &[
            &"--expect",
            &fixture("word-count/expected-second-run.jsonl"),
        ],
    );
    assert_eq!(fresh.status.code(), Some(1), "{}", stderr(&fresh));
}

#[test]
fn python_word_count_reproduces_the_fixtures() {
    word_count_reproduces_the_fixtures(Lang::Python);
}

#[test]
fn js_word_count_reproduces_the_fixtures() {
    word_count_reproduces_the_fixtures(Lang::Js);
}

#[test]
fn c_word_count_reproduces_the_fixtures() {
    word_count_reproduces_the_fixtures(Lang::C);
}

/// A value that is not UTF-8 makes every word count fail that record with its own
/// message; the records before it still count, in the failed run nothing is kept.
fn bad_record_fails_with_the_guest_message(lang: Lang, message: &str) {
    let module = lang_guest(lang, "word-count");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"value\":\"a b\"}\n{\"value_base64\":\"//4=\"}\n{\"value\":\"a\"}\n",
    )
    .unwrap();

    let failed = weir_test(&module, &input, &[]);
    assert_eq!(failed.status.code(), Some(4), "{}", stderr(&failed));
    let err = stderr(&failed);
    assert!(err.contains("line 2 (offset 1) failed"), "{err}");
    assert!(
        err.contains(message),
        "{} should say {message:?}: {err}",
        lang.name()
    );

    let skipped = weir_test(&module, &input, &[&"--on-error", &"skip"]);
    assert_eq!(skipped.status.code(), Some(0), "{}", stderr(&skipped));
    assert_eq!(
        String::from_utf8(skipped.stdout).unwrap(),
        "{\"key\":\"a\",\"value\":\"1\"}\n{\"key\":\"b\",\"value\":\"1\"}\n{\"key\":\"a\",\"value\":\"2\"}\n"
    );
}

#[test]
fn a_python_exception_is_a_record_error_with_its_message() {
    bad_record_fails_with_the_guest_message(
        Lang::Python,
        "ValueError: the record's value is not UTF-8 text",
    );
}

#[test]
fn a_js_exception_is_a_record_error_with_its_message() {
    bad_record_fails_with_the_guest_message(
        Lang::Js,
        "TypeError: the record's value is not UTF-8 text",
    );
}

#[test]
fn the_c_word_count_rejects_a_bad_record_with_its_message() {
    bad_record_fails_with_the_guest_message(Lang::C, "the record's value is not UTF-8 text");
}

/// A configuration the transform refuses stops `weir test` before any record, with the
/// guest's reason.
#[test]
fn a_refused_config_reports_the_guest_reason() {
    for lang in [Lang::Python, Lang::Js, Lang::C] {
        let out = weir_test(
            &lang_guest(lang, "word-count"),
            &fixture("word-count/input.jsonl"),
            &[&"--config", &"lowercase=maybe"],
        );
        assert_eq!(
            out.status.code(),
            Some(3),
            "{}: {}",
            lang.name(),
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(r#"config "lowercase" must be "true" or "false""#),
            "{}: {}",
            lang.name(),
            stderr(&out)
        );
    }
}

/// `weir new --lang <lang>` in a fresh directory, built with the project's own
/// `build.sh`, passing its own fixture; a record without a value fails with the
/// template's message.
fn new_project_builds_and_passes(lang: &str) {
    let (dir, module) = new_project_built(lang, "basic");
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "{\"key\":\"k\",\"value\":\"\"}\n").unwrap();
    let out = weir_test(&module, &empty, &[]);
    assert_eq!(out.status.code(), Some(4), "{lang}: {}", stderr(&out));
    assert!(
        stderr(&out).contains("the record has no value"),
        "{lang}: {}",
        stderr(&out)
    );
}

/// A project from `weir new --lang <lang> --template <template>`, built, passing its
/// own fixture: its directory and module. Named after the template: Rust projects
/// share a target directory, where two crates of one name would overwrite each other.
fn new_project_built(lang: &str, template: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("my-{template}");
    let project = dir.path().join(&name);
    let created = weir(&[&"new", &"--lang", &lang, &"--template", &template, &project]);
    assert_eq!(created.status.code(), Some(0), "{}", stderr(&created));

    let mut build = Command::new(project.join("build.sh"));
    if lang == "rust" {
        // Shared between runs, so the SDK's dependencies compile once.
        build.env("CARGO_TARGET_DIR", guest_target_dir().join("new-rust"));
    }
    let status = build.status().expect("build.sh runs");
    assert!(status.success(), "{lang}: build.sh failed (see above)");

    let module = project.join(format!("{name}.wasm"));
    let input = project.join("fixtures/input.jsonl");
    let expected = project.join("fixtures/expected.jsonl");
    let out = weir_test(&module, &input, &[&"--expect", &expected]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{lang} {template}: {}",
        stderr(&out)
    );
    (dir, module)
}

#[test]
fn weir_new_rust_builds_and_passes_its_fixture() {
    new_project_builds_and_passes("rust");
}

#[test]
fn weir_new_rust_windowed_builds_and_passes_its_fixture() {
    let (_dir, module) = new_project_built("rust", "windowed");
    // The fixture closes its windows with a watermark line; without it they stay open.
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records.jsonl");
    std::fs::write(&records, "{\"key\":\"a\",\"timestamp\":5}\n").unwrap();
    let out = weir_test(&module, &records, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn weir_new_python_builds_and_passes_its_fixture() {
    new_project_builds_and_passes("python");
}

#[test]
fn weir_new_js_builds_and_passes_its_fixture() {
    new_project_builds_and_passes("js");
}

#[test]
fn weir_new_c_builds_and_passes_its_fixture() {
    new_project_builds_and_passes("c");
}

#[test]
fn weir_new_refuses_bad_names_and_occupied_directories() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("Bad Name");
    let out = weir(&[&"new", &"--lang", &"python", &bad]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot name a project"),
        "{}",
        stderr(&out)
    );

    let taken: PathBuf = dir.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("file"), "").unwrap();
    let out = weir(&[&"new", &"--lang", &"c", &taken]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));

    let out = weir(&[
        &"new",
        &"--lang",
        &"python",
        &"--template",
        &"windowed",
        &dir.path().join("w"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("Rust-only"), "{}", stderr(&out));
    let out = weir(&[&"new", &"--lang", &"cobol", &dir.path().join("x")]);
    assert_eq!(out.status.code(), Some(2));
}

/// The build scripts refuse a directory that is not a project of their language.
#[test]
fn build_scripts_explain_a_missing_entry_point() {
    let dir = tempfile::tempdir().unwrap();
    for lang in Lang::ALL {
        let out = Command::new(lang.build_script())
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", lang.name());
        let err = stderr(&out);
        assert!(err.contains("has no"), "{}: {err}", lang.name());
    }
}

/// An interpreter whose initial memory exceeds the memory limit is refused when it
/// starts, with what it needs and which setting to raise, not as an invalid component;
/// the default limit fits it. (A daemon starts each pipeline's module once before any
/// partition, so there too it is refused at start, not in a restart loop.)
#[test]
fn a_memory_limit_too_low_for_the_interpreter_says_what_it_needs() {
    let module = lang_guest(Lang::Python, "word-count");
    let input = fixture("word-count/input.jsonl");
    let out = weir_test(&module, &input, &[&"--memory-limit-mb", &"8"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("bytes of memory to start, over the memory limit of 8388608 bytes")
            && err.contains("--memory-limit-mb"),
        "{err}"
    );
    // The compiled artifact is sound and stays cached: the default limit loads it.
    let out = weir_test(&module, &input, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
