//! End-to-end tests against Apache Kafka: `weir serve` as a child process, word count
//! over many partitions, restarts, crashes at each step of the checkpoint cycle, two
//! instances in one group, and dead letters.
//!
//! Exactly-once is checked two ways (weir_tests::wordcount::assert_outputs_exact): from
//! the raw log, where weir_tests::kafka_raw applies commit and abort markers itself, and
//! through a plain `read_committed` consumer; both must agree with what the input implies.

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::Producer;
use weir_runtime::state::{RocksStore, StateStore};
use weir_tests::daemon::{Daemon, PipelineSpec, write_config};
use weir_tests::wordcount::{
    Input, Setup, WAIT, assert_outputs_exact, assert_state_exact, wait_for_outputs,
};
use weir_tests::{guest, kafka_raw};

const EXE: &str = env!("CARGO_BIN_EXE_weir-under-test");

#[test]
fn word_count_over_many_partitions_is_exact() {
    let setup = Setup::new(EXE, 8, &["counts"]);
    let daemon = setup.start("a", None);
    daemon.wait_for("partition running", 8, WAIT);

    let mut input = setup.input();
    input.produce(8, 150);
    setup.wait_for_counts(&input, &daemon);
    assert!(daemon.terminate().success());

    setup.assert_exact(&input, "a");
}

#[test]
fn at_least_once_word_count_is_exact_without_crashes() {
    let setup = Setup::new(EXE, 4, &["counts"]);
    let daemon = setup.start_with("a", "guarantee = \"at-least-once\"", None);
    daemon.wait_for("partition running", 4, WAIT);

    let mut input = setup.input();
    input.produce(4, 100);
    setup.wait_for_counts(&input, &daemon);
    assert!(daemon.terminate().success());

    setup.assert_exact(&input, "a");
}

#[test]
fn a_restart_mid_stream_loses_nothing_and_replays_no_state() {
    let setup = Setup::new(EXE, 4, &["counts"]);
    let mut input = setup.input();

    let daemon = setup.start("a", None);
    daemon.wait_for("partition running", 4, WAIT);
    input.produce(4, 100);
    setup.wait_for_counts(&input, &daemon);
    assert!(daemon.terminate().success());

    // Inputs produced while Weir is down are processed after the restart.
    input.produce(4, 100);
    let daemon = setup.start("a", None);
    daemon.wait_for("partition running", 8, WAIT);
    let replayed = restored_records(&daemon);
    assert_eq!(replayed, 0, "local state was current: nothing to replay");
    input.produce(4, 50);
    setup.wait_for_counts(&input, &daemon);
    assert!(daemon.terminate().success());

    setup.assert_exact(&input, "a");
}

#[test]
fn a_changelog_with_headers_on_every_record_restores_in_the_marker_format() {
    // The rolling-upgrade format (what Weir wrote before 2026-12-02) is read back by
    // an instance with no local state of its own, which restores all of it.
    let setup = Setup::new(EXE, 4, &["counts"]);
    let mut input = setup.input();
    let old = setup.start_with("a", "changelog_format = \"every-record\"", None);
    old.wait_for("partition running", 4, WAIT);
    input.produce(4, 100);
    setup.wait_for_counts(&input, &old);
    assert!(old.terminate().success());
    let logs = kafka_raw::read_topic(&setup.broker.bootstrap, &setup.changelog()).unwrap();
    let records: Vec<_> = logs.iter().flat_map(|log| &log.committed).collect();
    assert!(records.iter().any(|r| r.key.as_deref() != Some(b"")));
    for record in records {
        assert!(
            record.headers.iter().any(|(k, _)| k == "weir.checkpoint"),
            "{record:?} carries no checkpoint header"
        );
    }

    let new = setup.start("b", None);
    new.wait_for("partition running", 4, WAIT);
    let restored = restored_records(&new);
    assert!(
        restored > 0,
        "b had no local state: it restores from the changelog"
    );
    input.produce(4, 50);
    setup.wait_for_counts(&input, &new);
    assert!(new.terminate().success());

    setup.assert_exact(&input, "b");
}

