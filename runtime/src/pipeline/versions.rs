//! The module versions of one pipeline: which one is active, deploys, rollbacks, and
//! the trial that rolls a bad new version back on its own.
//!
//! A deploy does all the slow and risky work before anything changes: compile (or read
//! the compiled cache), check the contract, run `init` on an empty state. Only then is
//! the version recorded in the registry and published. Publishing is one atomic
//! pointer swap; each partition notices it at its next checkpoint boundary and
//! switches there, so no transaction mixes versions and processing stops only for the
//! new instance's start.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::config::RollbackConfig;
use crate::engine::{Engine, EngineError, InstanceLabels, Limits, Module, ModuleId};
use crate::metrics::Metrics;
use crate::registry::history::{self, Startup};
use crate::registry::{Action, Event, Registry, RegistryError, timestamp};
use crate::state::PartitionState;

/// The version partitions should run.
#[derive(Debug)]
pub struct Active {
    pub version: u32,
    pub module: Module,
    /// Set while a newly deployed version is judged on its first records.
    pub trial: Option<Trial>,
}

impl Active {
    /// The label instances of this version log with: `v3-1a2b3c4d5e6f`.
    pub fn label(&self) -> String {
        format!("v{}-{}", self.version, self.module.id().short())
    }
}

/// Failure counting over a new version's first records, across all partitions.
#[derive(Debug)]
pub struct Trial {
    config: RollbackConfig,
    records: AtomicU64,
    failures: AtomicU64,
    /// The settled verdict ([`UNDECIDED`], [`PASSED`], [`FAILED`]), set once by
    /// whoever reaches it, so one rollback happens, not one per partition.
    settled: AtomicU8,
}

const UNDECIDED: u8 = 0;
const PASSED: u8 = 1;
const FAILED: u8 = 2;

/// What a trial says so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Undecided,
    Passed,
    Failed,
}

/// The trial verdict after `records` records of which `failures` failed. A trial fails
/// as soon as its failures exceed the allowed share of the whole trial (later
/// successes could not bring the rate back), and passes once it saw enough records.
pub fn verdict(config: &RollbackConfig, records: u64, failures: u64) -> Verdict {
    if config.trial_records == 0 {
        return Verdict::Passed;
    }
    let allowed = config.max_failure_rate * config.trial_records as f64;
    if failures as f64 > allowed {
        Verdict::Failed
    } else if records >= config.trial_records {
        Verdict::Passed
    } else {
        Verdict::Undecided
    }
}

impl Trial {
    fn new(config: RollbackConfig) -> Self {
        Self {
            config,
            records: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            settled: AtomicU8::new(UNDECIDED),
        }
    }

