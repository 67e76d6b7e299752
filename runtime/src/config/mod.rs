//! Pipeline configuration: the TOML model, loading, and validation that reports every
//! problem at once.
//!
//! ```toml
//! data_dir = "weir-data"
//!
//! [kafka]
//! brokers = "embedded"              # or "host1:9092,host2:9092"
//! [kafka.properties]                # passed to librdkafka as they are
//! "security.protocol" = "SASL_SSL"
//! [kafka.consumer_properties]       # consumers only
//! "session.timeout.ms" = 10000
//!
//! [pipelines.word-count]
//! module = "word_count.wasm"
//! inputs = ["text"]
//! output = "counts"
//! ```
//!
//! Relative paths are resolved against the directory of the config file, so a config
//! means the same thing whatever directory Weir is started from.

mod validate;

pub use validate::Problem;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::Limits;

/// The `brokers` value that starts the in-process broker.
pub const EMBEDDED: &str = "embedded";

/// A whole Weir configuration: where it keeps data, how it reaches Kafka, and the
/// pipelines it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Partition state, compiled modules and the instance id live here.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Processing threads of the daemon, shared by all its pipelines: each runs a share
    /// of the partitions with one producer per guarantee. Defaults to the number of
    /// cores.
    #[serde(default)]
    pub threads: Option<u32>,
    pub kafka: KafkaConfig,
    /// The admin HTTP API (status, deploys, metrics).
    #[serde(default)]
    pub admin: AdminConfig,
    /// RocksDB resources the partition stores of this daemon share.
    #[serde(default)]
    pub state: StateConfig,
    /// Host memory the daemon holds for its pipelines besides RocksDB and the guests.
    #[serde(default)]
    pub memory: MemoryConfig,
    /// Pipelines by name. The name appears in logs, metrics and state paths.
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineConfig>,
}

impl Config {
    /// How many processing threads the daemon runs (see `threads`).
    pub fn threads(&self) -> usize {
        self.threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            |n| n as usize,
        )
    }
}

/// What the partition stores of a daemon share (see `state::RocksMemory`): one memory
/// budget, whatever the number of partitions, and a cap on open files per store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StateConfig {
    /// RocksDB block cache and memtables of every partition store together, in bytes.
    pub memory_bytes: u64,
    /// Table files each partition store keeps open.
    pub max_open_files: u32,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            max_open_files: 64,
        }
    }
}

/// Memory the host holds for its pipelines besides RocksDB (`[state]`) and the guests
/// (`limits.memory_limit_bytes` per instance), each bounded daemon-wide: a busy or
/// hostile pipeline meets back-pressure (fetching pauses, a send waits, a checkpoint
/// comes early) instead of growing the process towards the OOM killer. Read at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryConfig {
    /// Records fetched ahead of processing, every input partition of every pipeline
    /// together: each pipeline gets an even share, and each of its input partitions an
    /// even share of that (librdkafka's `queued.max.messages.kbytes`, per partition).
    pub fetch_buffer_bytes: u64,
    /// Outputs, changelog records and dead letters queued for the brokers, every
    /// processing thread's producers together (librdkafka's
    /// `queue.buffering.max.kbytes`, per producer, at least four of the largest record);
    /// a send waits while it is full.
    pub output_buffer_bytes: u64,
    /// State writes awaiting a checkpoint, every partition together: past half of it,
    /// each processing thread holding more than its part of that half checkpoints at
    /// once.
    pub pending_state_bytes: u64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            fetch_buffer_bytes: 256 << 20,
            output_buffer_bytes: 256 << 20,
            pending_state_bytes: 1 << 30,
        }
    }
}

/// The environment variable that supplies the admin token when the config has none.
pub const ADMIN_TOKEN_ENV: &str = "WEIR_ADMIN_TOKEN";