/// Changelog records `daemon` applied restoring its partitions, from its log.
fn restored_records(daemon: &Daemon) -> u64 {
    daemon
        .events("restored state from the changelog")
        .iter()
        .filter_map(|e| e["fields"]["applied"].as_u64())
        .sum()
}

/// Records of aborted transactions in `topic`: evidence that a crash really left an
/// uncommitted transaction behind for the verifier to reject.
fn aborted_records(bootstrap: &str, topic: &str) -> usize {
    kafka_raw::read_topic(bootstrap, topic)
        .expect("read the topic")
        .iter()
        .map(|log| log.aborted)
        .sum()
}

/// Crash (SIGKILL from inside, at an exact step) while records flow, restart, finish:
/// every input counted exactly once, in the outputs and in the state. Returns the
/// broker (still running) for further checks.
///
/// Two processing threads (tests' daemons have two) share the four partitions, so the
/// first records make two checkpoints: a failpoint armed for the second fires after one thread committed.
fn crash_and_recover(failpoints: &str, second_failpoints: Option<&str>) -> Setup {
    let setup = Setup::new(EXE, 4, &["counts"]);
    let mut input = setup.input();
    input.produce(4, 60);

    let mut daemon = setup.start("a", Some(failpoints));
    daemon.assert_killed_at(failpoints);

    input.produce(4, 60);
    if let Some(points) = second_failpoints {
        let mut daemon = setup.start("a", Some(points));
        daemon.assert_killed_at(points);
    }
    let daemon = setup.start("a", None);
    input.produce(4, 30);
    setup.wait_for_counts(&input, &daemon);
    assert!(daemon.terminate().success());

    setup.assert_exact(&input, "a");
    setup
}

#[test]
fn a_crash_before_the_transaction_commits_is_exact() {
    let setup = crash_and_recover("checkpoint.before-commit=2", None);
    // The crashed transaction's outputs and changelog records reached the log and were
    // aborted when the restarted instance fenced its producer.
    assert!(aborted_records(&setup.broker.bootstrap, &setup.topic("counts")) > 0);
    assert!(aborted_records(&setup.broker.bootstrap, &setup.changelog()) > 0);
}

#[test]
fn a_crash_between_the_kafka_commit_and_the_state_write_is_exact() {
    crash_and_recover("checkpoint.after-commit=2", None);
}

#[test]
fn a_crash_during_restore_is_exact() {
    // The first crash leaves local state behind Kafka, so the restart restores from
    // the changelog, and dies after applying its first block.
    crash_and_recover("checkpoint.after-commit=2", Some("restore.block=1"));
}

