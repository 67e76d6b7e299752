//! Apache Kafka for end-to-end tests and benches, run by `scripts/kafka.sh`.
//!
//! A JVM broker takes seconds to start and most of a gigabyte, so the suites share one
//! single-node cluster and keep out of each other's way by name: every test makes its
//! topics and group ids unique with [`unique`]. The shared cluster is the one at
//! `$WEIR_KAFKA_BOOTSTRAP` (scripts/test.sh starts one for the whole run and stops it
//! after), else a developer cluster in `$WEIR_CACHE/kafka-dev` that `scripts/kafka.sh
//! ensure` starts on first use and leaves running for the next test run.
//!
//! Tests that stop brokers (failover) start a cluster of their own with
//! [`Kafka::start`]: stopped when dropped, its directory kept (and named on stderr)
//! when the test failed, so the brokers' logs can be read.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord};

/// A Kafka cluster on loopback.
pub struct Kafka {
    pub bootstrap: String,
    /// The cluster's directory when this process started it and stops it on drop.
    owned: Option<tempfile::TempDir>,
}

static SHARED: LazyLock<Arc<Kafka>> = LazyLock::new(|| {
    let bootstrap = match std::env::var("WEIR_KAFKA_BOOTSTRAP") {
        Ok(bootstrap) if !bootstrap.is_empty() => bootstrap,
        _ => {
            let dir = cache_dir().join("kafka-dev");
            let bootstrap = script(&["ensure", "--dir", &dir.display().to_string()]);
            eprintln!(
                "using the developer Kafka cluster at {bootstrap} (scripts/kafka.sh stop --dir {} \
                 stops it; set WEIR_KAFKA_BOOTSTRAP to use another)",
                dir.display()
            );
            bootstrap
        }
    };
    let kafka = Kafka {
        bootstrap,
        owned: None,
    };
    kafka.wait_ready(1);
    Arc::new(kafka)
});

fn cache_dir() -> PathBuf {
    std::env::var_os("WEIR_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/weir")))
        .expect("WEIR_CACHE or HOME is set")
}

/// Runs scripts/kafka.sh with `args`; its last line of output.
fn script(args: &[&str]) -> String {
    let path = crate::repo_root().join("scripts/kafka.sh");
    let output = Command::new(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    assert!(
        output.status.success(),
        "scripts/kafka.sh {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Send `record`, waiting while the producer's queue is full (it drains as the
/// producer is polled).
pub fn send_waiting<K, P>(producer: &BaseProducer, mut record: BaseRecord<'_, K, P>)
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    while let Err((_, back)) = producer.send(record) {
        record = back;
        producer.poll(Duration::from_millis(10));
    }
}

/// A name no other test (in this run or an earlier one against the same cluster) uses:
/// `prefix` and a stamp of time, process and a counter.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros()
        % 1_000_000_000_000;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{micros:x}{:x}{n}", std::process::id())
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the admin client")
        .block_on(future)
}

impl Kafka {
    /// The suite's shared single-node cluster.
    pub fn shared() -> Arc<Kafka> {
        SHARED.clone()
    }

    /// A cluster of `brokers` nodes of this test's own (three: replication factor 3,
    /// min.insync.replicas 2).
    pub fn start(brokers: usize) -> Kafka {
        let dir = tempfile::Builder::new()
            .prefix("weir-kafka-cluster-")
            .tempdir()
            .expect("a directory for the cluster");
        let bootstrap = script(&[
            "start",
            "--brokers",
            &brokers.to_string(),
            "--dir",
            &dir.path().display().to_string(),
        ]);
        let kafka = Kafka {
            bootstrap,
            owned: Some(dir),
        };
        kafka.wait_ready(brokers);
        kafka
    }

    fn dir(&self) -> &Path {
        self.owned
            .as_ref()
            .expect("only a cluster this test started has nodes to stop")
            .path()
    }

    /// SIGKILL node `node` (1-based, the broker id).
    pub fn kill_node(&self, node: i32) {
        script(&[
            "kill-node",
            &node.to_string(),
            "--dir",
            &self.dir().display().to_string(),
        ]);
    }

    /// Start node `node` again and wait until it serves.
    pub fn start_node(&self, node: i32) {
        script(&[
            "start-node",
            &node.to_string(),
            "--dir",
            &self.dir().display().to_string(),
        ]);
    }

    fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        config
    }

    /// Wait until metadata names `brokers` brokers.
    fn wait_ready(&self, brokers: usize) {
        let consumer: BaseConsumer = self.client().create().expect("a metadata client");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match consumer.fetch_metadata(None, Duration::from_secs(5)) {
                Ok(metadata) if metadata.brokers().len() >= brokers => return,
                other => assert!(
                    Instant::now() < deadline,
                    "Kafka at {} is not ready: {:?}",
                    self.bootstrap,
                    other.map(|m| m.brokers().len())
                ),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Create `name` with `partitions` partitions and the broker's default replication.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        self.create_topic_with(name, partitions, &[]);
    }

    /// Create `name` with topic-level `configs` (e.g. `("segment.ms", "100")`).
    pub fn create_topic_with(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        let admin: AdminClient<DefaultClientContext> =
            self.client().create().expect("an admin client");
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(-1));
        for (key, value) in configs {
            topic = topic.set(key, value);
        }
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = block_on(admin.create_topics([&topic], &options))
            .unwrap_or_else(|e| panic!("creating topic {name}: {e}"));
        for result in results {
            if let Err((topic, code)) = result {
                panic!("creating topic {topic}: {code}");
            }
        }
        // Wait until metadata shows a leader for every partition: a producer that
        // arrives first would wait on its own metadata refresh instead.
        let consumer: BaseConsumer = self.client().create().expect("a metadata client");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = consumer
                .fetch_metadata(Some(name), Duration::from_secs(5))
                .ok()
                .and_then(|m| {
                    let topic = m.topics().first()?;
                    Some(
                        topic.error().is_none()
                            && topic.partitions().len() == partitions as usize
                            && topic.partitions().iter().all(|p| p.leader() >= 0),
                    )
                })
                .unwrap_or(false);
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "topic {name} has no leaders");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until every partition of every topic the cluster knows (internal ones
    /// included) has `replicas` in-sync replicas: a restarted broker has caught up.
    pub fn wait_in_sync(&self, replicas: usize) {
        let consumer: BaseConsumer = self.client().create().expect("a metadata client");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let lagging = consumer
                .fetch_metadata(None, Duration::from_secs(10))
                .map(|m| {
                    m.topics()
                        .iter()
                        .flat_map(|t| t.partitions())
                        .filter(|p| p.leader() < 0 || p.isr().len() < replicas)
                        .count()
                })
                .unwrap_or(usize::MAX);
            if lagging == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{lagging} partitions short of {replicas} in-sync replicas"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The broker id leading `topic`'s partition `partition`.
    pub fn leader(&self, topic: &str, partition: i32) -> i32 {
        let consumer: BaseConsumer = self.client().create().expect("a metadata client");
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        metadata.topics()[0].partitions()[partition as usize].leader()
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        let Some(dir) = self.owned.take() else {
            return;
        };
        let path = dir.path().display().to_string();
        let _ = Command::new(crate::repo_root().join("scripts/kafka.sh"))
            .args(["stop", "--dir", &path])
            .output();
        if std::thread::panicking() {
            let kept = dir.keep();
            eprintln!("the failed test's Kafka cluster: {}", kept.display());
        }
    }
}