/// The admin HTTP API: JSON status and control, `/metrics`, health and readiness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdminConfig {
    /// Address to listen on; port 0 picks a free port (written to
    /// `<data_dir>/admin-url`). `"off"` disables the API.
    pub listen: String,
    /// Bearer token that mutating calls (deploy, rollback, pause, resume) must carry.
    /// Without one here or in `WEIR_ADMIN_TOKEN`, those calls are disabled.
    pub token: Option<String>,
    /// Bearer token that state reads (`GET /v1/pipelines/<name>/state`) must carry;
    /// the admin token is taken too. Without one, state reads are open to anyone who
    /// reaches the API, like status and metrics.
    pub read_token: Option<String>,
    /// PEM certificate chain (leaf first) to serve the admin API over TLS with; with
    /// `tls_key`. The advertised URL then defaults to `https://<listen>`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Largest module upload accepted, in bytes.
    pub max_upload_bytes: u64,
    /// The URL other instances and clients reach this one at; given as the owner when a
    /// state read arrives at the wrong instance. Defaults to `http://<listen>`.
    pub advertised_url: Option<String>,
    /// Origins of the admin APIs of other instances this one may ask which partitions
    /// they own, and give out to clients to follow: `scheme://host` (any port) or
    /// `scheme://host:port`, matched exactly. Any group member can advertise any URL;
    /// by default only those with this instance's own scheme and host are trusted.
    pub peer_urls: Vec<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".to_owned(),
            token: None,
            max_upload_bytes: 128 << 20,
            advertised_url: None,
            peer_urls: Vec::new(),
            read_token: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl AdminConfig {
    /// Whether the API is switched off.
    pub fn disabled(&self) -> bool {
        self.listen == "off"
    }

    /// The token from the config, else from the environment; empty counts as none.
    pub fn resolved_token(&self) -> Option<String> {
        self.token
            .clone()
            .or_else(|| std::env::var(ADMIN_TOKEN_ENV).ok())
            .filter(|t| !t.is_empty())
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("weir-data")
}

/// How to reach Kafka.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KafkaConfig {
    /// Bootstrap servers, or `"embedded"` for the in-process broker.
    pub brokers: String,
    /// librdkafka properties passed through as they are: security.protocol,
    /// sasl.*, ssl.*, client.id, and tuning. Properties Weir must control for its
    /// guarantees (group.id, isolation.level, transactional.id, ...) are refused.
    #[serde(default)]
    pub properties: BTreeMap<String, PropertyValue>,
    /// librdkafka properties for consumers only (session.timeout.ms, fetch sizes, ...).
    #[serde(default)]
    pub consumer_properties: BTreeMap<String, PropertyValue>,
    /// librdkafka properties for producers only (linger.ms, compression.type, ...).
    #[serde(default)]
    pub producer_properties: BTreeMap<String, PropertyValue>,
    /// The consumer group protocol every pipeline joins its group with.
    #[serde(default)]
    pub group_protocol: GroupProtocol,
    /// Settings of the embedded broker.
    #[serde(default)]
    pub embedded: EmbeddedConfig,
}

/// How a pipeline's consumers form their group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupProtocol {
    /// The classic protocol, with cooperative-sticky assignment: a rebalance moves
    /// only the partitions that must move. Every Kafka version.
    #[default]
    Classic,
    /// KIP-848's protocol: the group coordinator assigns partitions and members
    /// reconcile one by one, with no group-wide stop. Apache Kafka 4.0 and later;
    /// session timeout and heartbeat interval are then broker settings
    /// (`group.consumer.session.timeout.ms`, `group.consumer.heartbeat.interval.ms`).
    Consumer,
}

/// A librdkafka property value; TOML numbers and booleans are accepted for convenience.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PropertyValue {
    String(String),
    Integer(i64),
    Bool(bool),
}

impl std::fmt::Display for PropertyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::String(s) => f.write_str(s),
            Self::Integer(i) => write!(f, "{i}"),
            Self::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// The embedded broker: librdkafka's in-process mock cluster on a loopback port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EmbeddedConfig {
    /// Partitions of every topic it creates.
    pub partitions: i32,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self { partitions: 4 }
    }
}

/// Delivery guarantee of a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    /// Outputs, changelog and input offsets commit in one Kafka transaction.
    #[default]
    ExactlyOnce,
    /// Idempotent producer; offsets are committed after outputs are acknowledged, so a
    /// crash can repeat the records since the last commit.
    AtLeastOnce,
}

/// How a pipeline writes its changelog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangelogFormat {
    /// The checkpoint's marker names it; the state records after it are plain keys
    /// and values.
    #[default]
    Marker,
    /// The checkpoint headers on every record too, as Weir wrote them before
    /// 2026-12-02 and as those versions need them to restore. For a rolling upgrade:
    /// while older instances share the group, a partition can move back to one.
    EveryRecord,
}