    /// Settle the trial as `verdict` if it is undecided; true if this call did.
    fn settle(&self, verdict: u8) -> bool {
        self.settled
            .compare_exchange(UNDECIDED, verdict, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Count a batch. Returns true exactly once, to the caller that must roll back.
    pub fn observe(&self, records: u64, failures: u64) -> bool {
        if self.settled.load(Ordering::Acquire) != UNDECIDED {
            return false;
        }
        let total = self.records.fetch_add(records, Ordering::Relaxed) + records;
        let failed = self.failures.fetch_add(failures, Ordering::Relaxed) + failures;
        match verdict(&self.config, total, failed) {
            Verdict::Undecided => false,
            Verdict::Passed => {
                self.settle(PASSED);
                false
            }
            Verdict::Failed => self.settle(FAILED),
        }
    }

    /// Fail an undecided trial at once, for a failure that cannot wait for the rate (a
    /// record under the `fail` policy). True for the one caller that must roll back.
    pub fn fail_now(&self) -> bool {
        self.settle(FAILED)
    }

    /// Whether the trial is over (passed or failed).
    pub fn is_settled(&self) -> bool {
        self.settled.load(Ordering::Acquire) != UNDECIDED
    }

    /// Whether the version failed its trial.
    pub fn has_failed(&self) -> bool {
        self.settled.load(Ordering::Acquire) == FAILED
    }

    /// Records seen and failed so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.records.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }

    /// Why the trial failed, for the history and the logs.
    pub fn describe_failure(&self) -> String {
        let (records, failures) = self.counts();
        format!(
            "{failures} of its first {records} records failed, over the allowed {:.1}% of {}",
            self.config.max_failure_rate * 100.0,
            self.config.trial_records
        )
    }
}

/// Why a deploy or rollback was refused. Nothing changed when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error("the module cannot be loaded: {0}")]
    Load(EngineError),
    #[error("the module's init failed: {0}")]
    Init(EngineError),
    #[error("there is no earlier version to roll back to")]
    NoPrevious,
    #[error("cannot read the config's module {path}: {source}")]
    ReadModule {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// What a deploy or rollback did.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A version was published.
    Published(Event),
    /// The module already runs: nothing to do.
    Unchanged { version: u32 },
}

/// What a pipeline's versions need from the daemon.
#[derive(Debug, Clone)]
pub struct VersionDeps {
    pub engine: Arc<Engine>,
    pub registry: Registry,
    pub metrics: Arc<Metrics>,
}

/// The versions of one pipeline. Shared by its partitions (reading [`Versions::active`])
/// and the admin API (deploying and rolling back).
#[derive(Debug)]
pub struct Versions {
    pipeline: String,
    deps: VersionDeps,
    transform_config: Arc<[(String, String)]>,
    limits: Arc<Limits>,
    rollback: RollbackConfig,
    active: ArcSwap<Active>,
    /// Loaded modules by version, so a rollback needs no load. Also serializes
    /// deploys and rollbacks.
    loaded: Mutex<BTreeMap<u32, Module>>,
}

impl Versions {
    /// The versions of `pipeline`, whose config names `module_path`: resume what ran
    /// last, unless the config now names a different module (see
    /// [`history::startup`]).
    pub fn start(
        pipeline: &str,
        deps: VersionDeps,
        module_path: &Path,
        transform_config: Arc<[(String, String)]>,
        limits: Arc<Limits>,
        rollback: RollbackConfig,
    ) -> Result<Self, VersionError> {
        let wasm = read_module(module_path)?;
        let id = ModuleId::of(&wasm);
        let events = deps.registry.history(pipeline)?;
        let (version, module) = match history::startup(&events, &id.to_string()) {
            Startup::Resume(event) => {
                let resumed = ModuleId::from_hex(&event.hash);
                let bytes = if resumed == id {
                    wasm
                } else {
                    deps.registry.module(&resumed)?
                };
                let module = deps.engine.load(&bytes).map_err(VersionError::Load)?;
                (event.version, module)
            }
            Startup::FromConfig => {
                let module = deps
                    .engine
                    .load_named(&wasm, &module_path.display().to_string())
                    .map_err(VersionError::Load)?;
                deps.registry.put_module(&wasm)?;
                let event = Event {
                    version: history::version_of(&events, &id.to_string())
                        .map_or_else(|| history::next_version(&events), |e| e.version),
                    action: Action::Config,
                    hash: id.to_string(),
                    size: wasm.len() as u64,
                    at: timestamp(),
                    by: "config".to_owned(),
                    reason: None,
                };
                deps.registry.append(pipeline, &event)?;
                (event.version, module)
            }
        };
        deps.metrics
            .module_active(pipeline, None, version, &module.id().to_string());
        let active = Active {
            version,
            module: module.clone(),
            trial: None,
        };
        tracing::info!(pipeline, version = %active.label(), source = ?module.source(), "module loaded");
        let versions = Self {
            pipeline: pipeline.to_owned(),
            deps,
            transform_config,
            limits,
            rollback,
            active: ArcSwap::from_pointee(active),
            loaded: Mutex::new(BTreeMap::from([(version, module.clone())])),
        };
        // A module that cannot start with this pipeline's config and limits (init
        // refuses, or its initial memory is over the limit) fails here, with its
        // reason, rather than on every partition in a restart loop.
        versions.try_init(&module)?;
        Ok(versions)
    }

    /// The version partitions should run now.
    pub fn active(&self) -> Arc<Active> {
        self.active.load_full()
    }

    /// The pipeline's history, oldest first.
    pub fn history(&self) -> Result<Vec<Event>, RegistryError> {
        self.deps.registry.history(&self.pipeline)
    }

    /// Deploy `wasm` as a new version: load, check and `init` it off the processing
    /// path, record it, publish it. On any error the running version stays.
    pub fn deploy(&self, wasm: &[u8], by: &str, action: Action) -> Result<Change, VersionError> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        let id = ModuleId::of(wasm);
        let current = self.active();
        if *current.module.id() == id {
            return Ok(Change::Unchanged {
                version: current.version,
            });
        }
        let module = self.deps.engine.load(wasm).map_err(VersionError::Load)?;
        self.try_init(&module)?;
        self.deps.registry.put_module(wasm)?;
        let events = self.history()?;
        let event = Event {
            version: history::version_of(&events, &id.to_string())
                .map_or_else(|| history::next_version(&events), |e| e.version),
            action,
            hash: id.to_string(),
            size: wasm.len() as u64,
            at: timestamp(),
            by: by.to_owned(),
            reason: None,
        };
        self.deps.registry.append(&self.pipeline, &event)?;
        let trial = (self.rollback.trial_records > 0).then(|| Trial::new(self.rollback.clone()));
        self.publish(&mut loaded, &current, event.version, module, trial);
        self.deps.metrics.swapped(&self.pipeline);
        tracing::info!(pipeline = %self.pipeline, version = event.version, module = %id.short(), by, "new version published; partitions switch at their next checkpoint");
        Ok(Change::Published(event))
    }

    /// Return to the version before the active one. With `from`, only if `from` is
    /// still active (an automatic rollback racing a manual one does nothing).
    pub fn rollback(
        &self,
        by: &str,
        reason: Option<String>,
        automatic: bool,
        from: Option<u32>,
    ) -> Result<Change, VersionError> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.active();
        if from.is_some_and(|v| v != current.version) {
            return Ok(Change::Unchanged {
                version: current.version,
            });
        }
        let events = self.history()?;
        let target = history::rollback_target(&events)
            .ok_or(VersionError::NoPrevious)?
            .clone();
        let module = match loaded.get(&target.version) {
            Some(module) => module.clone(),
            None => {
                let wasm = self
                    .deps
                    .registry
                    .module(&ModuleId::from_hex(&target.hash))?;
                self.deps.engine.load(&wasm).map_err(VersionError::Load)?
            }
        };
        let event = Event {
            action: if automatic {
                Action::AutoRollback
            } else {
                Action::Rollback
            },
            at: timestamp(),
            by: by.to_owned(),
            reason: reason.clone(),
            ..target
        };
        self.deps.registry.append(&self.pipeline, &event)?;
        self.publish(&mut loaded, &current, event.version, module, None);
        self.deps.metrics.rolled_back(&self.pipeline, automatic);
        tracing::warn!(
            pipeline = %self.pipeline,
            from = current.version,
            to = event.version,
            automatic,
            reason = reason.as_deref().unwrap_or(""),
            "rolled back; partitions switch at their next checkpoint"
        );
        Ok(Change::Published(event))
    }

