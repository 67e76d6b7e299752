//! Word count end to end: deterministic input, the outputs and state it must lead to,
//! and a setup of Kafka topics, a temp directory and `weir serve` processes. Shared by
//! the Kafka test suites.
//!
//! Exactly-once is checked two ways: from the raw log (weir_tests::kafka_raw settles
//! transactions from their control markers itself) and through a plain
//! `read_committed` consumer, which Apache Kafka makes trustworthy. Both must agree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use weir_runtime::state::{RocksStore, StateStore};

use crate::broker::{Kafka, unique};
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
        let record = BaseRecord::<(), [u8]>::to(&self.topic)
            .partition(partition)
            .payload(value);
        crate::broker::send_waiting(&self.producer, record);
    }
}

/// The committed (word, count) outputs of `topic`, read from the raw log.
pub fn committed_outputs(bootstrap: &str, topic: &str) -> BTreeMap<(String, u64), usize> {
    let records = kafka_raw::read_topic(bootstrap, topic)
        .expect("read the output topic")
        .into_iter()
        .flat_map(|log| log.committed)
        .map(|record| (record.key, record.value));
    count_outputs(records)
}

/// A record's key and value, as read.
pub type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

fn count_outputs(records: impl Iterator<Item = KeyValue>) -> BTreeMap<(String, u64), usize> {
    let mut outputs = BTreeMap::new();
    for (key, value) in records {
        let word = String::from_utf8(key.unwrap_or_default()).unwrap();
        let count: u64 = String::from_utf8(value.unwrap_or_default())
            .unwrap()
            .parse()
            .unwrap();
        *outputs.entry((word, count)).or_default() += 1;
    }
    outputs
}

/// Every record of `topic` a `read_committed` consumer sees, from the beginning to the
/// end of each partition, as (key, value).
pub fn read_committed(bootstrap: &str, topic: &str) -> Vec<KeyValue> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("verifier"))
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a read_committed consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata of the output topic");
    let partitions = metadata.topics()[0].partitions().len();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).expect("assign");
    let mut records = Vec::new();
    let mut at_end = std::collections::BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while at_end.len() < partitions {
        assert!(
            Instant::now() < deadline,
            "reading {topic} read_committed: only {at_end:?} of {partitions} partitions reached \
             their end"
        );
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(message)) => {
                records.push((
                    message.key().map(<[u8]>::to_vec),
                    message.payload().map(<[u8]>::to_vec),
                ));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic} read_committed: {e}"),
            None => {}
        }
    }
    records
}

/// How many records of `topic` committed, from the raw log.
pub fn committed_count(bootstrap: &str, topic: &str) -> usize {
    kafka_raw::read_topic(bootstrap, topic)
        .expect("read the topic")
        .iter()
        .map(|log| log.committed.len())
        .sum()
}

/// Wait up to [`WAIT`] until `done`; on time-out, fail with `why()`.
pub fn wait_until(mut done: impl FnMut() -> bool, why: impl Fn() -> String) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "{}", why());
        std::thread::sleep(Duration::from_millis(200));
    }
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
    let consumed = count_outputs(read_committed(bootstrap, topic).into_iter());
    assert!(
        consumed == actual,
        "a read_committed consumer sees other outputs than the raw log's committed \
         transactions: {} against {}",
        consumed.values().sum::<usize>(),
        actual.values().sum::<usize>()
    );
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

/// One test's word count on Kafka: its topics (named apart from every other test's,
/// see [`Setup::topic`]), a temp directory and the word-count module.
pub struct Setup {
    /// The `weir` executable under test.
    pub exe: PathBuf,
    pub broker: Arc<Kafka>,
    pub dir: tempfile::TempDir,
    pub module: PathBuf,
    /// Prefix of this test's topics and group ids.
    pub ns: String,
    /// Partitions of each topic.
    pub partitions: i32,
}

/// A failed test keeps its directory (configs, daemon logs, state) and names it, as
/// [`Kafka`] keeps its cluster's: the daemon's log is what explains a failure.
impl Drop for Setup {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
            eprintln!("the failed test's daemons: {}", self.dir.path().display());
        }
    }
}

impl Setup {
    /// On the suite's shared cluster: an input topic `text` and `topics`, each with
    /// `partitions` partitions.
    pub fn new(exe: &str, partitions: i32, topics: &[&str]) -> Self {
        Self::on(Kafka::shared(), exe, partitions, topics)
    }

    /// [`Setup::new`] on `broker`.
    pub fn on(broker: Arc<Kafka>, exe: &str, partitions: i32, topics: &[&str]) -> Self {
        let ns = unique("t");
        for topic in std::iter::once(&"text").chain(topics) {
            broker.create_topic(&format!("{ns}.{topic}"), partitions);
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
            ns,
            partitions,
        }
    }

    /// The name of this test's topic `name` on the cluster.
    pub fn topic(&self, name: &str) -> String {
        format!("{}.{name}", self.ns)
    }

    /// The group id of this test's pipeline `pipeline`, for its `group_id` setting.
    pub fn group(&self, pipeline: &str) -> String {
        format!("weir.{}.{pipeline}", self.ns)
    }

    /// The `group_id` line for pipeline `pipeline`'s config table.
    pub fn group_line(&self, pipeline: &str) -> String {
        format!("group_id = {:?}\n", self.group(pipeline))
    }

    /// The changelog topic of pipeline `wc` over `text`.
    pub fn changelog(&self) -> String {
        weir_runtime::config::PipelineConfig::changelog_topic(
            &self.group("wc"),
            &self.topic("text"),
        )
    }

    /// A producer of word-count lines into this test's `text`.
    pub fn input(&self) -> Input {
        Input::new(&self.broker.bootstrap, &self.topic("text"))
    }

    /// Wait until every output `input` implies has committed in `counts`.
    pub fn wait_for_counts(&self, input: &Input, daemon: &Daemon) {
        let total = input.expected.total_outputs();
        wait_for_outputs(
            &self.broker.bootstrap,
            &self.topic("counts"),
            total,
            Some(daemon),
        );
    }

    /// Outputs in `counts` and the state in data directory `data` are exactly what
    /// `input` implies.
    pub fn assert_exact(&self, input: &Input, data: &str) {
        assert_outputs_exact(
            &self.broker.bootstrap,
            &self.topic("counts"),
            &input.expected,
        );
        assert_state_exact(
            &self.data_dir(data),
            "wc",
            &self.topic("text"),
            &input.expected,
        );
    }

    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A config of pipeline `wc` from `text` to `counts`, with `extra` lines in its table.
    pub fn config(&self, data: &str, extra: &str) -> PathBuf {
        write_config(
            self.dir.path(),
            &self.broker.bootstrap,
            &self.data_dir(data),
            &[PipelineSpec {
                name: "wc",
                module: &self.module,
                inputs: &[&self.topic("text")],
                output: &self.topic("counts"),
                extra: &format!("{}{extra}", self.group_line("wc")),
            }],
        )
    }

    pub fn start(&self, data: &str, failpoints: Option<&str>) -> Daemon {
        self.start_with(data, "", failpoints)
    }

    /// Instances `a` and `b` sharing the group, each running some of the input's
    /// partitions, and `lines` lines per partition counted through them.
    pub fn start_two(&self, input: &mut Input, lines: usize) -> (Daemon, Daemon) {
        let partitions = self.partitions;
        let (a, b) = (self.start("a", None), self.start("b", None));
        Daemon::wait_for_split(&a, &b, partitions as usize, WAIT);
        input.produce(partitions, lines);
        self.wait_for_counts(input, &a);
        (a, b)
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
