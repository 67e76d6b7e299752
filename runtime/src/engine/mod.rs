//! The WebAssembly engine: loads transform components, sandboxes them, and runs them.
//!
//! * One [`Engine`] per process: one wasmtime `Engine` (sync component calls with
//!   `concurrency_support(false)`, about 5x cheaper per call on wasmtime 48), instances
//!   allocated on demand (see [`wasm_config`]), an epoch ticker for call timeouts, and
//!   the on-disk compiled cache.
//! * A [`Module`] is one loaded version of a transform: checked against the contract and
//!   pre-linked (`InstancePre`), cheap to clone and share between partitions.
//! * An [`Instance`] is a `Store` per (pipeline, partition). It owns the partition's
//!   state while it runs, and re-creates itself after a trap: a trap means the guest's
//!   memory can no longer be trusted, the partition's state can.

pub mod bindings;
mod cache;
mod contract;
mod error;
mod event_time;
mod host;
mod limits;
mod log_budget;
mod processor;
mod records;
mod stdio;
pub(crate) mod text;
mod timer_queue;

pub use contract::Contract;
pub use error::{EngineError, GuestFault};
pub use limits::Limits;
pub use processor::{FireError, Fired, ProcessError, Processor, TimerFault};
pub use records::{Header, InputRecord, OutputRecord};

/// An output batch decoded as the host decodes a guest's (for `crate::fuzzing`).
#[doc(hidden)]
pub fn decode_output_batch(
    batch: &bindings::weir::transform::types::OutputBatch,
) -> Result<Vec<OutputRecord>, String> {
    let mut out = Vec::new();
    records::decode(batch, &mut out).map(|()| out)
}

/// Batched state writes decoded as the host decodes a guest's `write-all` (for
/// `crate::fuzzing`).
#[doc(hidden)]
pub fn decode_state_writes(
    writes: &bindings::weir::transform::state::Writes,
) -> Result<Vec<host::Write<'_>>, GuestFault> {
    host::parse_writes(writes)
}

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Store, Trap};

use crate::state::{PartitionState, StateError};
use bindings::{CONTRACT_PACKAGE, InputBatch};
use cache::CompiledCache;
use contract::{Exports, Pre};
use host::{HostState, Phase};

/// How often the epoch advances: the granularity of call timeouts.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Longest guest log line (stdout, stderr or the log import) logged in one piece.
pub const MAX_LOG_LINE_BYTES: usize = 8 << 10;

/// Longest rejection message kept (the rest is cut): a guest must not put megabytes
/// into the logs and into every dead letter's headers.
const MAX_REJECTION_BYTES: usize = 4 << 10;

/// WASI packages linked (with no capabilities) so that language runtimes load.
const WASI_PACKAGES: &[&str] = &[
    "wasi:io",
    "wasi:clocks",
    "wasi:random",
    "wasi:cli",
    "wasi:filesystem",
    "wasi:sockets",
];

/// Settings of an [`Engine`].
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    pub limits: Limits,
    /// Where compiled modules are kept; `None` compiles every load.
    pub cache_dir: Option<PathBuf>,
}

/// The content hash of a module: its identity across loads, restarts and hosts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleId(String);

impl ModuleId {
    pub fn of(wasm: &[u8]) -> Self {
        Self(cache::hex(&Sha256::digest(wasm)))
    }

    /// An id from its hex form, as the registry stores it.
    pub fn from_hex(hex: &str) -> Self {
        Self(hex.to_owned())
    }

    /// The first 12 hex digits: enough to tell versions apart in logs.
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(12)]
    }
}

impl fmt::Display for ModuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a loaded module's machine code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    /// Compiled by Cranelift during this load.
    Compiled,
    /// Read from the compiled cache.
    Cache,
}

