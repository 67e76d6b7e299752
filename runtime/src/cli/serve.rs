//! `weir serve -c weir.toml`: run every pipeline of a config until SIGTERM or SIGINT,
//! then checkpoint every partition, leave the groups, and exit 0.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use crate::config::{Config, PipelineConfig};
use crate::engine::{Engine, EngineConfig, Limits};
use crate::kafka::ClientSettings;
use crate::kafka::embedded::EmbeddedBroker;
use crate::kafka::topics::{self, TopicSpec};
use crate::pipeline::runner;
use crate::pipeline::worker::PipelineContext;

use super::Exit;

/// How long pipelines get to checkpoint and leave their groups after a signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
pub(super) struct ServeArgs {
    /// The config file.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,

    /// Where compiled modules are cached [default: ~/.cache/weir/compiled].
    #[arg(long, env = "WEIR_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
}

/// A failed start: what to print and how to exit.
struct Failure(Exit, String);

pub(super) fn run(args: ServeArgs) -> Exit {
    match serve(&args) {
        Ok(exit) => exit,
        Err(Failure(exit, message)) => {
            tracing::error!("{message}");
            eprintln!("error: {message}");
            exit
        }
    }
}

fn serve(args: &ServeArgs) -> Result<Exit, Failure> {
    let config = Config::load(&args.config).map_err(|e| Failure(Exit::Usage, e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure(Exit::Failed, format!("cannot start the async runtime: {e}")))?;

    let engine = Arc::new(engine(&config, args)?);
    let mut modules = Vec::new();
    for (name, pipeline) in &config.pipelines {
        let module = engine
            .load_file(&pipeline.module)
            .map_err(|e| Failure(Exit::Module, format!("pipeline {name:?}: {e}")))?;
        tracing::info!(pipeline = %name, module = %module.id().short(), source = ?module.source(), "module loaded");
        modules.push(module);
    }

    let embedded = if config.embedded() {
        Some(start_embedded(&config)?)
    } else {
        None
    };
    let bootstrap = embedded
        .as_ref()
        .map_or(config.kafka.brokers.as_str(), EmbeddedBroker::bootstrap);
    let settings = ClientSettings::new(&config.kafka, bootstrap);

    let mut contexts = Vec::new();
    for ((name, pipeline), module) in config.pipelines.iter().zip(modules) {
        runtime.block_on(prepare_topics(&settings, name, pipeline))?;
        contexts.push((
            Arc::new(PipelineContext {
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
                state_dir: state_dir(&config, name),
            }),
            pipeline.inputs.clone(),
        ));
    }

    let shutdown = Arc::new(AtomicBool::new(false));
    let (done, finished) = mpsc::channel();
    for (ctx, inputs) in contexts {
        let shutdown = shutdown.clone();
        let done = done.clone();
        std::thread::Builder::new()
            .name(format!("weir-{}", ctx.name).chars().take(15).collect())
            .spawn(move || {
                let result = runner::run(ctx.clone(), &inputs, &shutdown);
                let _ = done.send((ctx.name.clone(), result));
            })
            .map_err(|e| Failure(Exit::Failed, format!("cannot start a pipeline thread: {e}")))?;
    }
    drop(done);

    let pipelines = config.pipelines.len();
    let stop = shutdown.clone();
    let (signalled_tx, signalled) = mpsc::channel();
    std::thread::spawn(move || {
        if let Some(signal) = runtime.block_on(wait_for_signal()) {
            tracing::info!(signal, "stopping: checkpointing every partition");
            stop.store(true, Ordering::Release);
            let _ = signalled_tx.send(());
        }
    });

    let mut exit = Exit::Success;
    let mut remaining = pipelines;
    let mut deadline: Option<std::time::Instant> = None;
    while remaining > 0 {
        if deadline.is_none() && signalled.try_recv().is_ok() {
            deadline = Some(std::time::Instant::now() + SHUTDOWN_GRACE);
        }
        match finished.recv_timeout(Duration::from_millis(100)) {
            Ok((name, result)) => {
                remaining -= 1;
                match result {
                    Ok(()) => tracing::info!(pipeline = %name, "pipeline stopped"),
                    Err(error) => {
                        tracing::error!(pipeline = %name, %error, "pipeline failed; stopping the others");
                        eprintln!("error: {error}");
                        exit = Exit::Failed;
                        shutdown.store(true, Ordering::Release);
                        deadline.get_or_insert(std::time::Instant::now() + SHUTDOWN_GRACE);
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if deadline.is_some_and(|d| std::time::Instant::now() > d) {
            eprintln!(
                "error: {remaining} pipeline(s) did not stop within {SHUTDOWN_GRACE:?}; \
                 exiting without their final checkpoint (nothing is lost: uncommitted work \
                 is redone after a restart)"
            );
            return Ok(Exit::Failed);
        }
    }
    drop(embedded);
    Ok(exit)
}

async fn wait_for_signal() -> Option<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).ok()?;
    let mut interrupt = signal(SignalKind::interrupt()).ok()?;
    tokio::select! {
        _ = terminate.recv() => Some("SIGTERM"),
        _ = interrupt.recv() => Some("SIGINT"),
    }
}

fn engine(config: &Config, args: &ServeArgs) -> Result<Engine, Failure> {
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
    Engine::new(EngineConfig {
        limits,
        cache_dir: args.cache_dir.clone().or_else(super::default_cache_dir),
    })
    .map_err(|e| Failure(Exit::Failed, e.to_string()))
}

fn state_dir(config: &Config, pipeline: &str) -> PathBuf {
    config
        .data_dir
        .join("pipelines")
        .join(pipeline)
        .join("state")
}

/// Start the in-process broker with every topic the pipelines use. It starts empty, so
/// local state from an earlier run would be ahead of it: that state is removed.
fn start_embedded(config: &Config) -> Result<EmbeddedBroker, Failure> {
    let failed = |e: String| Failure(Exit::Failed, e);
    let mut broker = EmbeddedBroker::start().map_err(|e| failed(e.to_string()))?;
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
                .map_err(|e| failed(e.to_string()))?;
        }
        let dir = state_dir(config, name);
        if dir.exists() {
            tracing::info!(pipeline = %name, dir = %dir.display(), "the embedded broker starts empty: removing local state of an earlier run");
            std::fs::remove_dir_all(&dir)
                .map_err(|e| failed(format!("cannot remove {}: {e}", dir.display())))?;
        }
    }
    let file = broker.publish_address(&config.data_dir).map_err(|e| {
        failed(format!(
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
) -> Result<(), Failure> {
    let failed = |e: String| Failure(Exit::Failed, format!("pipeline {name:?}: {e}"));
    let existing = topics::partition_counts(settings).map_err(|e| failed(e.to_string()))?;
    let inputs = topics::input_partitions(settings, &existing, &pipeline.inputs)
        .map_err(|e| failed(e.to_string()))?;
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
    topics::ensure(settings, &existing, &specs)
        .await
        .map_err(|e| failed(e.to_string()))
}