#[test]
fn two_instances_split_partitions_and_one_takes_over_the_others() {
    let setup = Setup::new(EXE, 8, &["counts"]);
    let mut input = setup.input();
    let (a, b) = setup.start_two(&mut input, 80);

    assert!(b.terminate().success());
    let deadline = Instant::now() + WAIT;
    while a.running_partitions() < 8 {
        assert!(
            Instant::now() < deadline,
            "a did not take over:\n{}",
            a.tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    input.produce(8, 80);
    setup.wait_for_counts(&input, &a);
    assert!(a.terminate().success());

    assert_outputs_exact(
        &setup.broker.bootstrap,
        &setup.topic("counts"),
        &input.expected,
    );
    // a now holds the state of every partition, b's restored from the changelog.
    assert_state_exact(
        &setup.data_dir("a"),
        "wc",
        &setup.topic("text"),
        &input.expected,
    );
}

#[test]
fn a_poison_record_is_dead_lettered_and_the_stream_goes_on() {
    let setup = Setup::new(EXE, 1, &["counts", "dead-letters"]);
    let extra = format!(
        "on_error = \"dead-letter\"\ndead_letter_topic = {:?}",
        setup.topic("dead-letters")
    );
    let daemon = setup.start_with("a", &extra, None);
    daemon.wait_for("partition running", 1, WAIT);

    let mut input = setup.input();
    input.send(0, b"oak pine");
    input.send(0, &[0xff, 0xfe, 0x00]); // not UTF-8: the transform rejects it
    input.send(0, b"oak");
    input.producer.flush(Duration::from_secs(30)).unwrap();
    input.expected.add(0, "oak pine");
    input.expected.add(0, "oak");
    wait_for_outputs(
        &setup.broker.bootstrap,
        &setup.topic("counts"),
        3,
        Some(&daemon),
    );
    assert!(daemon.terminate().success());

    assert_outputs_exact(
        &setup.broker.bootstrap,
        &setup.topic("counts"),
        &input.expected,
    );
    let dead: Vec<_> = kafka_raw::read_topic(&setup.broker.bootstrap, &setup.topic("dead-letters"))
        .unwrap()
        .into_iter()
        .flat_map(|log| log.committed)
        .collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].value.as_deref(), Some(&[0xff, 0xfe, 0x00][..]));
    let header = |name: &str| {
        dead[0]
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(header("weir.dlq.offset").as_deref(), Some("1"));
    assert_eq!(header("weir.dlq.partition").as_deref(), Some("0"));
    assert_eq!(header("weir.dlq.pipeline").as_deref(), Some("wc"));
    assert_eq!(header("weir.dlq.kind").as_deref(), Some("rejected"));
    assert!(
        header("weir.dlq.error").is_some_and(|e| e.contains("UTF-8")),
        "{:?}",
        header("weir.dlq.error")
    );
}

/// The embedded broker (librdkafka's mock cluster, in the `weir serve` process): the
/// quickstart's path. It writes no transaction markers, so outputs are read as any
/// client would; the suite above proves exactly-once on Apache Kafka.
#[test]
fn the_embedded_broker_runs_a_pipeline_end_to_end() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};

    let dir = tempfile::tempdir().unwrap();
    let module = guest("word-count");
    let config = write_config(
        dir.path(),
        "embedded",
        &dir.path().join("data"),
        &[PipelineSpec {
            name: "wc",
            module: &module,
            inputs: &["text"],
            output: "counts",
            extra: "",
        }],
    );
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "[kafka.consumer_properties]",
            "embedded.partitions = 1\n\n[kafka.consumer_properties]",
        ),
    )
    .unwrap();
    let log = dir.path().join("a.log");
    let daemon = Daemon::start(Path::new(EXE), &config, &log, None);
    daemon.wait_for("partition running", 1, WAIT);
    let bootstrap = std::fs::read_to_string(dir.path().join("data/embedded-brokers")).unwrap();
    let bootstrap = bootstrap.trim();

    let input = Input::new(bootstrap, "text");
    input.send(0, b"oak pine oak");
    input.producer.flush(Duration::from_secs(30)).unwrap();

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "reader")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("counts", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    while seen.len() < 3 && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
            let value = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
            seen.push((key, value));
        }
    }
    // Clients first: closing them after the broker is gone waits on timeouts.
    drop((consumer, input));
    assert!(daemon.terminate().success());
    let pairs: Vec<(&str, &str)> = seen.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(pairs, [("oak", "1"), ("pine", "1"), ("oak", "2")]);
    let store = RocksStore::open(dir.path().join("data/pipelines/wc/state/text-0")).unwrap();
    assert_eq!(store.get(b"count/oak").unwrap().as_deref(), Some(&b"2"[..]));
}

