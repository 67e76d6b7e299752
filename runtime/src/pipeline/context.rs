//! What a pipeline's partitions share, and why one of them
//! stops without being asked to.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::config::{ChangelogFormat, Guarantee};
use crate::engine::{Engine, EngineError, Limits};
use crate::kafka::{ClientSettings, KafkaFailure};
use crate::metrics::Metrics;
use crate::state::changelog::RestoreError;
use crate::state::{RocksMemory, StateError, StateQuota};

use super::outputs::OutputRules;
use super::runner::OwnedPartitions;
use super::versions::{VersionError, Versions};
use super::{BatchError, ErrorPolicy};

/// What a pipeline's partitions share.
#[derive(Debug)]
pub struct PipelineContext {
    pub name: String,
    pub group: String,
    pub settings: ClientSettings,
    pub engine: Arc<Engine>,
    /// The module versions; partitions follow the active one.
    pub versions: Arc<Versions>,
    pub metrics: Arc<Metrics>,
    /// Set by the admin API: partitions checkpoint and stop fetching until cleared.
    pub paused: AtomicBool,
    /// The partitions this member owns now.
    pub partitions: OwnedPartitions,
    /// The admin API's URL, advertised to the group in the consumer's client id.
    pub advertised_url: OnceLock<String>,
    /// Partition counts of the inputs, as of the pipeline's start.
    pub input_partitions: BTreeMap<String, i32>,
    /// Its share of `[memory] fetch_buffer_bytes`, for each input partition: what
    /// librdkafka may queue ahead of processing, and the size of one fetch.
    pub fetch_queue_kbytes: u64,
    pub fetch_bytes: u64,
    pub transform_config: Arc<[(String, String)]>,
    pub limits: Arc<Limits>,
    pub output: String,
    /// What the transform may send: to `output` and the `extra_outputs`, within the
    /// output limits.
    pub output_rules: OutputRules,
    pub dead_letter_topic: Option<String>,
    pub policy: ErrorPolicy,
    pub guarantee: Guarantee,
    pub group_protocol: crate::config::GroupProtocol,
    pub changelog_format: ChangelogFormat,
    pub commit_interval: Duration,
    pub batch_size: usize,
    /// Partition stores live in `<state_dir>/<topic>-<partition>`.
    pub state_dir: PathBuf,
    /// The memory the partition stores share (with every pipeline of the daemon).
    pub rocks: RocksMemory,
    /// The disk the pipeline's partition stores take on this daemon, and its limit.
    pub state_quota: Arc<StateQuota>,
    /// The tables each partition keeps materialized (`crate::table`).
    pub tables: Vec<crate::table::TableSpec>,
}

impl PipelineContext {
    pub fn changelog_topic(&self, topic: &str) -> String {
        crate::config::PipelineConfig::changelog_topic(&self.group, topic)
    }
}

/// Why a partition (or a processing thread, for all of its partitions) stopped without
/// being asked to.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error(transparent)]
    Kafka(#[from] KafkaFailure),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot restore partition state: {0}")]
    Restore(#[from] RestoreError),
    #[error("cannot start the transform: {0}")]
    Engine(#[from] EngineError),
    #[error("offset {offset}: {source}")]
    Batch {
        offset: i64,
        #[source]
        source: BatchError,
    },
    #[error(
        "after seeking {topic}/{partition} to offset {expected}, fetches disagree on the \
         first record there ({first}, then {then}): not processing past records that may \
         exist. The pipeline restarts from its last checkpoint; if this repeats, check the \
         brokers' logs for that partition"
    )]
    UnsettledGap {
        topic: String,
        partition: i32,
        expected: i64,
        first: i64,
        then: i64,
    },
    #[error(
        "the local rows of table {table:?} are read to offset {rows}, past where the \
         partition's checkpoint had read the table ({read}): the local state does not \
         belong to this checkpoint. Stop Weir, delete this partition's state directory \
         and start again to rebuild it"
    )]
    TableAhead { table: String, rows: i64, read: i64 },
    #[error(
        "table {table:?} was read from topic {was:?}, and the config now reads it from \
         {now:?}: its rows and offsets belong to the other topic. Give the table a new \
         name, or stop Weir and delete the pipeline's state directory to read it afresh"
    )]
    TableMoved {
        table: String,
        was: String,
        now: String,
    },
    #[error("librdkafka gave no queue of its own for the partition (a Weir bug)")]
    NoQueue,
    /// The partition was revoked while starting; nothing to clean up.
    #[error("stopped while starting")]
    Stopped,
    #[error(
        "a processing thread panicked: {0} (a Weir bug; nothing after the last checkpoint was committed)"
    )]
    Panicked(String),
    #[error(
        "changelog record at offset {offset} of {topic:?} is not one Weir wrote (malformed \
         checkpoint headers, or no checkpoint marker before it): the topic is shared with \
         something else. Give the pipeline its own group_id"
    )]
    ForeignChangelog { topic: String, offset: i64 },
    #[error("cannot change module versions: {0}")]
    Version(Box<VersionError>),
    /// After a commit that went unanswered, whether it committed could not be found
    /// out: going back to the last checkpoint might redo committed records, so the
    /// pipeline restarts, from what the group committed.
    #[error("a transaction's commit went unanswered and could not be settled: {0}")]
    Unsettled(Box<TaskError>),
    /// The processing thread this partition ran on failed for all its partitions (its
    /// producer or transaction); the pipeline restarts from its last checkpoint.
    #[error("its processing thread failed: {0}")]
    Neighbour(String),
    /// The running version failed its trial and was rolled back; the thread redoes the
    /// interval with the restored version (never leaves the thread).
    #[error("module version {version} failed its trial")]
    TrialFailed { version: u32 },
}

impl TaskError {
    /// Whether the broker fenced the thread's producer: its transaction outlived
    /// `transaction.timeout.ms`, or another producer took its transactional id.
    pub fn is_fenced(&self) -> bool {
        matches!(self, Self::Kafka(failure) if failure.is_fenced())
    }
}
