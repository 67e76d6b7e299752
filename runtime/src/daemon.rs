//! A Weir process: the pipelines of one config running against Kafka, from start to a
//! graceful stop. `weir serve` is this plus signal handling; benchmarks and tests embed
//! it directly.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use crate::config::{Config, PipelineConfig};
use crate::engine::{Engine, EngineConfig, EngineError, Limits};
use crate::kafka::embedded::EmbeddedBroker;
use crate::kafka::topics::{self, TopicError, TopicSpec};
use crate::kafka::{ClientSettings, KafkaFailure};
use crate::pipeline::runner::{self, PipelineError};
use crate::pipeline::worker::PipelineContext;

/// How long pipelines get to checkpoint and leave their groups after a stop request.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Why a daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start the engine: {0}")]
    Engine(EngineError),
    #[error("pipeline {pipeline:?}: {source}")]
    Module {
        pipeline: String,
        #[source]
        source: EngineError,
    },
    #[error(transparent)]
    Embedded(KafkaFailure),
    #[error("pipeline {pipeline:?}: {source}")]
    Topics {
        pipeline: String,
        #[source]
        source: Box<TopicError>,
    },
    #[error("{0}")]
    Io(String),
}

/// Why a running daemon stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(
        "{0} pipeline(s) did not stop within {SHUTDOWN_GRACE:?}; exiting without their \
         final checkpoint (nothing is lost: uncommitted work is redone after a restart)"
    )]
    StopTimeout(usize),
}

