//! A Weir process: the pipelines of one config running against Kafka, from start to a
//! graceful stop. `weir serve` is this plus signal handling; benchmarks and tests embed
//! it directly.

mod memory;
mod reload;
pub mod routing;

pub use reload::Plan;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use crate::config::{Config, PipelineConfig, Problem};
use crate::engine::{Engine, EngineConfig, EngineError, Limits, ModuleId};
use crate::kafka::embedded::EmbeddedBroker;
use crate::kafka::partitioner;
use crate::kafka::topics::{self, TopicError, TopicSpec};
use crate::kafka::{ClientSettings, KafkaFailure};
use crate::metrics::Metrics;
use crate::pipeline::context::PipelineContext;
use crate::pipeline::control::{PartitionSnapshot, Phase, Reply, StateAnswer};
use crate::pipeline::outputs::OutputRules;
use crate::pipeline::pool::ProcessingPool;
use crate::pipeline::runner::{self, GroupContext, OwnedPartitions, PipelineError};
use crate::pipeline::versions::{Change, VersionDeps, VersionError, Versions};
use crate::registry::{Action, Event, Registry, RegistryError};
use crate::state::{RocksMemory, StateQuota};

use memory::{fetch_bounds, output_queue_kbytes};

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
        source: Box<VersionError>,
    },
    #[error(transparent)]
    Registry(RegistryError),
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
    #[error(
        "{0} pipeline(s) did not stop within {SHUTDOWN_GRACE:?}; exiting without their \
         final checkpoint (nothing is lost: uncommitted work is redone after a restart)"
    )]
    StopTimeout(usize),
}

/// Why a daemon operation on a pipeline was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no pipeline named {0:?} runs here")]
    NoSuchPipeline(String),
    #[error(transparent)]
    Version(#[from] VersionError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{0}")]
    BadRequest(String),
}

/// How long a failed pipeline waits before its next start: doubling from 1 s to 1 min.
fn restart_backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.clamp(1, 7).saturating_sub(1)).min(Duration::from_secs(60))
}

/// A run this long ends a pipeline's streak of failures: its next failure waits 1 s
/// again, not the minute that failures months apart would otherwise add up to.
const HEALTHY_RUN: Duration = Duration::from_secs(120);

/// The failure count after a run of `ran` ended in a failure, `failures` before it.
fn failures_after(failures: u32, ran: Duration) -> u32 {
    if ran >= HEALTHY_RUN {
        1
    } else {
        failures.saturating_add(1)
    }
}

/// What a supervised pipeline is doing.
#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    Running,
    /// Failed; restarted at `retry_at` unless something restarts it sooner.
    Failed {
        error: String,
        retry_at: Instant,
    },
    /// Being stopped (removed or restarted by a reload).
    Stopping,
}

/// One supervised pipeline.
struct Supervised {
    config: PipelineConfig,
    ctx: Arc<PipelineContext>,
    inputs: Vec<String>,
    stop: Arc<AtomicBool>,
    /// Increments with each start, so a late report from an old run is ignored.
    generation: u64,
    health: Health,
    /// Failures in a row (see [`failures_after`]).
    failures: u32,
    /// When the current run started.
    started: Instant,
    restarts: u64,
}

/// A pipeline run ended: (name, generation, result).
type Finished = (String, u64, Result<(), PipelineError>);

