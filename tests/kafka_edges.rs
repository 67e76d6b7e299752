//! The exactly-once edges real Kafka exposes, each with exact totals: an at-least-once
//! crash between the changelog and the offset commit, a transaction the broker aborts
//! because this instance was slow, a zombie (an instance frozen past its session while
//! another takes its partitions, then thawed), and a restore from a changelog the log
//! cleaner compacted.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::producer::Producer;
use weir_runtime::state::{RocksStore, StateStore};
use weir_tests::daemon::Daemon;
use weir_tests::guest;
use weir_tests::kafka_raw;
use weir_tests::wordcount::{
    Setup, WAIT, assert_state_exact, committed_count, committed_outputs, read_committed, wait_until,
};

const EXE: &str = env!("CARGO_BIN_EXE_weir-under-test");

#[test]
fn an_at_least_once_restore_applies_only_committed_intervals() {
    // The crash comes after the changelog flush and before the offset commit: the
    // changelog (not transactional under at-least-once) holds an interval the group
    // never committed. Applying it at restore would count its records twice in state.
    let setup = Setup::new(EXE, 2, &["counts"]);
    let alo = "guarantee = \"at-least-once\"";
    let mut input = setup.input();
    input.produce(2, 60);
    // The first checkpoint with records in it dies before its offset commit.
    let mut daemon = setup.start_with("a", alo, Some("checkpoint.before-commit=1"));
    daemon.assert_killed_at("checkpoint.before-commit=1");
    input.produce(2, 60);
    let daemon = setup.start_with("a", alo, None);
    input.produce(2, 30);
    setup.wait_for_counts(&input, &daemon);
    assert!(daemon.terminate().success());

    assert_state_exact(
        &setup.data_dir("a"),
        "wc",
        &setup.topic("text"),
        &input.expected,
    );
    // Outputs may repeat under at-least-once, but every one is a right count.
    let actual = committed_outputs(&setup.broker.bootstrap, &setup.topic("counts"));
    let wrong: Vec<_> = actual
        .keys()
        .filter(|k| !input.expected.outputs.contains_key(*k))
        .take(10)
        .collect();
    let missing: Vec<_> = input
        .expected
        .outputs
        .keys()
        .filter(|k| !actual.contains_key(*k))
        .take(10)
        .collect();
    assert!(
        wrong.is_empty() && missing.is_empty(),
        "wrong counts {wrong:?}, missing {missing:?}"
    );
}

/// The committed (key, value) outputs of `topic` through a read_committed consumer,
/// checked against the raw log's committed transactions.
fn outputs(setup: &Setup, topic: &str) -> Vec<(String, String)> {
    let text = |b: Option<Vec<u8>>| String::from_utf8(b.unwrap_or_default()).unwrap();
    let mut consumed: Vec<(String, String)> = read_committed(&setup.broker.bootstrap, topic)
        .into_iter()
        .map(|(k, v)| (text(k), text(v)))
        .collect();
    let mut raw: Vec<(String, String)> = kafka_raw::read_topic(&setup.broker.bootstrap, topic)
        .unwrap()
        .into_iter()
        .flat_map(|log| log.committed)
        .map(|r| (text(r.key), text(r.value)))
        .collect();
    consumed.sort();
    raw.sort();
    assert_eq!(consumed, raw, "read_committed and the raw log agree");
    consumed
}

#[test]
fn a_transaction_the_broker_times_out_restarts_the_partition_exactly() {
    // `a` opens the interval's transaction; `loop` then spins to the call deadline
    // (8 s), so the transaction outlives transaction.timeout.ms (2.5 s) before the
    // interval (2 s) can commit: the broker aborts it and fences the producer, though
    // no other instance exists. The partition must not stand still while it looks
    // assigned: its thread takes a new producer and restarts it from its last
    // checkpoint, committing around each batch until it is past the slow record, so the
    // same records do not time out again.
    let mut setup = Setup::new(EXE, 1, &["counts"]);
    setup.module = guest("misbehave");
    let extra = "on_error = \"skip\"\ncommit_interval_ms = 2000\nbatch_size = 1\n\
                 [pipelines.wc.limits]\ncall_timeout_ms = 8000\n";
    let config = setup.config("a", extra);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[kafka.consumer_properties]",
        "[kafka.producer_properties]\n\"transaction.timeout.ms\" = 2500\n\n[kafka.consumer_properties]",
    );
    std::fs::write(&config, text).unwrap();
    let daemon = Daemon::start(
        std::path::Path::new(EXE),
        &config,
        &setup.dir.path().join("a.log"),
        None,
    );
    daemon.wait_for("partition running", 1, WAIT);

    let input = setup.input();
    input.send(0, b"a");
    input.send(0, b"loop");
    input.producer.flush(Duration::from_secs(30)).unwrap();
    daemon.wait_for(
        "producer fenced: the broker aborted this thread's transaction (it outlived \
         transaction.timeout.ms) or librdkafka left it hanging; starting the thread's \
         partitions again from their last checkpoint with a new producer",
        1,
        WAIT,
    );
    input.send(0, b"b");
    input.producer.flush(Duration::from_secs(30)).unwrap();

    let counts = setup.topic("counts");
    wait_until(
        || committed_count(&setup.broker.bootstrap, &counts) >= 2,
        || format!("the fenced partition never resumed:\n{}", daemon.tail()),
    );
    assert!(daemon.terminate().success());
    assert_eq!(
        outputs(&setup, &counts),
        [
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned())
        ],
        "each record counted once (\"seen\" is 1, then 2)"
    );
}