/// The pipelines of a config, ready to run.
pub struct Daemon {
    pipelines: Vec<(Arc<PipelineContext>, Vec<String>)>,
    settings: ClientSettings,
    /// Declared last: the broker must outlive the pipelines that use it.
    embedded: Option<EmbeddedBroker>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("bootstrap", &self.settings.bootstrap)
            .field("pipelines", &self.pipelines.len())
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// Load every module, start the embedded broker when asked for, and make sure every
    /// pipeline's topics exist. Nothing is consumed yet.
    pub fn prepare(config: &Config, cache_dir: Option<PathBuf>) -> Result<Self, StartError> {
        let engine = Arc::new(engine(config, cache_dir)?);
        let mut modules = Vec::new();
        for (name, pipeline) in &config.pipelines {
            let module =
                engine
                    .load_file(&pipeline.module)
                    .map_err(|source| StartError::Module {
                        pipeline: name.clone(),
                        source,
                    })?;
            tracing::info!(pipeline = %name, module = %module.id().short(), source = ?module.source(), "module loaded");
            modules.push(module);
        }

        let embedded = if config.embedded() {
            Some(start_embedded(config)?)
        } else {
            None
        };
        let bootstrap = embedded
            .as_ref()
            .map_or(config.kafka.brokers.as_str(), EmbeddedBroker::bootstrap);
        let settings = ClientSettings::new(&config.kafka, bootstrap);

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StartError::Io(format!("cannot start the async runtime: {e}")))?;
        let mut pipelines = Vec::new();
        for ((name, pipeline), module) in config.pipelines.iter().zip(modules) {
            runtime
                .block_on(prepare_topics(&settings, name, pipeline))
                .map_err(|source| StartError::Topics {
                    pipeline: name.clone(),
                    source: Box::new(source),
                })?;
            let ctx = PipelineContext {
                name: name.clone(),
                group: pipeline.group_id(name),
                settings: settings.clone(),
                engine: engine.clone(),
                module,
                transform_config: pipeline.config.clone().into_iter().collect(),
                limits: Arc::new(pipeline.limits.clone()),
                output: pipeline.output.clone(),
                dead_letter_topic: pipeline.dead_letter_topic.clone(),
                policy: pipeline.on_error,
                guarantee: pipeline.guarantee,
                commit_interval: pipeline.commit_interval(),
                batch_size: pipeline.batch_size as usize,
                state_dir: state_dir(config, name),
            };
            pipelines.push((Arc::new(ctx), pipeline.inputs.clone()));
        }
        Ok(Self {
            pipelines,
            settings,
            embedded,
        })
    }

    /// The brokers the pipelines use (the embedded broker's address when it runs).
    pub fn bootstrap(&self) -> &str {
        &self.settings.bootstrap
    }

    /// Run every pipeline until `shutdown` is set or one fails (which stops the others),
    /// then wait for their final checkpoints.
    pub fn run(self, shutdown: &Arc<AtomicBool>) -> Result<(), RunError> {
        let (done, finished) = mpsc::channel();
        let total = self.pipelines.len();
        for (ctx, inputs) in self.pipelines {
            let shutdown = shutdown.clone();
            let done = done.clone();
            std::thread::Builder::new()
                .name(format!("weir-{}", ctx.name).chars().take(15).collect())
                .spawn(move || {
                    let result = runner::run(ctx.clone(), &inputs, &shutdown);
                    let _ = done.send((ctx.name.clone(), result));
                })
                .expect("spawning a pipeline thread");
        }
        drop(done);

        let mut first_error = None;
        let mut remaining = total;
        let mut deadline: Option<Instant> = None;
        while remaining > 0 {
            if deadline.is_none() && shutdown.load(Ordering::Acquire) {
                deadline = Some(Instant::now() + SHUTDOWN_GRACE);
            }
            match finished.recv_timeout(Duration::from_millis(100)) {
                Ok((name, result)) => {
                    remaining -= 1;
                    match result {
                        Ok(()) => tracing::info!(pipeline = %name, "pipeline stopped"),
                        Err(error) => {
                            tracing::error!(pipeline = %name, %error, "pipeline failed; stopping the others");
                            shutdown.store(true, Ordering::Release);
                            first_error.get_or_insert(error);
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                return Err(RunError::StopTimeout(remaining));
            }
        }
        drop(self.embedded);
        match first_error {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }
}

fn engine(config: &Config, cache_dir: Option<PathBuf>) -> Result<Engine, StartError> {
    // One engine for all pipelines: its pool must fit the largest memory cap and every
    // pipeline's instances.
    let pipelines = config.pipelines.values();
    let limits = Limits {
        memory_limit_bytes: pipelines
            .clone()
            .map(|p| p.limits.memory_limit_bytes)
            .max()
            .unwrap_or_default(),
        max_instances: pipelines.map(|p| p.limits.max_instances).sum(),
        ..Limits::default()
    };
    Engine::new(EngineConfig { limits, cache_dir }).map_err(StartError::Engine)
}

/// Where a pipeline's partition stores live.
pub fn state_dir(config: &Config, pipeline: &str) -> PathBuf {
    config
        .data_dir
        .join("pipelines")
        .join(pipeline)
        .join("state")
}

/// Start the in-process broker with every topic the pipelines use. It starts empty, so
/// local state from an earlier run would be ahead of it: that state is removed.
fn start_embedded(config: &Config) -> Result<EmbeddedBroker, StartError> {
    let mut broker = EmbeddedBroker::start().map_err(StartError::Embedded)?;
    let partitions = config.kafka.embedded.partitions;
    for (name, pipeline) in &config.pipelines {
        let group = pipeline.group_id(name);
        let mut topics: Vec<String> = pipeline.inputs.clone();
        topics.extend(
            pipeline
                .inputs
                .iter()
                .map(|t| PipelineConfig::changelog_topic(&group, t)),
        );
        topics.push(pipeline.output.clone());
        topics.extend(pipeline.dead_letter_topic.clone());
        for topic in topics {
            broker
                .create_topic(&topic, partitions)
                .map_err(StartError::Embedded)?;
        }
        let dir = state_dir(config, name);
        if dir.exists() {
            tracing::info!(pipeline = %name, dir = %dir.display(), "the embedded broker starts empty: removing local state of an earlier run");
            std::fs::remove_dir_all(&dir)
                .map_err(|e| StartError::Io(format!("cannot remove {}: {e}", dir.display())))?;
        }
    }
    let file = broker.publish_address(&config.data_dir).map_err(|e| {
        StartError::Io(format!(
            "cannot write to {}: {e}",
            config.data_dir.display()
        ))
    })?;
    tracing::info!(
        bootstrap = broker.bootstrap(),
        file = %file.display(),
        partitions,
        "embedded Kafka broker running; any Kafka client can connect to it"
    );
    Ok(broker)
}

/// Check the inputs and create the changelogs, output and dead-letter topics.
async fn prepare_topics(
    settings: &ClientSettings,
    name: &str,
    pipeline: &PipelineConfig,
) -> Result<(), TopicError> {
    let existing = topics::partition_counts(settings)?;
    let inputs = topics::input_partitions(settings, &existing, &pipeline.inputs)?;
    let group = pipeline.group_id(name);
    let widest = inputs.values().copied().max().unwrap_or(1);
    let mut specs: Vec<TopicSpec> = inputs
        .iter()
        .map(|(topic, &partitions)| TopicSpec {
            name: PipelineConfig::changelog_topic(&group, topic),
            partitions,
            replication: pipeline.changelog_replication_factor,
            compacted: true,
            exact_partitions: true,
        })
        .collect();
    for topic in std::iter::once(&pipeline.output).chain(&pipeline.dead_letter_topic) {
        specs.push(TopicSpec {
            name: topic.clone(),
            partitions: widest,
            replication: -1,
            compacted: false,
            exact_partitions: false,
        });
    }
    topics::ensure(settings, &existing, &specs).await
}