/// The pipelines of a config, running under supervision: failed pipelines restart
/// with backoff, config reloads touch only what changed, and the admin API deploys,
/// rolls back, pauses and inspects them.
pub struct Daemon {
    config: Mutex<Config>,
    settings: ClientSettings,
    engine: Arc<Engine>,
    /// The memory every partition store of every pipeline shares.
    rocks: RocksMemory,
    registry: Registry,
    metrics: Arc<Metrics>,
    pipelines: Mutex<BTreeMap<String, Supervised>>,
    finished_tx: mpsc::Sender<Finished>,
    finished_rx: Mutex<mpsc::Receiver<Finished>>,
    /// Reports of pipelines being stopped that the run loop received before the
    /// stopping thread took the channel; the stopping thread collects them here.
    stopped: Mutex<Vec<Finished>>,
    /// Where the admin API listens, once it does.
    admin_url: Mutex<Option<String>>,
    /// The processing threads every pipeline's partitions run on.
    pool: Arc<ProcessingPool<GroupContext>>,
    /// Declared last: the broker must outlive the pipelines that use it.
    _embedded: Option<EmbeddedBroker>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("bootstrap", &self.settings.bootstrap)
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// Load every module, start the embedded broker when asked for, and make sure every
    /// pipeline's topics exist. Nothing is consumed yet. Compiled modules are cached in
    /// `cache_dir`, or in the registry in the data directory.
    pub fn prepare(config: &Config, cache_dir: Option<PathBuf>) -> Result<Self, StartError> {
        let registry = Registry::open(&config.data_dir).map_err(StartError::Registry)?;
        let cache_dir = cache_dir.unwrap_or_else(|| registry.compiled_dir());
        let engine = Arc::new(engine(Some(cache_dir))?);
        let embedded = if config.embedded() {
            Some(start_embedded(config)?)
        } else {
            None
        };
        let bootstrap = embedded
            .as_ref()
            .map_or(config.kafka.brokers.as_str(), EmbeddedBroker::bootstrap);
        let settings = ClientSettings::new(&config.kafka, bootstrap).producer_default(
            "queue.buffering.max.kbytes",
            output_queue_kbytes(config).to_string(),
        );
        let pool = ProcessingPool::start(
            &settings,
            &config.data_dir,
            config.threads(),
            config.memory.pending_state_bytes,
        )
        .map_err(|e| StartError::Io(e.to_string()))?;
        let (finished_tx, finished_rx) = mpsc::channel();
        let daemon = Self {
            config: Mutex::new(config.clone()),
            settings,
            engine,
            rocks: RocksMemory::new(
                usize::try_from(config.state.memory_bytes).unwrap_or(usize::MAX),
                config.state.max_open_files,
            ),
            registry,
            metrics: Arc::new(Metrics::new()),
            pipelines: Mutex::new(BTreeMap::new()),
            finished_tx,
            finished_rx: Mutex::new(finished_rx),
            stopped: Mutex::new(Vec::new()),
            admin_url: Mutex::new(None),
            pool: Arc::new(pool),
            _embedded: embedded,
        };
        let mut supervised = BTreeMap::new();
        for (name, pipeline) in &config.pipelines {
            supervised.insert(name.clone(), daemon.supervise(name, pipeline)?);
        }
        *lock(&daemon.pipelines) = supervised;
        Ok(daemon)
    }

