//! Prometheus metrics of a daemon, served on `/metrics` (OpenMetrics text).
//!
//! Partitions take their handles once ([`Metrics::partition`]) and update plain
//! atomics on the hot path; label sets are hashed only when a partition starts.
//! Gauges of a partition this instance no longer owns are removed, so a dashboard does
//! not show stale lag for partitions that moved.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// A gauge of seconds: Prometheus wants base units, fractions included.
type SecondsGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineLabels {
    pub pipeline: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub pipeline: String,
    pub topic: String,
    pub partition: i32,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub pipeline: String,
    pub topic: String,
    pub partition: i32,
    /// `rejected`, `trap`, `timeout`, `memory`, ... (see `GuestFault::kind`).
    pub kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GapLabels {
    pub pipeline: String,
    pub topic: String,
    pub partition: i32,
    /// `recovered` or `explained` (see `pipeline::position`).
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModuleLabels {
    pub pipeline: String,
    pub version: u32,
    pub hash: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RollbackLabels {
    pub pipeline: String,
    /// `manual` or `automatic`.
    pub trigger: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds() -> Histogram {
    // 50 µs to ~27 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

fn record_counts() -> Histogram {
    // 1 to ~500k records.
    Histogram::new(exponential_buckets(1.0, 4.0, 10))
}

/// Every metric of a daemon.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    records_in: Family<PartitionLabels, Counter>,
    records_out: Family<PartitionLabels, Counter>,
    process_seconds: Histograms<PartitionLabels>,
    guest_errors: Family<ErrorLabels, Counter>,
    dead_letters: Family<PartitionLabels, Counter>,
    guest_log_dropped: Family<PartitionLabels, Counter>,
    consumer_lag: Family<PartitionLabels, Gauge>,
    watermark_lag: Family<PartitionLabels, SecondsGauge>,
    checkpoint_seconds: Histograms<PartitionLabels>,
    checkpoint_records: Histograms<PartitionLabels>,
    state_bytes: Family<PartitionLabels, Gauge>,
    pipeline_state_bytes: Family<PipelineLabels, Gauge>,
    state_quota_bytes: Family<PipelineLabels, Gauge>,
    restore_remaining: Family<PartitionLabels, Gauge>,
    input_gaps: Family<GapLabels, Counter>,
    partition_restarts: Family<PartitionLabels, Counter>,
    module_info: Family<ModuleLabels, Gauge>,
    swaps: Family<PipelineLabels, Counter>,
    rollbacks: Family<RollbackLabels, Counter>,
    swap_pause_seconds: Histograms<PipelineLabels>,
    pipeline_up: Family<PipelineLabels, Gauge>,
    state_memory: Gauge,
    state_memtables: Gauge,
    state_memory_budget: Gauge,
    pipeline_restarts: Family<PipelineLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("weir");
        let records_in = Family::default();
        registry.register(
            "records_in",
            "Input records processed (committed or not)",
            records_in.clone(),
        );
        let records_out = Family::default();
        registry.register(
            "records_out",
            "Output records the transform produced",
            records_out.clone(),
        );
        let process_seconds: Histograms<PartitionLabels> = Family::new_with_constructor(seconds);
        registry.register_with_unit(
            "process_batch",
            "Time one batch spends in the transform",
            Unit::Seconds,
            process_seconds.clone(),
        );
        let guest_errors = Family::default();
        registry.register(
            "guest_errors",
            "Records the transform failed on, by kind",
            guest_errors.clone(),
        );
        let dead_letters = Family::default();
        registry.register(
            "dead_letters",
            "Records sent to the dead-letter topic",
            dead_letters.clone(),
        );
        let guest_log_dropped = Family::default();
        registry.register(
            "guest_log_lines_dropped",
            "Guest log lines (stdout, stderr, the log import) over the instance's rate, dropped",
            guest_log_dropped.clone(),
        );
        let consumer_lag = Family::default();
        registry.register(
            "consumer_lag",
            "Records between the partition's high watermark and the next record to process",
            consumer_lag.clone(),
        );
        let watermark_lag = Family::default();
        registry.register_with_unit(
            "watermark_lag",
            "How far the partition's watermark trails the wall clock (event-time transforms)",
            Unit::Seconds,
            watermark_lag.clone(),
        );
        let checkpoint_seconds: Histograms<PartitionLabels> = Family::new_with_constructor(seconds);
        registry.register_with_unit(
            "checkpoint",
            "Time a checkpoint takes (changelog, flush, commit, state write)",
            Unit::Seconds,
            checkpoint_seconds.clone(),
        );
        let checkpoint_records: Histograms<PartitionLabels> =
            Family::new_with_constructor(record_counts);
        registry.register(
            "checkpoint_changelog_records",
            "State changes one checkpoint writes to the changelog",
            checkpoint_records.clone(),
        );
        let state_bytes = Family::default();
        registry.register_with_unit(
            "state_size",
            "Size of the partition's state store on disk",
            Unit::Bytes,
            state_bytes.clone(),
        );
        let pipeline_state_bytes = Family::default();
        registry.register_with_unit(
            "pipeline_state_size",
            "Size of the pipeline's state stores on this daemon's disk, all its partitions \
             together (what limits.max_state_bytes bounds)",
            Unit::Bytes,
            pipeline_state_bytes.clone(),
        );
        let state_quota_bytes = Family::default();
        registry.register_with_unit(
            "state_quota",
            "limits.max_state_bytes of the pipeline (absent without a limit)",
            Unit::Bytes,
            state_quota_bytes.clone(),
        );
        let restore_remaining = Family::default();
        registry.register(
            "restore_remaining_records",
            "Changelog records still to read before the partition runs",
            restore_remaining.clone(),
        );
        let input_gaps = Family::default();
        registry.register(
            "input_gaps",
            "Forward gaps between a partition's position and the first record fetched after \
             a seek: `recovered` when seeking back found the records, `explained` when they \
             do not exist (transaction markers, compaction, retention)",
            input_gaps.clone(),
        );
        let partition_restarts = Family::default();
        registry.register(
            "partition_restarts",
            "Partitions restarted from their last checkpoint while this instance kept them \
             (the broker fenced a transaction that outlived transaction.timeout.ms)",
            partition_restarts.clone(),
        );
        let module_info = Family::default();
        registry.register(
            "module_version",
            "The module version a pipeline runs (1 for the active one)",
            module_info.clone(),
        );
        let swaps = Family::default();
        registry.register(
            "module_swaps",
            "Module versions published to a running pipeline",
            swaps.clone(),
        );
        let rollbacks = Family::default();
        registry.register(
            "module_rollbacks",
            "Rollbacks to the previous module version",
            rollbacks.clone(),
        );
        let swap_pause_seconds: Histograms<PipelineLabels> = Family::new_with_constructor(seconds);
        registry.register_with_unit(
            "swap_pause",
            "How long a partition stopped processing to switch module versions",
            Unit::Seconds,
            swap_pause_seconds.clone(),
        );
        let pipeline_up = Family::default();
        registry.register(
            "pipeline_up",
            "1 while the pipeline runs, 0 when it failed or stopped",
            pipeline_up.clone(),
        );
        let pipeline_restarts = Family::default();
        registry.register(
            "pipeline_restarts",
            "Restarts of a pipeline (after a failure or a config change)",
            pipeline_restarts.clone(),
        );
        let state_memory = Gauge::default();
        registry.register_with_unit(
            "state_memory",
            "RocksDB memory every partition store shares: block cache and the memtables \
             charged to it",
            Unit::Bytes,
            state_memory.clone(),
        );
        let state_memtables = Gauge::default();
        registry.register_with_unit(
            "state_memtables",
            "The memtables' part of weir_state_memory_bytes",
            Unit::Bytes,
            state_memtables.clone(),
        );
        let state_memory_budget = Gauge::default();
        registry.register_with_unit(
            "state_memory_budget",
            "The budget of weir_state_memory_bytes ([state] memory_bytes)",
            Unit::Bytes,
            state_memory_budget.clone(),
        );
        Self {
            registry,
            records_in,
            records_out,
            process_seconds,
            guest_errors,
            dead_letters,
            guest_log_dropped,
            consumer_lag,
            watermark_lag,
            checkpoint_seconds,
            checkpoint_records,
            state_bytes,
            pipeline_state_bytes,
            state_quota_bytes,
            restore_remaining,
            input_gaps,
            partition_restarts,
            module_info,
            swaps,
            rollbacks,
            swap_pause_seconds,
            pipeline_up,
            pipeline_restarts,
            state_memory,
            state_memtables,
            state_memory_budget,
        }
    }

    /// The metrics in OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// The metrics in the Prometheus text format (0.0.4), for scrapers and tools
    /// that do not ask for OpenMetrics (promtool, older agents).
    pub fn encode_prometheus(&self) -> String {
        to_prometheus_text(&self.encode())
    }

    /// Handles for one partition.
    pub fn partition(&self, pipeline: &str, topic: &str, partition: i32) -> PartitionMetrics {
        let labels = PartitionLabels {
            pipeline: pipeline.to_owned(),
            topic: topic.to_owned(),
            partition,
        };
        PartitionMetrics {
            records_in: self.records_in.get_or_create(&labels).clone(),
            records_out: self.records_out.get_or_create(&labels).clone(),
            process_seconds: self.process_seconds.get_or_create(&labels).clone(),
            dead_letters: self.dead_letters.get_or_create(&labels).clone(),
            guest_log_dropped: self.guest_log_dropped.get_or_create(&labels).clone(),
            consumer_lag: self.consumer_lag.get_or_create(&labels).clone(),
            watermark_lag: self.watermark_lag.clone(),
            checkpoint_seconds: self.checkpoint_seconds.get_or_create(&labels).clone(),
            checkpoint_records: self.checkpoint_records.get_or_create(&labels).clone(),
            state_bytes: self.state_bytes.get_or_create(&labels).clone(),
            restore_remaining: self.restore_remaining.get_or_create(&labels).clone(),
            swap_pause_seconds: self
                .swap_pause_seconds
                .get_or_create(&PipelineLabels {
                    pipeline: pipeline.to_owned(),
                })
                .clone(),
            guest_errors: self.guest_errors.clone(),
            input_gaps: self.input_gaps.clone(),
            restarts: self.partition_restarts.get_or_create(&labels).clone(),
            labels,
        }
    }

    /// Forget the gauges of a partition this instance let go of.
    pub fn release_partition(&self, pipeline: &str, topic: &str, partition: i32) {
        let labels = PartitionLabels {
            pipeline: pipeline.to_owned(),
            topic: topic.to_owned(),
            partition,
        };
        self.consumer_lag.remove(&labels);
        self.watermark_lag.remove(&labels);
        self.state_bytes.remove(&labels);
        self.restore_remaining.remove(&labels);
    }

    /// Record that `pipeline` now runs `version`.
    pub fn module_active(
        &self,
        pipeline: &str,
        previous: Option<(u32, &str)>,
        version: u32,
        hash: &str,
    ) {
        if let Some((version, hash)) = previous {
            self.module_info.remove(&ModuleLabels {
                pipeline: pipeline.to_owned(),
                version,
                hash: hash.to_owned(),
            });
        }
        self.module_info
            .get_or_create(&ModuleLabels {
                pipeline: pipeline.to_owned(),
                version,
                hash: hash.to_owned(),
            })
            .set(1);
    }

    pub fn swapped(&self, pipeline: &str) {
        self.swaps.get_or_create(&pipeline_labels(pipeline)).inc();
    }

    pub fn rolled_back(&self, pipeline: &str, automatic: bool) {
        let trigger = if automatic { "automatic" } else { "manual" };
        self.rollbacks
            .get_or_create(&RollbackLabels {
                pipeline: pipeline.to_owned(),
                trigger: trigger.to_owned(),
            })
            .inc();
    }

    /// The shared RocksDB memory's use and budget, in bytes.
    pub fn state_memory(&self, used: usize, memtables: usize, budget: usize) {
        let gauge = |g: &Gauge, v: usize| g.set(i64::try_from(v).unwrap_or(i64::MAX));
        gauge(&self.state_memory, used);
        gauge(&self.state_memtables, memtables);
        gauge(&self.state_memory_budget, budget);
    }

    /// The disk the pipeline's state takes on this daemon, and its quota if any.
    pub fn pipeline_state(&self, pipeline: &str, used: u64, quota: Option<u64>) {
        let labels = pipeline_labels(pipeline);
        let bytes = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.pipeline_state_bytes
            .get_or_create(&labels)
            .set(bytes(used));
        match quota {
            Some(quota) => {
                self.state_quota_bytes
                    .get_or_create(&labels)
                    .set(bytes(quota));
            }
            None => {
                self.state_quota_bytes.remove(&labels);
            }
        }
    }

    pub fn pipeline_up(&self, pipeline: &str, up: bool) {
        self.pipeline_up
            .get_or_create(&pipeline_labels(pipeline))
            .set(i64::from(up));
    }

    pub fn pipeline_restarted(&self, pipeline: &str) {
        self.pipeline_restarts
            .get_or_create(&pipeline_labels(pipeline))
            .inc();
    }
}

/// OpenMetrics text to Prometheus text: counters are described under their sample
/// name (`x_total`, not `x`), and the `UNIT` and `EOF` lines go.
fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let described = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        text.push_str(described.as_deref().unwrap_or(line));
        text.push('\n');
    }
    text
}

fn pipeline_labels(pipeline: &str) -> PipelineLabels {
    PipelineLabels {
        pipeline: pipeline.to_owned(),
    }
}

/// One partition's metric handles.
#[derive(Debug, Clone)]
pub struct PartitionMetrics {
    pub records_in: Counter,
    pub records_out: Counter,
    pub process_seconds: Histogram,
    pub dead_letters: Counter,
    pub guest_log_dropped: Counter,
    pub consumer_lag: Gauge,
    /// Exported only for event-time transforms, once they have a watermark.
    watermark_lag: Family<PartitionLabels, SecondsGauge>,
    pub checkpoint_seconds: Histogram,
    pub checkpoint_records: Histogram,
    pub state_bytes: Gauge,
    pub restore_remaining: Gauge,
    pub swap_pause_seconds: Histogram,
    guest_errors: Family<ErrorLabels, Counter>,
    input_gaps: Family<GapLabels, Counter>,
    pub restarts: Counter,
    labels: PartitionLabels,
}

impl PartitionMetrics {
    /// How far the partition's watermark trails the wall clock, given in ms.
    pub fn set_watermark_lag(&self, lag_ms: i64) {
        self.watermark_lag
            .get_or_create(&self.labels)
            .set(lag_ms as f64 / 1000.0);
    }

    /// Count a record the transform failed on (rare: the label set is built here).
    pub fn guest_error(&self, kind: &str) {
        self.guest_errors
            .get_or_create(&ErrorLabels {
                pipeline: self.labels.pipeline.clone(),
                topic: self.labels.topic.clone(),
                partition: self.labels.partition,
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Count a forward gap found after a seek (rare: the label set is built here).
    pub fn input_gap(&self, outcome: &str) {
        self.input_gaps
            .get_or_create(&GapLabels {
                pipeline: self.labels.pipeline.clone(),
                topic: self.labels.topic.clone(),
                partition: self.labels.partition,
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_handles_feed_the_encoded_text() {
        let metrics = Metrics::new();
        let p = metrics.partition("wc", "text", 3);
        p.records_in.inc_by(5);
        p.guest_error("rejected");
        p.consumer_lag.set(7);
        metrics.module_active("wc", None, 2, "abc");
        let text = metrics.encode();
        assert!(
            text.contains(r#"weir_records_in_total{pipeline="wc",topic="text",partition="3"} 5"#),
            "{text}"
        );
        assert!(text.contains(r#"kind="rejected""#), "{text}");
        assert!(
            text.contains(r#"weir_module_version{pipeline="wc",version="2",hash="abc"} 1"#),
            "{text}"
        );
        let prometheus = metrics.encode_prometheus();
        assert!(
            prometheus.contains("# TYPE weir_records_in_total counter"),
            "{prometheus}"
        );
        assert!(!prometheus.contains("# EOF"));
        metrics.release_partition("wc", "text", 3);
        assert!(!metrics.encode().contains("weir_consumer_lag{"));
    }
}