/// One process's WebAssembly engine. See the module docs.
pub struct Engine {
    wasm: wasmtime::Engine,
    linker: Linker<HostState>,
    cache: Option<CompiledCache>,
    limits: Arc<Limits>,
    ticker: Arc<EpochTicker>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("limits", &self.limits)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub fn new(config: EngineConfig) -> Result<Self, EngineError> {
        let setup = |e: wasmtime::Error| EngineError::Setup {
            reason: format!("{e:#}"),
        };
        let limits = config.limits;
        let wasm = wasmtime::Engine::new(&wasm_config()).map_err(setup)?;

        let mut linker = Linker::new(&wasm);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(setup)?;
        host::bound_waits(&mut linker).map_err(setup)?;
        // Both contracts' imports: their names differ by version, so a component of
        // either finds its own.
        bindings::v0_3::Transform::add_to_linker::<_, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(setup)?;
        bindings::v0_2::Transform::add_to_linker::<_, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(setup)?;

        let cache = config
            .cache_dir
            .as_deref()
            .map(|dir| CompiledCache::open(dir, &wasm))
            .transpose()?;
        let ticker = Arc::new(EpochTicker::start(wasm.clone()));
        Ok(Self {
            wasm,
            linker,
            cache,
            limits: Arc::new(limits),
            ticker,
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Load the module in the file at `path`.
    pub fn load_file(&self, path: &Path) -> Result<Module, EngineError> {
        let wasm = std::fs::read(path).map_err(|source| EngineError::ReadModule {
            path: path.to_path_buf(),
            source,
        })?;
        self.load_named(&wasm, &path.display().to_string())
    }

    /// Load a module from its bytes: compile it (or take it from the compiled cache),
    /// check its imports and exports against the contract, and pre-link it.
    pub fn load(&self, wasm: &[u8]) -> Result<Module, EngineError> {
        self.load_named(wasm, "the module")
    }

    /// [`load`](Self::load), naming the module `what` in errors (e.g. its path).
    pub fn load_named(&self, wasm: &[u8], what: &str) -> Result<Module, EngineError> {
        check_header(wasm, what)?;
        let started = Instant::now();
        let id = ModuleId::of(wasm);
        let (component, source) = self.compile_or_load(wasm, &id, what)?;
        self.check_imports(&component, what)?;
        check_resources(&component, what)?;
        let pre =
            self.linker
                .instantiate_pre(&component)
                .map_err(|e| EngineError::NotATransform {
                    what: what.to_owned(),
                    reason: format!("{e:#}"),
                })?;
        let pre = Pre::new(pre).map_err(|e| EngineError::NotATransform {
            what: what.to_owned(),
            reason: format!("{e:#}"),
        })?;
        let load_time = started.elapsed();
        tracing::debug!(module = id.short(), ?source, ?load_time, "loaded module");
        Ok(Module(Arc::new(ModuleInner {
            id,
            pre,
            source,
            load_time,
            size: wasm.len(),
        })))
    }

    /// The module from the compiled cache, or compiled (and cached) under the cache's
    /// per-module lock, so that concurrent loads of one module compile it once.
    fn compile_or_load(
        &self,
        wasm: &[u8],
        id: &ModuleId,
        what: &str,
    ) -> Result<(Component, LoadSource), EngineError> {
        let Some(cache) = &self.cache else {
            return Ok((self.compile(wasm, id, what)?, LoadSource::Compiled));
        };
        if let Some(component) = cache.load(&self.wasm, id) {
            return Ok((component, LoadSource::Cache));
        }
        let _lock = cache.lock(id);
        // Another process may have compiled it while this one waited for the lock.
        if let Some(component) = cache.load(&self.wasm, id) {
            return Ok((component, LoadSource::Cache));
        }
        let started = Instant::now();
        let component = self.compile(wasm, id, what)?;
        tracing::info!(module = id.short(), size = wasm.len(), compile_time = ?started.elapsed(), "compiled module");
        Ok((component, LoadSource::Compiled))
    }

    /// A component wasmtime refused as invalid.
    fn invalid_component(&self, error: wasmtime::Error, what: &str) -> EngineError {
        EngineError::InvalidComponent {
            what: what.to_owned(),
            reason: format!("{error:#}"),
        }
    }

    fn compile(&self, wasm: &[u8], id: &ModuleId, what: &str) -> Result<Component, EngineError> {
        let invalid = |e: wasmtime::Error| self.invalid_component(e, what);
        let Some(cache) = &self.cache else {
            return Component::new(&self.wasm, wasm).map_err(invalid);
        };
        let artifact = self.wasm.precompile_component(wasm).map_err(invalid)?;
        if let Err(error) = cache.store(id, &artifact) {
            tracing::warn!(%error, "cannot write the compiled-module cache; the next load will compile again");
        }
        // SAFETY: `artifact` was produced just above by this engine's `precompile_component`.
        unsafe { Component::deserialize(&self.wasm, &artifact) }.map_err(invalid)
    }

    /// Refuse imports Weir does not provide, naming them, before linking would fail
    /// with a less helpful message.
    fn check_imports(&self, component: &Component, what: &str) -> Result<(), EngineError> {
        let mut unsupported = Vec::new();
        for (name, _) in component.component_type().imports(&self.wasm) {
            let (interface, version) = name.split_once('@').unwrap_or((name, ""));
            let package = interface.split('/').next().unwrap_or(interface);
            if package == CONTRACT_PACKAGE {
                if Contract::serving(version).is_none() {
                    return Err(EngineError::ContractVersion {
                        what: what.to_owned(),
                        found: format!("{package}@{version}"),
                    });
                }
            } else if !WASI_PACKAGES.contains(&package) {
                unsupported.push(name.to_owned());
            }
        }
        if unsupported.is_empty() {
            Ok(())
        } else {
            Err(EngineError::UnsupportedImports {
                what: what.to_owned(),
                names: unsupported,
            })
        }
    }

    /// Start an instance of `module` for one partition, owning `state`, and run its
    /// `init` with `config`.
    pub fn instantiate(
        &self,
        module: &Module,
        labels: InstanceLabels,
        config: Arc<[(String, String)]>,
        state: PartitionState,
    ) -> Result<Instance, EngineError> {
        self.instantiate_with_limits(module, labels, config, state, self.limits.clone())
    }

    /// [`instantiate`](Self::instantiate) with limits of its own (a pipeline's).
    pub fn instantiate_with_limits(
        &self,
        module: &Module,
        labels: InstanceLabels,
        config: Arc<[(String, String)]>,
        state: PartitionState,
        limits: Arc<Limits>,
    ) -> Result<Instance, EngineError> {
        let labels = Arc::new(labels);
        let store = new_store(&self.wasm, labels.clone(), &limits, state);
        let mut instance = Instance {
            module: module.clone(),
            store,
            bindings: None,
            config,
            limits,
            labels,
            batch: records::empty_batch(),
            timers_per_call: event_time::TIMERS_PER_CALL,
            _ticker: self.ticker.clone(),
        };
        instance.start()?;
        Ok(instance)
    }
}

/// A store for one instance: its host data, memory limiter and epoch trap.
fn new_store(
    engine: &wasmtime::Engine,
    labels: Arc<InstanceLabels>,
    limits: &Limits,
    state: PartitionState,
) -> Store<HostState> {
    let mut store = Store::new(engine, HostState::new(labels, limits, state));
    store.limiter(|host| &mut host.limiter);
    store.epoch_deadline_trap();
    store
}

/// Instances are allocated on demand, not from a pool. A pool reserves its slots up
/// front (each linear memory a 4 GiB reservation, several per interpreter component)
/// and caps how many instances exist at once: sized for a thousand partitions plus
/// swaps it would reserve tens of terabytes of address space, and sized smaller it
/// fails the partitions past its count. On demand, what is reserved follows the
/// instances that run; an instance is made when a partition starts, swaps or recovers
/// from a trap, and copy-on-write memory images keep that cheap: instantiate and init
/// took the same on demand as from the pool (0.1 ms Rust, 1.3 ms Python; BENCHMARKS.md).
fn wasm_config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.concurrency_support(false);
    config.epoch_interruption(true);
    config.memory_init_cow(true);
    config.cranelift_nan_canonicalization(true);
    config.relaxed_simd_deterministic(true);
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::OnDemand);
    config
}

/// Refuse a component that would create more memories or tables than an instance may
/// hold (see `limits::MAX_MEMORIES`), at load rather than at each partition's start.
fn check_resources(component: &Component, what: &str) -> Result<(), EngineError> {
    let Some(needs) = component.resources_required() else {
        return Ok(());
    };
    let too_many = |count: u32, kind: &str, most: usize| {
        (count as usize > most).then(|| EngineError::InvalidComponent {
            what: what.to_owned(),
            reason: format!("it creates {count} {kind}; an instance may have at most {most}"),
        })
    };
    match too_many(needs.num_memories, "linear memories", limits::MAX_MEMORIES)
        .or_else(|| too_many(needs.num_tables, "tables", limits::MAX_TABLES))
    {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Refuse what is plainly not a component before handing it to the compiler.
fn check_header(wasm: &[u8], what: &str) -> Result<(), EngineError> {
    if wasm.get(..4) != Some(b"\0asm") {
        return Err(EngineError::NotWasm {
            what: what.to_owned(),
            magic: wasm.iter().take(4).copied().collect(),
        });
    }
    // Bytes 4..8: version 1 and layer 0 is a core module; components use layer 1.
    if wasm.get(4..8) == Some(&[1, 0, 0, 0]) {
        return Err(EngineError::CoreModule {
            what: what.to_owned(),
        });
    }
    Ok(())
}

struct ModuleInner {
    id: ModuleId,
    pre: Pre,
    source: LoadSource,
    load_time: Duration,
    size: usize,
}

/// One loaded, pre-linked version of a transform.
#[derive(Clone)]
pub struct Module(Arc<ModuleInner>);

impl fmt::Debug for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Module")
            .field("id", &self.0.id)
            .field("source", &self.0.source)
            .finish_non_exhaustive()
    }
}

impl Module {
    pub fn id(&self) -> &ModuleId {
        &self.0.id
    }