    /// Load a pipeline's versions and check its topics: everything that can fail
    /// before it runs.
    fn supervise(&self, name: &str, pipeline: &PipelineConfig) -> Result<Supervised, StartError> {
        if pipeline.limits.max_instances.is_some() {
            tracing::warn!(pipeline = %name, "limits.max_instances is ignored: instances are made on demand, one per owned partition; remove it");
        }
        let transform_config: Arc<[(String, String)]> =
            pipeline.config.clone().into_iter().collect();
        let limits = Arc::new(Limits {
            max_out_of_orderness_ms: pipeline.max_out_of_orderness_ms,
            tables: pipeline.tables.keys().cloned().collect(),
            ..pipeline.limits.clone()
        });
        let versions = Versions::start(
            name,
            VersionDeps {
                engine: self.engine.clone(),
                registry: self.registry.clone(),
                metrics: self.metrics.clone(),
            },
            &pipeline.module,
            transform_config.clone(),
            limits.clone(),
            pipeline.rollback.clone(),
        )
        .map_err(|source| StartError::Module {
            pipeline: name.to_owned(),
            source: Box::new(source),
        })?;
        let input_partitions = self
            .block_on(prepare_topics(&self.settings, name, pipeline))
            .map_err(|source| StartError::Topics {
                pipeline: name.to_owned(),
                source: Box::new(source),
            })?;
        let paused = self.registry.is_paused(name);
        if paused {
            tracing::warn!(pipeline = %name, "the pipeline starts paused, as it was left: `weir resume` it to process");
        }
        let config = lock(&self.config);
        // Each input partition reads a partition of every table too, with the same share.
        let partitions = input_partitions
            .values()
            .map(|&n| u64::try_from(n).unwrap_or(0));
        let readers = 1 + pipeline.tables.len() as u64;
        let fetch = fetch_bounds(&config, partitions.sum::<u64>() * readers);
        let ctx = PipelineContext {
            name: name.to_owned(),
            group: pipeline.group_id(name),
            settings: self.settings.clone(),
            engine: self.engine.clone(),
            versions: Arc::new(versions),
            metrics: self.metrics.clone(),
            paused: AtomicBool::new(paused),
            partitions: OwnedPartitions::default(),
            advertised_url: lock(&self.admin_url)
                .clone()
                .map(OnceLock::from)
                .unwrap_or_default(),
            input_partitions,
            fetch_queue_kbytes: fetch.queued_kbytes,
            fetch_bytes: fetch.fetch_bytes,
            transform_config,
            limits,
            output: pipeline.output.clone(),
            output_rules: OutputRules::pipeline(
                &pipeline.output,
                &pipeline.extra_outputs,
                &pipeline.limits,
            ),
            dead_letter_topic: pipeline.dead_letter_topic.clone(),
            policy: pipeline.on_error,
            guarantee: pipeline.guarantee,
            group_protocol: config.kafka.group_protocol,
            changelog_format: pipeline.changelog_format,
            commit_interval: pipeline.commit_interval(),
            batch_size: pipeline.batch_size as usize,
            state_dir: state_dir(&config, name),
            rocks: self.rocks.clone(),
            state_quota: Arc::new(StateQuota::new(pipeline.limits.max_state_bytes)),
            tables: pipeline.table_specs(),
        };
        Ok(Supervised {
            config: pipeline.clone(),
            ctx: Arc::new(ctx),
            inputs: pipeline.inputs.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            generation: 0,
            health: Health::Stopping,
            failures: 0,
            started: Instant::now(),
            restarts: 0,
        })
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for topic administration")
            .block_on(future)
    }

    /// The brokers the pipelines use (the embedded broker's address when it runs).
    pub fn bootstrap(&self) -> &str {
        &self.settings.bootstrap
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        lock(&self.config).data_dir.clone()
    }

    /// The running config.
    pub fn config(&self) -> Config {
        lock(&self.config).clone()
    }

    /// Record where the admin API listens; pipelines advertise it to their group so
    /// other instances can send state reads here.
    pub fn set_admin_url(&self, url: String) {
        for entry in lock(&self.pipelines).values() {
            let _ = entry.ctx.advertised_url.set(url.clone());
        }
        *lock(&self.admin_url) = Some(url);
    }

    /// Where the admin API listens, once it does.
    pub fn admin_url(&self) -> Option<String> {
        lock(&self.admin_url).clone()
    }

    /// Start a supervised pipeline's run on its own thread.
    fn launch(&self, name: &str, entry: &mut Supervised) {
        entry.generation += 1;
        entry.health = Health::Running;
        entry.started = Instant::now();
        entry.stop = Arc::new(AtomicBool::new(false));
        let ctx = entry.ctx.clone();
        let inputs = entry.inputs.clone();
        let stop = entry.stop.clone();
        let generation = entry.generation;
        let pool = self.pool.clone();
        let done = self.finished_tx.clone();
        let name = name.to_owned();
        self.metrics.pipeline_up(&name, true);
        std::thread::Builder::new()
            .name(format!("weir-{name}").chars().take(15).collect())
            .spawn(move || {
                let result = runner::run(ctx, &inputs, pool, &stop);
                let _ = done.send((name, generation, result));
            })
            .expect("spawning a pipeline thread");
    }