#[test]
fn a_zombie_loses_its_partitions_and_nothing_it_writes_after_the_takeover_shows() {
    let setup = Setup::new(EXE, 4, &["counts"]);
    let mut input = setup.input();
    let (a, b) = setup.start_two(&mut input, 40);

    // Frozen mid-stream, with records of its partitions still to process.
    let before = a.running_partitions();
    input.produce(4, 40);
    a.freeze();
    wait_until(
        || b.running_partitions() == 4,
        || format!("b did not take over a's {before} partitions:\n{}", b.tail()),
    );
    input.produce(4, 40);
    setup.wait_for_counts(&input, &b);

    // Thawed: whatever a still had in flight is fenced; it learns its partitions were
    // lost (abandoned, not checkpointed) and rejoins.
    a.resume();
    let lost = || {
        a.events("partition released")
            .iter()
            .filter(|e| e["fields"]["stop"] == "Abandon")
            .count()
    };
    wait_until(
        || lost() >= before,
        || {
            format!(
                "a's {before} partitions were not released as lost:\n{}",
                a.tail()
            )
        },
    );
    input.produce(4, 40);
    setup.wait_for_counts(&input, &b);
    assert!(a.terminate().success());
    assert!(b.terminate().success());

    // A fresh instance restores every partition from the changelog.
    let c = setup.start("c", None);
    c.wait_for("partition running", 4, WAIT);
    input.produce(4, 10);
    setup.wait_for_counts(&input, &c);
    assert!(c.terminate().success());
    setup.assert_exact(&input, "c");
}

#[test]
fn a_restore_from_a_compacted_changelog_is_exact_deleted_keys_included() {
    let mut setup = Setup::new(EXE, 1, &["counts"]);
    setup.module = guest("misbehave");
    // The changelog made beforehand, so the log cleaner works on it at once: segments
    // that roll every 100 ms, any dirt worth cleaning, tombstones kept a moment only.
    setup.broker.create_topic_with(
        &setup.changelog(),
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "100"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("min.compaction.lag.ms", "0"),
            ("delete.retention.ms", "100"),
        ],
    );
    let daemon = setup.start("a", None);
    daemon.wait_for("partition running", 1, WAIT);

    let input = setup.input();
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    let mut sent = 0;
    for round in 0..30 {
        for key in 0..20 {
            let key = format!("k{key}");
            if (round + key.len()) % 7 == 0 || (round % 5 == 4 && key.ends_with('3')) {
                input.send(0, format!("del:{key}").as_bytes());
                expected.remove(&key);
            } else {
                let value = format!("{key}-{round}");
                input.send(0, format!("set:{key}={value}").as_bytes());
                expected.insert(key, value);
            }
            sent += 1;
        }
        input.producer.flush(Duration::from_secs(30)).unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }
    let counts = setup.topic("counts");
    wait_until(
        || committed_count(&setup.broker.bootstrap, &counts) >= sent,
        || daemon.tail(),
    );

    // Wait for the cleaner: far fewer changelog records than were written.
    let written: usize = daemon
        .events("checkpoint committed")
        .len()
        .saturating_add(sent);
    let kept = || committed_count(&setup.broker.bootstrap, &setup.changelog());
    wait_until(
        || kept() * 3 < written,
        || {
            format!(
                "the log cleaner left {} of {written} changelog records",
                kept()
            )
        },
    );
    assert!(daemon.terminate().success());

    // A fresh instance restores from the compacted changelog alone.
    let restored = setup.start("b", None);
    restored.wait_for("partition running", 1, WAIT);
    assert!(restored.terminate().success());
    for data in ["a", "b"] {
        let dir = setup
            .data_dir(data)
            .join(format!("pipelines/wc/state/{}-0", setup.topic("text")));
        let store = RocksStore::open(&dir).unwrap();
        let state: BTreeMap<String, String> = store
            .scan(b"kv/", None, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|e| {
                (
                    String::from_utf8(e.key[3..].to_vec()).unwrap(),
                    String::from_utf8(e.value).unwrap(),
                )
            })
            .collect();
        assert_eq!(state, expected, "state of {data}");
    }
}