    /// The contract version the component was built against.
    pub fn contract(&self) -> Contract {
        self.0.pre.contract()
    }

    /// Whether this load compiled the module or read it from the cache.
    pub fn source(&self) -> LoadSource {
        self.0.source
    }

    /// How long the load took, compile or cache read included.
    pub fn load_time(&self) -> Duration {
        self.0.load_time
    }

    /// Size of the component in bytes.
    pub fn size(&self) -> usize {
        self.0.size
    }
}

/// Who an instance works for: attached to its log lines and errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceLabels {
    pub pipeline: String,
    pub partition: i32,
    /// Short module id.
    pub module: String,
}

/// A running transform for one (pipeline, partition). See the module docs.
pub struct Instance {
    module: Module,
    store: Store<HostState>,
    /// `None` after a trap, until the next call re-creates the instance.
    bindings: Option<Exports>,
    config: Arc<[(String, String)]>,
    limits: Arc<Limits>,
    labels: Arc<InstanceLabels>,
    /// The last batch sent to the guest: its buffers are reused for the next one.
    batch: InputBatch,
    /// Most timers one `on-timers` call gets: 1 while a failing one is looked for.
    timers_per_call: usize,
    /// Keeps call timeouts working for as long as the instance lives, even if the
    /// `Engine` that made it is dropped first.
    _ticker: Arc<EpochTicker>,
}