    /// Run every pipeline until `shutdown` is set, restarting failed ones with
    /// backoff, then stop them all with a final checkpoint.
    pub fn run(&self, shutdown: &AtomicBool) -> Result<(), RunError> {
        {
            let mut pipelines = lock(&self.pipelines);
            for (name, entry) in pipelines.iter_mut() {
                self.launch(name, entry);
            }
        }
        while !shutdown.load(Ordering::Acquire) {
            // Locked per wait: a reload stopping pipelines takes the reports meanwhile.
            let report = lock(&self.finished_rx).recv_timeout(Duration::from_millis(100));
            match report {
                Ok(report) => self.on_finished(report),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            self.restart_due();
            self.metrics.state_memory(
                self.rocks.usage(),
                self.rocks.memtable_usage(),
                self.rocks.budget(),
            );
        }
        let names: Vec<String> = lock(&self.pipelines).keys().cloned().collect();
        let stuck = self.stop_pipelines(&names, Instant::now() + SHUTDOWN_GRACE);
        if stuck > 0 {
            // The stuck pipelines may hold a processing thread: exit without it.
            return Err(RunError::StopTimeout(stuck));
        }
        // Before the embedded broker goes, whoever still holds the pool.
        self.pool.shutdown();
        Ok(())
    }

    fn on_finished(&self, (name, generation, result): Finished) {
        let mut pipelines = lock(&self.pipelines);
        let Some(entry) = pipelines.get_mut(&name) else {
            return;
        };
        if entry.generation != generation {
            return;
        }
        if entry.health == Health::Stopping {
            // Whoever is stopping it waits for this report.
            lock(&self.stopped).push((name, generation, result));
            return;
        }
        self.metrics.pipeline_up(&name, false);
        let error = match result {
            Ok(()) => "the pipeline stopped on its own".to_owned(),
            Err(error) => error.to_string(),
        };
        entry.failures = failures_after(entry.failures, entry.started.elapsed());
        let backoff = restart_backoff(entry.failures);
        tracing::error!(pipeline = %name, %error, retry_in_s = backoff.as_secs(), "pipeline failed; the others keep running");
        entry.health = Health::Failed {
            error,
            retry_at: Instant::now() + backoff,
        };
    }

    fn restart_due(&self) {
        let mut pipelines = lock(&self.pipelines);
        let now = Instant::now();
        for (name, entry) in pipelines.iter_mut() {
            if let Health::Failed { retry_at, .. } = entry.health
                && retry_at <= now
            {
                tracing::info!(pipeline = %name, attempt = entry.failures, "restarting the failed pipeline");
                entry.restarts += 1;
                self.metrics.pipeline_restarted(name);
                self.launch(name, entry);
            }
        }
    }

    /// Stop `names` with a final checkpoint each, waiting until `deadline`; returns how
    /// many did not stop in time.
    fn stop_pipelines(&self, names: &[String], deadline: Instant) -> usize {
        let mut waiting: Vec<(String, u64)> = Vec::new();
        {
            let mut pipelines = lock(&self.pipelines);
            for name in names {
                if let Some(entry) = pipelines.get_mut(name) {
                    let running = entry.health == Health::Running;
                    entry.health = Health::Stopping;
                    entry.stop.store(true, Ordering::Release);
                    if running {
                        waiting.push((name.clone(), entry.generation));
                    }
                }
            }
        }
        let finished = lock(&self.finished_rx);
        while !waiting.is_empty() {
            // Reports the run loop took before this thread had the channel.
            let (mut reports, others): (Vec<Finished>, Vec<Finished>) =
                std::mem::take(&mut *lock(&self.stopped))
                    .into_iter()
                    .partition(|(name, generation, _)| {
                        waiting.contains(&(name.clone(), *generation))
                    });
            lock(&self.stopped).extend(others);
            let left = deadline.saturating_duration_since(Instant::now());
            match finished.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(report) => reports.push(report),
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => break,
            }
            for (name, generation, result) in reports {
                let key = (name.clone(), generation);
                if !waiting.contains(&key) {
                    // Another pipeline's report: the run loop's to handle.
                    self.on_finished((name, generation, result));
                    continue;
                }
                waiting.retain(|w| *w != key);
                self.metrics.pipeline_up(&name, false);
                match result {
                    Ok(()) => tracing::info!(pipeline = %name, "pipeline stopped"),
                    Err(error) => {
                        tracing::error!(pipeline = %name, %error, "pipeline failed while stopping")
                    }
                }
            }
        }
        waiting.len()
    }

