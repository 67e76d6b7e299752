//! A real Kafka-protocol broker for end-to-end tests: Tansu, started on a free loopback
//! port with in-memory storage, stopped when dropped.
//!
//! The binary comes from `$WEIR_TANSU`, else `$WEIR_CACHE/tools/bin/tansu` (where
//! scripts/test.sh installs it), else `tansu` on the PATH.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// A running Tansu broker.
pub struct Tansu {
    child: Child,
    binary: PathBuf,
    pub bootstrap: String,
    _log: tempfile::NamedTempFile,
}

fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WEIR_TANSU") {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("WEIR_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/weir")));
    if let Some(path) = cache
        .map(|c| c.join("tools/bin/tansu"))
        .filter(|p| p.exists())
    {
        return path;
    }
    PathBuf::from("tansu")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Tansu {
    /// Start a broker and wait until it answers metadata requests.
    pub fn start() -> Self {
        let binary = binary();
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = tempfile::NamedTempFile::new().expect("a log file");
        let child = Command::new(&binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("log file"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start Tansu ({}): {e}. Run scripts/test.sh, which installs it, \
                     or set WEIR_TANSU to its path",
                    binary.display()
                )
            });
        let broker = Self {
            child,
            binary,
            bootstrap: format!("127.0.0.1:{port}"),
            _log: log,
        };
        broker.wait_ready();
        broker
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&self.bootstrap).is_err() {
            assert!(
                Instant::now() < deadline,
                "Tansu did not start listening on {}",
                self.bootstrap
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .expect("a metadata client");
        while consumer
            .fetch_metadata(None, Duration::from_secs(2))
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "Tansu at {} does not answer metadata requests",
                self.bootstrap
            );
        }
    }

    /// Create `name` with `partitions` partitions (Tansu stalls producers on topics
    /// that do not exist, so tests create every topic up front).
    pub fn create_topic(&self, name: &str, partitions: i32) {
        let output = Command::new(&self.binary)
            .args(["topic", "create", "--broker"])
            .arg(format!("tcp://{}", self.bootstrap))
            .args(["--partitions", &partitions.to_string(), name])
            .output()
            .expect("tansu topic create runs");
        assert!(
            output.status.success(),
            "creating topic {name} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
