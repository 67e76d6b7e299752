//! Non-Rust guests end to end: `weir serve` runs the Python and the JavaScript word
//! count against Apache Kafka, exactly once, and a record the guest raises an
//! exception on goes to the dead-letter topic carrying the guest's message.
//!
//! Reuses the suite's broker and daemon helpers (weir_tests::broker, ::daemon) and
//! checks committed outputs from the raw log (weir_tests::kafka_raw) and through a
//! `read_committed` consumer, as tests/kafka.rs does.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use weir_runtime::state::{RocksStore, StateStore};
use weir_tests::broker::{Kafka, unique};
use weir_tests::daemon::{Daemon, PipelineSpec, write_config};
use weir_tests::kafka_raw::{self, CommittedRecord};
use weir_tests::languages::{Lang, lang_guest};

const EXE: &str = env!("CARGO_BIN_EXE_weir-under-test");
/// Generous: the suite shares two cores with other tests.
const WAIT: Duration = Duration::from_secs(120);
const PARTITIONS: i32 = 2;
const LINES_PER_PARTITION: usize = 40;
const WORDS: &[&str] = &["Weir", "river", "water", "bridge", "it's", "Holds", "back"];

/// Deterministic text: line `i` of partition `p`, mixed case, so lower-casing shows.
fn line(partition: i32, i: usize) -> String {
    (0..3)
        .map(|k| WORDS[(i * 5 + k * 2 + partition as usize) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(", ")
}

/// The committed records of `topic`, read from the raw log.
fn committed(bootstrap: &str, topic: &str) -> Vec<CommittedRecord> {
    kafka_raw::read_topic(bootstrap, topic)
        .expect("read the topic")
        .into_iter()
        .flat_map(|log| log.committed)
        .collect()
}

fn text(bytes: Option<Vec<u8>>) -> String {
    String::from_utf8(bytes.unwrap_or_default()).expect("UTF-8")
}

/// Compile `module` into the compiled cache `weir serve` uses by default, with `weir
/// test` on one record. An interpreter component takes over a minute to compile in a
/// debug build (two at once on two cores, longer); done here, the daemon's start is
/// quick and the wait for its partitions measures the daemon, not Cranelift.
fn warm_compiled_cache(module: &Path, dir: &Path) {
    let input = dir.join("warm-up.jsonl");
    std::fs::write(&input, "{\"value\":\"warm up\"}\n").unwrap();
    let out = std::process::Command::new(EXE)
        .arg("test")
        .arg(module)
        .arg("--input")
        .arg(&input)
        .env_remove("WEIR_CACHE_DIR")
        .output()
        .expect("weir test runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn word_count_runs_on_kafka(lang: Lang) {
    let module = lang_guest(lang, "word-count");
    let broker = Kafka::shared();
    let ns = unique(lang.name());
    let [text_topic, counts, dead_letters] =
        ["text", "counts", "dead-letters"].map(|t| format!("{ns}.{t}"));
    for topic in [&text_topic, &counts, &dead_letters] {
        broker.create_topic(topic, PARTITIONS);
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = write_config(
        dir.path(),
        &broker.bootstrap,
        &data,
        &[PipelineSpec {
            name: "wc",
            module: &module,
            inputs: &[&text_topic],
            output: &counts,
            extra: &format!(
                "on_error = \"dead-letter\"\ndead_letter_topic = {dead_letters:?}\n\
                 group_id = \"weir.{ns}\""
            ),
        }],
    );
    warm_compiled_cache(&module, dir.path());
    let daemon = Daemon::start(Path::new(EXE), &config, &dir.path().join("weir.log"), None);
    daemon.wait_for("partition running", PARTITIONS as usize, WAIT);

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .expect("a producer");
    let send = |partition: i32, value: &[u8]| {
        let record = BaseRecord::<(), [u8]>::to(&text_topic)
            .partition(partition)
            .payload(value);
        weir_tests::broker::send_waiting(&producer, record);
    };
    // Expected (word, count) outputs and final state, per partition.
    let mut outputs: BTreeMap<(String, u64), usize> = BTreeMap::new();
    let mut state: BTreeMap<i32, BTreeMap<String, u64>> = BTreeMap::new();
    for p in 0..PARTITIONS {
        for i in 0..LINES_PER_PARTITION {
            let line = line(p, i);
            send(p, line.as_bytes());
            for word in line.split(", ") {
                let n = state
                    .entry(p)
                    .or_default()
                    .entry(word.to_lowercase())
                    .or_default();
                *n += 1;
                *outputs.entry((word.to_lowercase(), *n)).or_default() += 1;
            }
            if i == LINES_PER_PARTITION / 2 && p == 0 {
                send(p, &[0xff, 0xfe]); // not UTF-8: the guest raises on it
            }
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("inputs acknowledged");

    let total: usize = outputs.values().sum();
    let deadline = Instant::now() + WAIT;
    while committed(&broker.bootstrap, &counts).len() < total {
        assert!(daemon.exited().is_none(), "weir exited:\n{}", daemon.tail());
        assert!(
            Instant::now() < deadline,
            "outputs missing:\n{}",
            daemon.tail()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(daemon.terminate().success());

    let mut actual: BTreeMap<(String, u64), usize> = BTreeMap::new();
    let consumed = weir_tests::wordcount::read_committed(&broker.bootstrap, &counts);
    let mut raw = committed(&broker.bootstrap, &counts);
    let mut raw_pairs: Vec<_> = raw
        .iter()
        .map(|r| (r.key.clone(), r.value.clone()))
        .collect();
    let mut consumed_pairs = consumed;
    raw_pairs.sort();
    consumed_pairs.sort();
    assert_eq!(
        raw_pairs, consumed_pairs,
        "the raw log's committed records and a read_committed consumer's agree"
    );
    for record in raw.drain(..) {
        let count = text(record.value).parse().expect("a count");
        *actual.entry((text(record.key), count)).or_default() += 1;
    }
    assert_eq!(
        actual,
        outputs,
        "{}: every output exactly once",
        lang.name()
    );

    for (partition, counts) in &state {
        let store =
            RocksStore::open(data.join(format!("pipelines/wc/state/{text_topic}-{partition}")))
                .unwrap_or_else(|e| panic!("{e}"));
        let stored: BTreeMap<String, u64> = store
            .scan(b"count/", None, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|e| {
                let word = String::from_utf8(e.key[b"count/".len()..].to_vec()).unwrap();
                (word, serde_json::from_slice(&e.value).unwrap())
            })
            .collect();
        assert_eq!(&stored, counts, "state of partition {partition}");
    }

    let dead = committed(&broker.bootstrap, &dead_letters);
    assert_eq!(dead.len(), 1, "{dead:?}");
    let error = dead[0]
        .headers
        .iter()
        .find(|(k, _)| k == "weir.dlq.error")
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
    let message = match lang {
        Lang::Python => "ValueError: the record's value is not UTF-8 text",
        Lang::Js => "TypeError: the record's value is not UTF-8 text",
        Lang::C => "the record's value is not UTF-8 text",
    };
    assert!(
        error.as_deref().is_some_and(|e| e.contains(message)),
        "{error:?}"
    );
}

#[test]
fn python_word_count_is_exact_on_kafka() {
    word_count_runs_on_kafka(Lang::Python);
}

#[test]
fn js_word_count_is_exact_on_kafka() {
    word_count_runs_on_kafka(Lang::Js);
}