    /// Apply a new config: only the pipelines that changed are touched. A config that
    /// cannot be applied changes nothing.
    pub fn reload(&self, new: Config) -> Result<Plan, Vec<Problem>> {
        let running = self.config();
        let plan = reload::plan(&running, &new, |name, pipeline| {
            self.module_changed(name, pipeline)
        })?;
        if plan.is_empty() {
            tracing::info!("config reloaded: nothing changed");
            return Ok(plan);
        }
        let mut problems = Vec::new();
        // Stop what goes away or restarts first: a restarted pipeline may reuse names.
        let stopping: Vec<String> = plan.remove.iter().chain(&plan.restart).cloned().collect();
        self.stop_pipelines(&stopping, Instant::now() + SHUTDOWN_GRACE);
        let mut pipelines = lock(&self.pipelines);
        for name in &plan.remove {
            pipelines.remove(name);
            // A pipeline added again later under this name starts fresh, not paused.
            if let Err(error) = self.registry.set_paused(name, false) {
                tracing::warn!(pipeline = %name, %error, "cannot clear the removed pipeline's pause");
            }
            tracing::info!(pipeline = %name, "pipeline removed by the config");
        }
        *lock(&self.config) = new.clone();
        for name in plan.add.iter().chain(&plan.restart) {
            let pipeline = &new.pipelines[name];
            match self.supervise(name, pipeline) {
                Ok(mut entry) => {
                    if let Some(old) = pipelines.get(name) {
                        entry.restarts = old.restarts + 1;
                        self.metrics.pipeline_restarted(name);
                    }
                    self.launch(name, &mut entry);
                    tracing::info!(pipeline = %name, "pipeline started by the config");
                    pipelines.insert(name.clone(), entry);
                }
                Err(error) => {
                    // A restarted pipeline that cannot start with its new settings goes
                    // back to its old ones after the backoff, rather than staying down.
                    if let Some(old) = pipelines.get_mut(name) {
                        old.failures += 1;
                        old.health = Health::Failed {
                            error: format!("the reloaded settings did not start: {error}"),
                            retry_at: Instant::now() + restart_backoff(old.failures),
                        };
                    }
                    problems.push(Problem {
                        at: format!("pipelines.{name}"),
                        message: format!("{error}; the pipeline keeps its previous settings"),
                    });
                }
            }
        }
        for name in &plan.redeploy {
            let Some(entry) = pipelines.get_mut(name) else {
                continue;
            };
            entry.config = new.pipelines[name].clone();
            let deployed = std::fs::read(&entry.config.module)
                .map_err(|e| e.to_string())
                .and_then(|wasm| {
                    entry
                        .ctx
                        .versions
                        .deploy(&wasm, "config", Action::Config)
                        .map_err(|e| e.to_string())
                });
            if let Err(message) = deployed {
                problems.push(Problem {
                    at: format!("pipelines.{name}.module"),
                    message: format!("{message}; the running version stays"),
                });
            }
        }
        tracing::info!(?plan, "config reloaded");
        if problems.is_empty() {
            Ok(plan)
        } else {
            Err(problems)
        }
    }

    /// Whether a pipeline's module file holds other bytes than the config gave it last.
    fn module_changed(&self, name: &str, pipeline: &PipelineConfig) -> bool {
        let Ok(wasm) = std::fs::read(&pipeline.module) else {
            return true;
        };
        let hash = ModuleId::of(&wasm).to_string();
        let events = self.registry.history(name).unwrap_or_default();
        let last_config = events.iter().rev().find(|e| e.action == Action::Config);
        last_config.is_none_or(|e| e.hash != hash)
    }

    fn with_pipeline<R>(
        &self,
        name: &str,
        f: impl FnOnce(&Supervised) -> Result<R, ControlError>,
    ) -> Result<R, ControlError> {
        let pipelines = lock(&self.pipelines);
        let entry = pipelines
            .get(name)
            .ok_or_else(|| ControlError::NoSuchPipeline(name.to_owned()))?;
        f(entry)
    }