/// Two exactly-once pipelines over the same input share the daemon's two processing
/// threads, so a checkpoint is one transaction carrying the input offsets of both
/// groups. Crashes before and after such a commit leave both pipelines exact, in
/// outputs and in state.
#[test]
fn pipelines_sharing_a_transaction_survive_crashes_exactly() {
    let setup = Setup::new(EXE, 4, &["counts", "counts2"]);
    let text = setup.topic("text");
    let inputs = [text.as_str()];
    let outputs = [
        ("wc", setup.topic("counts")),
        ("wc2", setup.topic("counts2")),
    ];
    let groups = outputs.each_ref().map(|(name, _)| setup.group_line(name));
    let specs: Vec<PipelineSpec<'_>> = outputs
        .iter()
        .zip(&groups)
        .map(|((name, output), group)| PipelineSpec {
            name,
            module: &setup.module,
            inputs: &inputs,
            output,
            extra: group,
        })
        .collect();
    let config = write_config(
        setup.dir.path(),
        &setup.broker.bootstrap,
        &setup.data_dir("a"),
        &specs,
    );
    let start = |run: &str, failpoints: Option<&str>| {
        let log = setup.dir.path().join(format!("{run}.log"));
        Daemon::start(Path::new(EXE), &config, &log, failpoints)
    };
    let mut input = setup.input();
    input.produce(4, 60);
    let mut daemon = start("first", Some("checkpoint.before-commit=2"));
    daemon.assert_killed_at("checkpoint.before-commit=2");
    input.produce(4, 60);
    let mut daemon = start("second", Some("checkpoint.after-commit=2"));
    daemon.assert_killed_at("checkpoint.after-commit=2");

    let daemon = start("third", None);
    daemon.wait_for("partition running", 8, WAIT);
    input.produce(4, 30);
    for (_, output) in &outputs {
        wait_for_outputs(
            &setup.broker.bootstrap,
            output,
            input.expected.total_outputs(),
            Some(&daemon),
        );
    }
    // Each thread runs two partitions of each pipeline: a checkpoint of more than two
    // partitions committed both groups' offsets in one transaction.
    let shared = daemon
        .events("thread checkpoint")
        .iter()
        .filter_map(|e| e["fields"]["partitions"].as_u64())
        .max()
        .unwrap_or(0);
    assert!(
        shared > 2,
        "no checkpoint spanned both pipelines (at most {shared} partitions)"
    );
    assert!(daemon.terminate().success());

    for (name, output) in &outputs {
        assert_outputs_exact(&setup.broker.bootstrap, output, &input.expected);
        assert_state_exact(&setup.data_dir("a"), name, &text, &input.expected);
    }
}

/// A pipeline that stops on a poison record (`on_error = "fail"`) takes only its own
/// partitions off the processing threads it shares with another pipeline: the other
/// goes on, exactly, while the failed one restarts and fails again.
#[test]
fn a_failing_pipeline_leaves_its_neighbours_on_the_shared_threads_running() {
    let setup = Setup::new(EXE, 2, &["counts", "text2", "counts2"]);
    let (text, text2) = (setup.topic("text"), setup.topic("text2"));
    let (inputs, inputs2) = ([text.as_str()], [text2.as_str()]);
    let (counts, counts2) = (setup.topic("counts"), setup.topic("counts2"));
    let (group, group2) = (setup.group_line("wc"), setup.group_line("wc2"));
    let specs = [
        PipelineSpec {
            name: "wc",
            module: &setup.module,
            inputs: &inputs,
            output: &counts,
            extra: &group,
        },
        PipelineSpec {
            name: "wc2",
            module: &setup.module,
            inputs: &inputs2,
            output: &counts2,
            extra: &group2,
        },
    ];
    let config = write_config(
        setup.dir.path(),
        &setup.broker.bootstrap,
        &setup.data_dir("a"),
        &specs,
    );
    let daemon = Daemon::start(
        Path::new(EXE),
        &config,
        &setup.dir.path().join("a.log"),
        None,
    );
    daemon.wait_for("partition running", 4, WAIT);

    let poison = Input::new(&setup.broker.bootstrap, &text);
    poison.send(0, &[0xff, 0xfe, 0x00]); // not UTF-8: the transform rejects it
    poison.producer.flush(Duration::from_secs(30)).unwrap();
    daemon.wait_for("pipeline failed; the others keep running", 1, WAIT);

    let mut input = Input::new(&setup.broker.bootstrap, &text2);
    input.produce(2, 100);
    wait_for_outputs(
        &setup.broker.bootstrap,
        &counts2,
        input.expected.total_outputs(),
        Some(&daemon),
    );
    let failures = daemon.events("pipeline failed; the others keep running");
    assert!(
        failures.iter().all(|e| e["fields"]["pipeline"] == "wc"),
        "only wc fails: {failures:?}"
    );
    assert!(daemon.terminate().success());
    assert_outputs_exact(&setup.broker.bootstrap, &counts2, &input.expected);
    assert_state_exact(&setup.data_dir("a"), "wc2", &text2, &input.expected);
}
