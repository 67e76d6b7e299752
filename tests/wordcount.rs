//! Word count end to end: deterministic input, the outputs and state it must lead to,
//! and a setup of Tansu, a temp directory and `weir serve` processes. Shared by the
//! Kafka test suites.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use weir_runtime::state::{RocksStore, StateStore};

use crate::broker::Tansu;
use crate::daemon::{Daemon, PipelineSpec, write_config};
use crate::{guest, kafka_raw};

pub const WAIT: Duration = Duration::from_secs(90);

pub const WORDS: &[&str] = &[
    "alder", "birch", "cedar", "elm", "fir", "hazel", "larch", "maple", "oak", "pine", "rowan",
    "spruce", "willow", "yew",
];

/// Deterministic text: record `i` of partition `p`.
pub fn line(partition: i32, i: usize) -> String {
    (0..4)
        .map(|k| WORDS[(i * 7 + k * 3 + partition as usize * 5) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

/// What word count must produce for the records of each partition, in order.
#[derive(Default)]
pub struct Expected {
    /// (word, count) outputs, as a multiset.
    pub outputs: BTreeMap<(String, u64), usize>,
    /// Final count per word, per partition.
    pub state: BTreeMap<i32, BTreeMap<String, u64>>,
}

impl Expected {
    pub fn add(&mut self, partition: i32, text: &str) {
        let counts = self.state.entry(partition).or_default();
        for word in text.split(' ') {
            let n = counts.entry(word.to_owned()).or_default();
            *n += 1;
            *self.outputs.entry((word.to_owned(), *n)).or_default() += 1;
        }
    }

    pub fn total_outputs(&self) -> usize {
        self.outputs.values().sum()
    }
}

pub struct Input {
    pub producer: BaseProducer,
    pub topic: String,
    pub next: BTreeMap<i32, usize>,
    pub expected: Expected,
}

impl Input {
    pub fn new(bootstrap: &str, topic: &str) -> Self {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()
            .expect("a producer");
        Self {
            producer,
            topic: topic.to_owned(),
            next: BTreeMap::new(),
            expected: Expected::default(),
        }
    }

    /// Produce `count` more lines to each of `partitions` and wait for the acks.
    pub fn produce(&mut self, partitions: i32, count: usize) {
        for p in 0..partitions {
            let start = *self.next.get(&p).unwrap_or(&0);
            for i in start..start + count {
                let text = line(p, i);
                self.send(p, text.as_bytes());
                self.expected.add(p, &text);
            }
            self.next.insert(p, start + count);
        }
        self.producer
            .flush(Duration::from_secs(30))
            .expect("inputs acknowledged");
    }

    pub fn send(&self, partition: i32, value: &[u8]) {
        let mut record = BaseRecord::<(), [u8]>::to(&self.topic)
            .partition(partition)
            .payload(value);
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((_, back)) => {
                    record = back;
                    self.producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
}

/// The committed (word, count) outputs of `topic`, read from the raw log.
pub fn committed_outputs(bootstrap: &str, topic: &str) -> BTreeMap<(String, u64), usize> {
    let mut outputs = BTreeMap::new();
    for log in kafka_raw::read_topic(bootstrap, topic).expect("read the output topic") {
        for record in log.committed {
            let word = String::from_utf8(record.key.unwrap_or_default()).unwrap();
            let count: u64 = String::from_utf8(record.value.unwrap_or_default())
                .unwrap()
                .parse()
                .unwrap();
            *outputs.entry((word, count)).or_default() += 1;
        }
    }
    outputs
}

/// Wait until at least `total` outputs committed.
pub fn wait_for_outputs(bootstrap: &str, topic: &str, total: usize, daemon: Option<&Daemon>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let seen: usize = committed_outputs(bootstrap, topic).values().sum();
        if seen >= total {
            return;
        }
        let tail = daemon.map(Daemon::tail).unwrap_or_default();
        if daemon.is_some_and(|d| d.exited().is_some()) {
            panic!("weir exited with {seen} of {total} outputs committed:\n{tail}");
        }
        assert!(
            Instant::now() < deadline,
            "only {seen} of {total} outputs committed:\n{tail}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Every committed output exactly once: nothing missing, nothing twice; and no
/// transaction left open (the daemons stopped).
pub fn assert_outputs_exact(bootstrap: &str, topic: &str, expected: &Expected) {
    let open: usize = kafka_raw::read_topic(bootstrap, topic)
        .expect("read the output topic")
        .iter()
        .map(|log| log.open)
        .sum();
    assert_eq!(open, 0, "records of transactions never ended in {topic}");
    let actual = committed_outputs(bootstrap, topic);
    let missing: Vec<_> = expected
        .outputs
        .iter()
        .filter(|(k, n)| actual.get(*k).copied().unwrap_or(0) < **n)
        .take(10)
        .collect();
    let extra: Vec<_> = actual
        .iter()
        .filter(|(k, n)| expected.outputs.get(*k).copied().unwrap_or(0) < **n)
        .take(10)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "outputs differ: missing {missing:?}, duplicated or unexpected {extra:?}"
    );
}

/// The word counts in the state store of each partition, read from `data_dir`.
pub fn assert_state_exact(data_dir: &Path, pipeline: &str, topic: &str, expected: &Expected) {
    for (partition, counts) in &expected.state {
        let dir = data_dir.join(format!("pipelines/{pipeline}/state/{topic}-{partition}"));
        let store = RocksStore::open(&dir).unwrap_or_else(|e| panic!("{e}"));
        let entries = store.scan(b"count/", None, usize::MAX).unwrap();
        let actual: BTreeMap<String, u64> = entries
            .into_iter()
            .map(|e| {
                let word = String::from_utf8(e.key[b"count/".len()..].to_vec()).unwrap();
                (word, serde_json::from_slice(&e.value).unwrap())
            })
            .collect();
        assert_eq!(&actual, counts, "state of partition {partition}");
    }
}

pub struct Setup {
    /// The `weir` executable under test.
    pub exe: PathBuf,
    pub broker: Tansu,
    pub dir: tempfile::TempDir,
    pub module: PathBuf,
}

impl Setup {
    pub fn new(exe: &str, partitions: i32, topics: &[&str]) -> Self {
        let broker = Tansu::start();
        broker.create_topic("text", partitions);
        for topic in topics {
            broker.create_topic(topic, partitions);
        }
        // WEIR_TEST_KEEP=1 keeps configs, logs and state for a look after a failure.
        let keep = std::env::var_os("WEIR_TEST_KEEP").is_some();
        let dir = tempfile::Builder::new()
            .prefix("weir-kafka-")
            .disable_cleanup(keep)
            .tempdir()
            .unwrap();
        if keep {
            eprintln!("keeping {}", dir.path().display());
        }
        Self {
            exe: PathBuf::from(exe),
            broker,
            dir,
            module: guest("word-count"),
        }
    }

    /// Wait until every output `input` implies has committed in `counts`.
    pub fn wait_for_counts(&self, input: &Input, daemon: &Daemon) {
        let total = input.expected.total_outputs();
        wait_for_outputs(&self.broker.bootstrap, "counts", total, Some(daemon));
    }

    /// Outputs in `counts` and the state in data directory `data` are exactly what
    /// `input` implies.
    pub fn assert_exact(&self, input: &Input, data: &str) {
        assert_outputs_exact(&self.broker.bootstrap, "counts", &input.expected);
        assert_state_exact(&self.data_dir(data), "wc", "text", &input.expected);
    }

    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn config(&self, data: &str, extra: &str) -> PathBuf {
        write_config(
            self.dir.path(),
            &self.broker.bootstrap,
            &self.data_dir(data),
            &[PipelineSpec {
                name: "wc",
                module: &self.module,
                inputs: &["text"],
                output: "counts",
                extra,
            }],
        )
    }

    pub fn start(&self, data: &str, failpoints: Option<&str>) -> Daemon {
        self.start_with(data, "", failpoints)
    }

    /// Start with `extra` lines in the pipeline's config table.
    pub fn start_with(&self, data: &str, extra: &str, failpoints: Option<&str>) -> Daemon {
        let config = self.config(data, extra);
        Daemon::start(
            &self.exe,
            &config,
            &self.dir.path().join(format!("{data}.log")),
            failpoints,
        )
    }
}
