//! `weir serve` as a child process for the benches that measure a whole daemon
//! (`scale`, `neighbour`): starting and stopping it, counting its log events,
//! sampling its threads, connections and memory, and following its groups' progress.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const EXE: &str = env!("CARGO_BIN_EXE_weir-bench-serve");
/// Longest wait for a daemon's groups to commit what they were given.
pub const PATIENCE: Duration = Duration::from_secs(900);

/// The groups' committed input offsets, summed: lines processed and committed.
pub struct Progress {
    consumers: Vec<(BaseConsumer, TopicPartitionList)>,
}

impl Progress {
    /// For each of `groups`: its name, input topic and the topic's partitions.
    pub fn new(bootstrap: &str, groups: &[(String, String, i32)]) -> Self {
        let consumers = groups
            .iter()
            .map(|(group, topic, partitions)| {
                let consumer: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", bootstrap)
                    .set("group.id", group)
                    .create()
                    .expect("a consumer");
                let mut tpl = TopicPartitionList::new();
                for partition in 0..*partitions {
                    tpl.add_partition(topic, partition);
                }
                (consumer, tpl)
            })
            .collect();
        Self { consumers }
    }

    pub fn committed(&self) -> i64 {
        self.consumers
            .iter()
            .map(|(consumer, tpl)| {
                consumer
                    .committed_offsets(tpl.clone(), Duration::from_secs(10))
                    .map_or(0, |committed| {
                        committed
                            .elements()
                            .iter()
                            .map(|e| match e.offset() {
                                Offset::Offset(o) => o,
                                _ => 0,
                            })
                            .sum()
                    })
            })
            .sum()
    }

    /// Wait until `total` lines are committed, calling `meanwhile` at each look.
    pub fn wait_for(&self, total: i64, mut meanwhile: impl FnMut()) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let done = self.committed();
            meanwhile();
            if done >= total {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {done} of {total} lines committed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `weir serve` as a child process, logging JSON at info to a file.
pub struct Serve {
    child: Child,
    log: PathBuf,
    started: Instant,
}

impl Serve {
    pub fn start(config: &Path, log: &Path) -> Self {
        let child = Command::new(EXE)
            .args(["--log-format", "json", "serve", "-c"])
            .arg(config)
            .env(
                "WEIR_LOG",
                std::env::var("WEIR_SCALE_LOG").unwrap_or_else(|_| "info,librdkafka=warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("the log"))
            .spawn()
            .expect("weir serve starts");
        Self {
            child,
            log: log.to_path_buf(),
            started: Instant::now(),
        }
    }

    /// Time since the daemon was started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn count(&self, message: &str) -> usize {
        let needle = format!("\"message\":\"{message}\"");
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(&needle))
            .count()
    }
    pub fn sample(&self) -> Sample {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| -> usize {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        Sample {
            threads: field("Threads:"),
            rss_bytes: field("VmRSS:") << 10,
            connections: established_sockets(pid),
        }
    }

    pub fn stop(mut self) {
        // SAFETY: kill has no preconditions; the pid is our child's.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let status = self.child.wait().expect("weir serve exits");
        assert!(
            status.success(),
            "weir serve failed: see {}",
            self.log.display()
        );
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Sample {
    pub threads: usize,
    pub connections: usize,
    pub rss_bytes: usize,
}

impl Sample {
    pub fn max(self, other: Sample) -> Sample {
        Sample {
            threads: self.threads.max(other.threads),
            connections: self.connections.max(other.connections),
            rss_bytes: self.rss_bytes.max(other.rss_bytes),
        }
    }
}

/// Established outgoing TCP connections of process `pid` (all to the broker here:
/// the admin API only listens).
fn established_sockets(pid: u32) -> usize {
    let inodes: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|target| {
                    let target = target.to_string_lossy().into_owned();
                    Some(
                        target
                            .strip_prefix("socket:[")?
                            .strip_suffix(']')?
                            .to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    ["tcp", "tcp6"]
        .iter()
        .flat_map(|table| {
            std::fs::read_to_string(format!("/proc/{pid}/net/{table}"))
                .unwrap_or_default()
                .lines()
                .skip(1)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // st 01 is ESTABLISHED; field 9 is the inode.
            fields.len() > 9 && fields[3] == "01" && inodes.contains(fields[9])
        })
        .count()
}