    fn versions(&self, name: &str) -> Result<Arc<Versions>, ControlError> {
        self.with_pipeline(name, |e| Ok(e.ctx.versions.clone()))
    }

    /// Deploy a new module version to a pipeline (see [`Versions::deploy`]).
    pub fn deploy(&self, name: &str, wasm: &[u8], by: &str) -> Result<Change, ControlError> {
        Ok(self.versions(name)?.deploy(wasm, by, Action::Deploy)?)
    }

    /// Roll a pipeline back to its previous version.
    pub fn rollback(&self, name: &str, by: &str) -> Result<Change, ControlError> {
        Ok(self.versions(name)?.rollback(by, None, false, None)?)
    }

    /// A pipeline's version history, oldest first.
    pub fn history(&self, name: &str) -> Result<Vec<Event>, ControlError> {
        Ok(self.versions(name)?.history()?)
    }

    /// Pause or resume a pipeline's partitions. Resuming a failed pipeline restarts it
    /// now.
    pub fn set_paused(&self, name: &str, paused: bool) -> Result<(), ControlError> {
        if !lock(&self.pipelines).contains_key(name) {
            return Err(ControlError::NoSuchPipeline(name.to_owned()));
        }
        // Recorded first (outside the lock: it syncs to disk), so that a pause the
        // caller was told about survives a crash.
        self.registry.set_paused(name, paused)?;
        let mut pipelines = lock(&self.pipelines);
        let entry = pipelines
            .get_mut(name)
            .ok_or_else(|| ControlError::NoSuchPipeline(name.to_owned()))?;
        entry.ctx.paused.store(paused, Ordering::Release);
        if !paused && let Health::Failed { retry_at, .. } = &mut entry.health {
            *retry_at = Instant::now();
        }
        tracing::info!(pipeline = %name, paused, "pipeline paused or resumed");
        Ok(())
    }

    /// Every pipeline's status.
    pub fn status(&self) -> Vec<PipelineStatus> {
        lock(&self.pipelines)
            .iter()
            .map(|(name, entry)| status_of(name, entry))
            .collect()
    }

    /// Ready: every pipeline runs and no owned partition is still starting or
    /// restoring.
    pub fn ready(&self) -> bool {
        self.status().iter().all(|p| {
            p.state == "running"
                && p.partitions
                    .iter()
                    .all(|q| matches!(q.phase, Phase::Running | Phase::Paused))
        })
    }

    /// Read a state value: from the partition named, else from the partition the
    /// default partitioner puts `key` in (state keyed like the input records).
    pub fn state_get(
        &self,
        name: &str,
        key: &[u8],
        topic: Option<&str>,
        partition: Option<i32>,
    ) -> Result<StateLookup, ControlError> {
        let (ctx, owned) = self.with_pipeline(name, |e| Ok((e.ctx.clone(), e.inputs.clone())))?;
        let topic = match (topic, owned.as_slice()) {
            (Some(topic), _) => topic.to_owned(),
            (None, [only]) => only.clone(),
            (None, _) => {
                return Err(ControlError::BadRequest(format!(
                    "pipeline {name:?} has several inputs ({}); say which with topic",
                    owned.join(", ")
                )));
            }
        };
        let Some(&partitions) = ctx.input_partitions.get(&topic) else {
            return Err(ControlError::BadRequest(format!(
                "{topic:?} is not an input of pipeline {name:?}"
            )));
        };
        let partition = partition.unwrap_or_else(|| partitioner::partition_of(key, partitions));
        if !(0..partitions).contains(&partition) {
            return Err(ControlError::BadRequest(format!(
                "{topic:?} has partitions 0 to {}",
                partitions - 1
            )));
        }
        let sender = lock(&ctx.partitions)
            .get(&(topic.clone(), partition))
            .map(|owned| owned.commands.clone());
        let Some(sender) = sender else {
            let me = self.admin_url();
            let allowed = lock(&self.config).admin.peer_urls.clone();
            let peers = routing::Peers {
                me: me.as_deref(),
                allowed: &allowed,
            };
            let owner = routing::owner(&self.settings, &ctx.group, name, peers, &topic, partition);
            // The group gives the partition to this instance, but its thread has not
            // started it yet (or is restarting it).
            if owner
                .as_ref()
                .is_some_and(|o| o.admin_url.is_some() && o.admin_url == me)
            {
                return Ok(StateLookup::Owned {
                    topic,
                    partition,
                    answer: Err(Reply::NotReady),
                });
            }
            return Ok(StateLookup::NotOwned {
                topic,
                partition,
                owner,
            });
        };
        let (reply, answer) = mpsc::channel();
        sender.get(key.to_vec(), reply);
        let answer = answer
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or(Err(Reply::NotReady));
        Ok(StateLookup::Owned {
            topic,
            partition,
            answer,
        })
    }
}