impl fmt::Debug for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instance")
            .field("module", &self.module)
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

impl Instance {
    pub fn module(&self) -> &Module {
        &self.module
    }

    /// Guest log lines dropped over the instance's rate since the last call.
    pub fn take_dropped_log_lines(&self) -> u64 {
        self.store.data().stdio.take_dropped_lines()
    }

    /// Give back the partition's state, e.g. to hand it to another module version.
    pub fn into_state(self) -> PartitionState {
        self.store.into_data().state
    }

    /// Instantiate the module in this store and run `init`.
    fn start(&mut self) -> Result<(), EngineError> {
        // Instantiation runs guest code too (start functions, constructors).
        self.arm_deadline();
        let bindings = match self.module.0.pre.instantiate(&mut self.store) {
            Ok(bindings) => bindings,
            Err(error) => {
                let module = self.module.id().short().to_owned();
                let limiter = &mut self.store.data_mut().limiter;
                // The limiter refused an initial memory: the limit is what is wrong.
                return Err(match limiter.take_refusal() {
                    Some(needed) => EngineError::MemoryLimitTooLow {
                        what: format!("module {module}"),
                        needed: needed as u64,
                        limit: limiter.limit() as u64,
                    },
                    None => EngineError::Instantiate {
                        module,
                        reason: format!("{error:#}"),
                    },
                });
            }
        };
        self.store.data_mut().phase = Phase::Init;
        let config = self.config.clone();
        let result = self.call(|store| bindings.call_init(store, &config));
        self.store.data_mut().phase = Phase::Process;
        match result {
            Ok(Ok(())) => {
                self.bindings = Some(bindings);
                Ok(())
            }
            Ok(Err(message)) => Err(EngineError::InitRejected { message }),
            Err(ProcessError::Fault(fault)) => Err(EngineError::InitFault { fault }),
            Err(other) => Err(EngineError::Instantiate {
                module: self.module.id().short().to_owned(),
                reason: other.to_string(),
            }),
        }
    }