/// One pipeline: a module over input topics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineConfig {
    /// The transform component (.wasm).
    pub module: PathBuf,
    /// Topics to consume.
    pub inputs: Vec<String>,
    /// Where outputs go unless the transform names another topic.
    pub output: String,
    /// Other topics the transform may send outputs to by naming them. An output to any
    /// topic that is neither `output` nor listed here fails its record under
    /// `on_error`. Never a changelog, one of the pipeline's inputs, the dead-letter
    /// topic or an internal (`__`) topic.
    #[serde(default)]
    pub extra_outputs: Vec<String>,
    /// Consumer group; defaults to `weir.<pipeline name>`.
    #[serde(default)]
    pub group_id: Option<String>,
    #[serde(default)]
    pub guarantee: Guarantee,
    /// How often each partition checkpoints (commits), in milliseconds.
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// Most records per call into the transform.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Not a pipeline setting (any more): the daemon's processing threads serve every
    /// pipeline, see [`Config::threads`]. Read only to say so.
    #[serde(default, skip_serializing)]
    pub threads: Option<u32>,
    /// What to do with a record the transform fails on.
    #[serde(default)]
    pub on_error: ErrorPolicy,
    /// Where `on_error = "dead-letter"` sends failed records.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Passed to the transform's `init`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: Limits,
    /// Replication factor of the changelog topics Weir creates; -1 uses the broker's
    /// default.
    #[serde(default = "default_replication")]
    pub changelog_replication_factor: i32,
    /// When a newly deployed version is rolled back on its own.
    #[serde(default)]
    pub rollback: RollbackConfig,
    #[serde(default)]
    pub changelog_format: ChangelogFormat,
    /// Event time (contract 0.3 transforms): how far behind a partition's newest
    /// record timestamp a record may be and still be on time, in milliseconds. The
    /// watermark each record meets trails the newest timestamp by this much.
    #[serde(default)]
    pub max_out_of_orderness_ms: u64,
    /// Tables the transform may look keys up in (contract 0.3.1 `tables`), by the name
    /// it uses: each a compacted topic, partitioned like the inputs, that the host
    /// keeps materialized per partition (`[pipelines.NAME.tables.customers]`,
    /// `topic = "customers"`).
    #[serde(default)]
    pub tables: BTreeMap<String, TableConfig>,
}

/// A table a pipeline declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableConfig {
    /// The compacted topic holding the table: the latest record of each key is its
    /// row, a record without a value deletes it.
    pub topic: String,
}

/// Automatic rollback: a new version is on trial for its first records; if too many of
/// them fail, the previous version comes back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RollbackConfig {
    /// How many records (over all partitions) a new version is judged on; 0 turns
    /// automatic rollback off.
    pub trial_records: u64,
    /// Share of failed records over the trial (0.0 to 1.0) that rolls the version back.
    pub max_failure_rate: f64,
}

impl Default for RollbackConfig {
    fn default() -> Self {
        Self {
            trial_records: 1000,
            max_failure_rate: 0.1,
        }
    }
}

fn default_commit_interval_ms() -> u64 {
    100
}

fn default_batch_size() -> u32 {
    256
}

fn default_replication() -> i32 {
    -1
}

impl PipelineConfig {
    /// The consumer group of pipeline `name`.
    pub fn group_id(&self, name: &str) -> String {
        self.group_id
            .clone()
            .unwrap_or_else(|| format!("weir.{name}"))
    }

    pub fn commit_interval(&self) -> Duration {
        Duration::from_millis(self.commit_interval_ms)
    }

    /// The tables as the host reads them.
    pub fn table_specs(&self) -> Vec<crate::table::TableSpec> {
        self.tables
            .iter()
            .map(|(name, table)| crate::table::TableSpec {
                name: name.clone(),
                topic: table.topic.clone(),
            })
            .collect()
    }

    /// The changelog topic holding the state of input `topic` under group `group`.
    pub fn changelog_topic(group: &str, topic: &str) -> String {
        format!("{group}-{topic}-changelog")
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} has {} problem(s):\n{}", problems.len(), validate::render(problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl Config {
    /// Read, parse and validate the config at `path`, resolving relative paths
    /// against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|ParseError(problems)| ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }

    /// Parse and validate config text; relative paths are taken relative to `base`.
    /// Everything wrong is reported in one pass: unknown settings, then a value that
    /// cannot be read (which stops the reading), or else every validation problem.
    pub fn parse(text: &str, base: &Path) -> Result<Self, ParseError> {
        let mut problems = Vec::new();
        let parsed = toml::Deserializer::parse(text).and_then(|document| {
            serde_ignored::deserialize(document, |path| {
                problems.push(validate::unknown_setting(&path.to_string()));
            })
        });
        let mut config: Self = match parsed {
            Ok(config) => config,
            Err(error) => {
                problems.push(validate::unreadable(text, &error));
                return Err(ParseError(problems));
            }
        };
        config.resolve_paths(base);
        problems.extend(validate::validate(&config));
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ParseError(problems))
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        self.data_dir = base.join(&self.data_dir);
        for path in [&mut self.admin.tls_cert, &mut self.admin.tls_key]
            .into_iter()
            .flatten()
        {
            *path = base.join(&*path);
        }
        for pipeline in self.pipelines.values_mut() {
            pipeline.module = base.join(&pipeline.module);
        }
    }

    /// Whether the in-process broker is asked for.
    pub fn embedded(&self) -> bool {
        self.kafka.brokers == EMBEDDED
    }
}

/// Why config text was refused: everything found wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError(pub Vec<Problem>);

/// What to do with a record the transform cannot process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorPolicy {
    /// Drop the record, log it, and go on.
    Skip,
    /// Set the record aside with its error (the dead-letter topic) and go on.
    DeadLetter,
    /// Stop the pipeline; nothing after the last checkpoint is committed.
    #[default]
    Fail,
}
