//! The embedded broker: librdkafka's in-process mock cluster, speaking the real Kafka
//! protocol on a loopback port, so `brokers = "embedded"` needs nothing installed.
//!
//! It keeps topics in memory: they are gone when Weir exits. It is for trying Weir and
//! for development, not for data you want to keep.

use std::path::{Path, PathBuf};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use super::KafkaFailure;

/// File in the data directory holding the embedded broker's address while it runs.
pub const BOOTSTRAP_FILE: &str = "embedded-brokers";

/// A running in-process broker. Stops when dropped.
pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
    bootstrap: String,
    bootstrap_file: Option<PathBuf>,
}

// SAFETY: the mock cluster is a librdkafka handle (and the client that owns it);
// librdkafka's handles are thread-safe, and the mock-cluster calls post operations to
// the cluster's own thread. Weir creates topics before sharing the broker and
// afterwards only reads its address and drops it.
unsafe impl Send for EmbeddedBroker {}
// SAFETY: as for Send; `&self` methods only read the address or call thread-safe
// librdkafka functions.
unsafe impl Sync for EmbeddedBroker {}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("bootstrap", &self.bootstrap)
            .finish_non_exhaustive()
    }
}

impl EmbeddedBroker {
    /// Start a one-broker cluster on an ephemeral loopback port.
    pub fn start() -> Result<Self, KafkaFailure> {
        let cluster = MockCluster::new(1)
            .map_err(|e| KafkaFailure::new("cannot start the embedded broker", e))?;
        let bootstrap = cluster.bootstrap_servers();
        Ok(Self {
            cluster,
            bootstrap,
            bootstrap_file: None,
        })
    }

    /// The address Kafka clients connect to.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Create `name` with `partitions` partitions; an existing topic is left alone.
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<(), KafkaFailure> {
        self.cluster.create_topic(name, partitions, 1).map_err(|e| {
            KafkaFailure::new(
                format!("cannot create topic {name:?} on the embedded broker"),
                e,
            )
        })
    }

    /// Write the bootstrap address to `dir/embedded-brokers` so scripts can find it;
    /// the file is removed when the broker stops.
    pub fn publish_address(&mut self, dir: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(BOOTSTRAP_FILE);
        std::fs::write(&path, format!("{}\n", self.bootstrap))?;
        self.bootstrap_file = Some(path.clone());
        Ok(path)
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(path) = &self.bootstrap_file {
            let _ = std::fs::remove_file(path);
        }
    }
}