    /// Throw away the trapped instance and start a fresh one with the same state.
    fn restart(&mut self) -> Result<(), ProcessError> {
        let engine = self.store.engine().clone();
        let state = std::mem::take(&mut self.store.data_mut().state);
        self.store = new_store(&engine, self.labels.clone(), &self.limits, state);
        let labels = &self.labels;
        tracing::info!(
            pipeline = %labels.pipeline, partition = labels.partition, module = %labels.module,
            "restarting the transform instance after a fault"
        );
        self.start().map_err(ProcessError::Restart)
    }

    /// Hand the partition's state to a new instance of `module` (running its `init`)
    /// and make that the instance: a hot swap. Call it with no uncommitted state
    /// writes (at a checkpoint boundary). If the new version cannot start, this
    /// instance stays exactly as it was, old version and all, and the error says why.
    pub fn switch_to(
        &mut self,
        module: &Module,
        labels: InstanceLabels,
    ) -> Result<(), EngineError> {
        let engine = self.store.engine().clone();
        let state = std::mem::take(&mut self.store.data_mut().state);
        let labels = Arc::new(labels);
        let old_store = std::mem::replace(
            &mut self.store,
            new_store(&engine, labels.clone(), &self.limits, state),
        );
        let old_module = std::mem::replace(&mut self.module, module.clone());
        let old_labels = std::mem::replace(&mut self.labels, labels);
        let old_bindings = self.bindings.take();
        match self.start() {
            Ok(()) => Ok(()),
            Err(error) => {
                // `init` may have buffered writes; the old version never saw them.
                self.state().discard_uncommitted();
                let state = std::mem::take(&mut self.store.data_mut().state);
                self.store = old_store;
                self.store.data_mut().state = state;
                self.module = old_module;
                self.labels = old_labels;
                self.bindings = old_bindings;
                Err(error)
            }
        }
    }

    /// Allow guest code to run for the call timeout from now (rounded up to a tick, plus
    /// one for the partial tick in progress).
    fn arm_deadline(&mut self) {
        let ticks = self
            .limits
            .call_timeout()
            .as_millis()
            .div_ceil(EPOCH_TICK.as_millis()) as u64
            + 1;
        self.store.set_epoch_deadline(ticks);
        // A clock wait ends a little after the epoch deadline has passed, so that the
        // guest, running again, is stopped at its next epoch check.
        let ticks = u32::try_from(ticks + 2).unwrap_or(u32::MAX);
        let host = self.store.data_mut();
        host.call_deadline = Instant::now() + EPOCH_TICK * ticks;
        host.wait_cut
            .store(false, std::sync::atomic::Ordering::Release);
    }