/// The answer to a state read.
#[derive(Debug)]
pub enum StateLookup {
    Owned {
        topic: String,
        partition: i32,
        answer: StateAnswer,
    },
    /// Another member of the group owns the partition (`owner` when it could be
    /// found: its admin URL, or its client id and host).
    NotOwned {
        topic: String,
        partition: i32,
        owner: Option<routing::Owner>,
    },
}

/// A pipeline's status, for the API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PipelineStatus {
    pub name: String,
    /// `running`, `paused`, `failed` or `stopping`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub version: u32,
    pub module: String,
    /// Set while the active version is on trial: records seen and failed so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trial: Option<[u64; 2]>,
    pub restarts: u64,
    pub inputs: Vec<String>,
    pub output: String,
    pub partitions: Vec<PartitionSnapshot>,
}

fn status_of(name: &str, entry: &Supervised) -> PipelineStatus {
    let active = entry.ctx.versions.active();
    let (state, error) = match &entry.health {
        Health::Running if entry.ctx.paused.load(Ordering::Acquire) => ("paused", None),
        Health::Running => ("running", None),
        Health::Failed { error, .. } => ("failed", Some(error.clone())),
        Health::Stopping => ("stopping", None),
    };
    let partitions = lock(&entry.ctx.partitions)
        .iter()
        .map(|((topic, partition), owned)| owned.status.snapshot(topic, *partition))
        .collect();
    PipelineStatus {
        name: name.to_owned(),
        state,
        error,
        version: active.version,
        module: active.module.id().to_string(),
        trial: active
            .trial
            .as_ref()
            .filter(|t| !t.is_settled())
            .map(|t| t.counts().into()),
        restarts: entry.restarts,
        inputs: entry.inputs.clone(),
        output: entry.config.output.clone(),
        partitions,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// One engine for all pipelines; each pipeline's instances get that pipeline's limits.
fn engine(cache_dir: Option<PathBuf>) -> Result<Engine, StartError> {
    Engine::new(EngineConfig {
        limits: Limits::default(),
        cache_dir,
    })
    .map_err(StartError::Engine)
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

/// Check the inputs and create the changelogs, output and dead-letter topics. Returns
/// the inputs' partition counts.
async fn prepare_topics(
    settings: &ClientSettings,
    name: &str,
    pipeline: &PipelineConfig,
) -> Result<BTreeMap<String, i32>, TopicError> {
    let existing = topics::partition_counts(settings)?;
    let inputs = topics::input_partitions(settings, &existing, &pipeline.inputs)?;
    topics::check_tables(settings, &existing, &pipeline.table_specs(), &inputs)?;
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
    topics::ensure(settings, &existing, &specs).await?;
    Ok(inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_in_a_row_back_off_and_a_healthy_run_starts_over() {
        let quick = Duration::from_secs(5);
        let mut failures = 0;
        let waits: Vec<u64> = (0..8)
            .map(|_| {
                failures = failures_after(failures, quick);
                restart_backoff(failures).as_secs()
            })
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        failures = failures_after(failures, HEALTHY_RUN);
        assert_eq!(restart_backoff(failures), Duration::from_secs(1));
    }
}