    /// Run the module's `init` on an empty state: a version whose `init` fails never
    /// reaches a partition.
    fn try_init(&self, module: &Module) -> Result<(), VersionError> {
        let labels = InstanceLabels {
            pipeline: self.pipeline.clone(),
            partition: -1,
            module: format!("candidate-{}", module.id().short()),
        };
        self.deps
            .engine
            .instantiate_with_limits(
                module,
                labels,
                self.transform_config.clone(),
                PartitionState::default(),
                self.limits.clone(),
            )
            .map(drop)
            .map_err(VersionError::Init)
    }

    fn publish(
        &self,
        loaded: &mut BTreeMap<u32, Module>,
        current: &Active,
        version: u32,
        module: Module,
        trial: Option<Trial>,
    ) {
        self.deps.metrics.module_active(
            &self.pipeline,
            Some((current.version, &current.module.id().to_string())),
            version,
            &module.id().to_string(),
        );
        loaded.insert(version, module.clone());
        // Keep the active and the one before it loaded: an instant rollback target.
        let keep = [version, current.version];
        loaded.retain(|v, _| keep.contains(v));
        self.active.store(Arc::new(Active {
            version,
            module,
            trial,
        }));
    }
}

fn read_module(path: &Path) -> Result<Vec<u8>, VersionError> {
    std::fs::read(path).map_err(|source| VersionError::ReadModule {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(trial_records: u64, max_failure_rate: f64) -> RollbackConfig {
        RollbackConfig {
            trial_records,
            max_failure_rate,
        }
    }

    #[test]
    fn a_trial_fails_as_soon_as_the_rate_cannot_recover() {
        let c = config(100, 0.1);
        assert_eq!(verdict(&c, 10, 10), Verdict::Undecided);
        assert_eq!(verdict(&c, 11, 11), Verdict::Failed);
        assert_eq!(verdict(&c, 100, 10), Verdict::Passed);
        assert_eq!(verdict(&c, 99, 0), Verdict::Undecided);
        assert_eq!(verdict(&config(0, 0.1), 0, 5), Verdict::Passed);
    }

    #[test]
    fn exactly_one_observer_is_told_to_roll_back() {
        let trial = Trial::new(config(10, 0.2));
        assert!(!trial.observe(2, 2));
        assert!(trial.observe(1, 1));
        assert!(!trial.observe(1, 1));
        assert!(trial.has_failed());
        assert!(!trial.fail_now());
    }

    #[test]
    fn a_passed_trial_stays_passed() {
        let trial = Trial::new(config(4, 0.5));
        assert!(!trial.observe(4, 0));
        assert!(!trial.observe(10, 10));
        assert!(trial.is_settled() && !trial.has_failed());
        assert!(!trial.fail_now());
    }
}