    /// Run one guest call under the call timeout, turning traps into typed errors.
    fn call<R>(
        &mut self,
        f: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, ProcessError> {
        self.arm_deadline();
        self.store.data().stdio.clear_recent_stderr();
        let mut result = f(&mut self.store);
        let host = self.store.data_mut();
        if host
            .wait_cut
            .swap(false, std::sync::atomic::Ordering::AcqRel)
            && result.is_ok()
        {
            // A clock wait was cut at the deadline and the guest returned before its
            // next epoch check: the call timed out all the same.
            result = Err(Trap::Interrupt.into());
        }
        host.stdio.flush();
        let refused = host.limiter.take_refusal();
        result.map_err(|error| {
            self.bindings = None;
            self.classify(error, refused)
        })
    }

    fn classify(&mut self, error: wasmtime::Error, refused_memory: Option<usize>) -> ProcessError {
        let error = match error.downcast::<StateError>() {
            Ok(state_error) => return ProcessError::Host(state_error),
            Err(error) => error,
        };
        if let Some(fault) = error.downcast_ref::<GuestFault>() {
            return ProcessError::Fault(fault.clone());
        }
        let host = self.store.data();
        if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return ProcessError::Fault(GuestFault::Timeout {
                limit: self.limits.call_timeout(),
            });
        }
        if let Some(requested) = refused_memory {
            return ProcessError::Fault(GuestFault::MemoryLimit {
                limit: host.limiter.limit() as u64,
                requested: requested as u64,
            });
        }
        let stderr = host.stdio.take_recent_stderr();
        let mut message = match error.downcast_ref::<Trap>() {
            Some(trap) => trap.to_string(),
            None => format!("{error:#}"),
        };
        if let Some(exception) = stdio::uncaught_exception(&stderr) {
            message = format!("uncaught exception {exception} ({message})");
        }
        if let Some(backtrace) = error.downcast_ref::<wasmtime::WasmBacktrace>() {
            let frames: Vec<_> = backtrace
                .frames()
                .iter()
                .filter_map(|f| f.func_name())
                .take(4)
                .collect();
            if !frames.is_empty() {
                message.push_str(&format!(" in {}", frames.join(" < ")));
            }
        }
        if !stderr.is_empty() {
            message.push_str(&format!("; guest stderr: {}", stderr.join(" | ")));
        }
        ProcessError::Fault(GuestFault::Trap { message })
    }
}

impl Instance {
    /// Run one run of records (one topic and partition) through the guest, appending
    /// its outputs to `outputs`.
    /// `met` is the watermark each record meets (empty for a 0.2 guest).
    fn process_run(
        &mut self,
        records: &[InputRecord],
        met: &[i64],
        outputs: &mut Vec<OutputRecord>,
    ) -> Result<(), ProcessError> {
        if records::encode(records, met, &mut self.batch).is_err() {
            return Err(ProcessError::Fault(GuestFault::Contract {
                message: format!(
                    "a batch of {} records is too large for the contract's 32-bit lengths",
                    records.len()
                ),
            }));
        }
        if self.bindings.is_none() {
            self.restart()?;
        }
        let bindings = self.bindings.take().expect("started above");
        let mut batch = std::mem::replace(&mut self.batch, records::empty_batch());
        let outcome = self.call(|store| bindings.call_process(store, &mut batch));
        self.batch = batch;
        let outcome = outcome?;
        // The guest returned normally, so its instance is still sound.
        self.bindings = Some(bindings);
        let contract = |message| ProcessError::Fault(GuestFault::Contract { message });
        match outcome {
            Ok(batch) => records::decode(&batch, outputs).map_err(contract),
            Err(mut rejected) if (rejected.index as usize) < records.len() => {
                // Logged, and copied into a dead letter's `weir.dlq.error` header.
                text::cut(&mut rejected.message, MAX_REJECTION_BYTES);
                Err(ProcessError::Rejected {
                    index: rejected.index as usize,
                    message: rejected.message,
                })
            }
            Err(rejected) => Err(contract(format!(
                "process reported an error for record {} of a batch of {}: {}",
                rejected.index,
                records.len(),
                rejected.message
            ))),
        }
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: wasmtime::Engine) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EPOCH_TICK) {
                    engine.increment_epoch();
                }
            })
            .expect("spawn the epoch thread");
        Self {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
