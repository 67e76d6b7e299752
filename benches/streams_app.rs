//! Kafka Streams doing the jobs of Weir's word count and tumbling count, for the e2e
//! bench: the Java apps in benches/kstreams (per-partition, RocksDB stores,
//! `exactly_once_v2`), built with Maven on first use and run as a child JVM.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kstreams")
}

/// The app's class path, building it first when its jar is missing.
fn class_path() -> String {
    let target = project().join("target");
    let jar = target.join("weir-kstreams-bench.jar");
    if is_stale(&jar) {
        println!("building the Kafka Streams word count with Maven (benches/kstreams)");
        let status = Command::new("mvn")
            .args(["-q", "-B", "-Dstyle.color=never", "package", "-f"])
            .arg(project().join("pom.xml"))
            .status()
            .expect("mvn runs (install Maven and a JDK 17)");
        assert!(status.success(), "building benches/kstreams failed");
    }
    format!("{}:{}/lib/*", jar.display(), target.display())
}

/// Whether `jar` is missing or older than a source it is built from.
fn is_stale(jar: &Path) -> bool {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let Some(built) = modified(jar) else {
        return true;
    };
    let sources = project().join("src/main/java/dev/weir/bench");
    let mut inputs = vec![project().join("pom.xml")];
    if let Ok(entries) = std::fs::read_dir(&sources) {
        inputs.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
    }
    inputs
        .iter()
        .any(|input| modified(input).is_some_and(|m| m > built))
}

/// Which Kafka Streams app: the class of benches/kstreams it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// `WordCount`: Weir's word-count example.
    WordCount,
    /// `WindowedCount`: Weir's tumbling-count example (1-minute windows, 10 s grace,
    /// emitted when closed).
    WindowedCount,
    /// `EnrichJoin`: Weir's enrichment-join example, with its KTable read from
    /// `table`.
    EnrichJoin { table: &'static str },
}

impl Job {
    fn class(self) -> &'static str {
        match self {
            Job::WordCount => "dev.weir.bench.WordCount",
            Job::WindowedCount => "dev.weir.bench.WindowedCount",
            Job::EnrichJoin { .. } => "dev.weir.bench.EnrichJoin",
        }
    }

    /// Arguments after the ones every app takes.
    fn extra_args(self) -> Vec<&'static str> {
        match self {
            Job::EnrichJoin { table } => vec![table],
            Job::WordCount | Job::WindowedCount => Vec::new(),
        }
    }
}

/// A running Kafka Streams app; stopped (SIGTERM) when dropped.
pub struct StreamsApp {
    child: Child,
    pub application_id: String,
    _state: tempfile::TempDir,
}

impl StreamsApp {
    /// Run `job` from `input` into `output` with `threads` stream threads, committing
    /// every `commit_interval_ms`.
    pub fn start(
        job: Job,
        bootstrap: &str,
        application_id: &str,
        input: &str,
        output: &str,
        threads: usize,
        commit_interval_ms: u64,
    ) -> Self {
        let state = tempfile::tempdir().expect("a state directory");
        let child = Command::new("java")
            .args(["-Xms512m", "-Xmx1g", "-cp", &class_path(), job.class()])
            .args([bootstrap, application_id, input, output])
            .arg(state.path())
            .args([threads.to_string(), commit_interval_ms.to_string()])
            .args(job.extra_args())
            .stdout(Stdio::null())
            .spawn()
            .expect("java runs");
        Self {
            child,
            application_id: application_id.to_owned(),
            _state: state,
        }
    }
}

impl StreamsApp {
    /// Panics, saying so, if the app has exited: it prints why on stderr.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "the Kafka Streams app {} exited ({status}); its stderr above says why",
                self.application_id
            );
        }
    }
}

impl Drop for StreamsApp {
    fn drop(&mut self) {
        // SIGTERM: the app's shutdown hook closes Kafka Streams cleanly.
        // SAFETY: kill has no preconditions; the pid is our child's.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the offsets a group committed, with one client for every reading (a client
/// made per reading would cost the app under measurement a connection each time).
pub struct CommittedReader {
    consumer: BaseConsumer,
    topic: String,
    partitions: i32,
}

impl CommittedReader {
    /// For group `group` over `partitions` partitions of `topic`.
    pub fn new(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Self {
        let consumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("isolation.level", "read_committed")
            .create()
            .expect("an offsets reader");
        Self {
            consumer,
            topic: topic.to_owned(),
            partitions,
        }
    }

    /// Input records the group has committed (what its members processed, exactly
    /// once).
    pub fn committed(&self) -> u64 {
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions {
            tpl.add_partition(&self.topic, p);
        }
        self.consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .map(|offsets| {
                offsets
                    .elements()
                    .iter()
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(o) => Some(o as u64),
                        _ => None,
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
}
