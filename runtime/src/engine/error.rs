//! Errors of the engine: loading a module ([`EngineError`]) and a guest misbehaving
//! while it runs ([`GuestFault`]).
//!
//! The two stay apart on purpose. A load error means the module cannot run at all; a
//! fault happened on some input, so the pipeline's per-record policy decides what to do.

use std::path::PathBuf;
use std::time::Duration;

/// A module could not be loaded, linked or started.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot read module {path}: {source}")]
    ReadModule {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{what} is not a WebAssembly file (it starts with {magic:02x?}); pass the .wasm file your build produced"
    )]
    NotWasm { what: String, magic: Vec<u8> },
    #[error(
        "{what} is a core WebAssembly module, not a component. Build it for wasm32-wasip2 \
         (cargo build --target wasm32-wasip2) or wrap it with `wasm-tools component new`"
    )]
    CoreModule { what: String },
    #[error("{what} is not a valid WebAssembly component: {reason}")]
    InvalidComponent { what: String, reason: String },
    #[error(
        "{what} imports {}, which Weir does not provide. A transform may import only \
         {package}/{{state,timers,log}}@{version} and WASI 0.2 (linked with no capabilities)",
        names.join(", "),
        package = super::bindings::CONTRACT_PACKAGE,
        version = super::bindings::CONTRACT_VERSION,
    )]
    UnsupportedImports { what: String, names: Vec<String> },
    #[error(
        "{what} was built against {found}, but this Weir speaks {package}@{version} (and \
         runs components of {earlier}); rebuild it against the wit/ of this release",
        package = super::bindings::CONTRACT_PACKAGE,
        version = super::bindings::CONTRACT_VERSION,
        earlier = super::bindings::EARLIER_CONTRACT_VERSION,
    )]
    ContractVersion { what: String, found: String },
    #[error(
        "{what} needs {needed} bytes of memory to start, over the memory limit of {limit} \
         bytes; raise limits.memory_limit_bytes (weir test: --memory-limit-mb)"
    )]
    MemoryLimitTooLow {
        what: String,
        needed: u64,
        limit: u64,
    },
    #[error(
        "{what} does not fit the {package}@{version} contract: {reason}. A component built \
         against another version of the contract must be rebuilt against the wit/ of this \
         release",
        package = super::bindings::CONTRACT_PACKAGE,
        version = super::bindings::CONTRACT_VERSION,
    )]
    NotATransform { what: String, reason: String },
    #[error("cannot start an instance of module {module}: {reason}")]
    Instantiate { module: String, reason: String },
    #[error("the transform's init refused its configuration: {message}")]
    InitRejected { message: String },
    #[error("the transform failed during init: {fault}")]
    InitFault { fault: GuestFault },
    #[error("cannot set up the WebAssembly engine: {reason}")]
    Setup { reason: String },
    #[error("cannot use the compiled-module cache at {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A guest misbehaved on some input. The instance is discarded and re-created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestFault {
    #[error(
        "the transform ran past its call timeout of {limit:?} and was stopped (an endless \
         loop, or a batch too slow for limits.call_timeout_ms)"
    )]
    Timeout { limit: Duration },
    #[error(
        "the transform tried to grow its memory (all its linear memories together) to \
         {requested} bytes, over its limit of {limit} bytes (raise \
         limits.memory_limit_bytes if it really needs that much)"
    )]
    MemoryLimit { limit: u64, requested: u64 },
    #[error(
        "the transform wrote a state {what} of {size} bytes, over the limit of {limit} bytes \
         (limits.max_state_{what}_bytes)"
    )]
    StateTooLarge {
        what: &'static str,
        size: usize,
        limit: u32,
    },
    #[error(
        "the partition's buffered state writes (since its last checkpoint, this \
         record's included) would hold more than limits.max_pending_state_bytes \
         ({limit} bytes of memory). A partition checkpoints early, between batches, once \
         they pass half of that, so this batch or record wrote more than the other half: \
         raise the limit, lower batch_size, or write less per record"
    )]
    StateBufferFull { limit: u64 },
    #[error(
        "the pipeline's state takes {used} bytes of this daemon's disk, at or past \
         limits.max_state_bytes ({limit} bytes): state writes that set a value are \
         refused (deletes are not). Let the transform delete what it no longer needs, or \
         raise the limit"
    )]
    StateQuotaReached { used: u64, limit: u64 },
    #[error(
        "a state scan page of up to {asked} entries passed limits.max_scan_bytes ({limit} \
         bytes of keys and values): raise the limit, or keep fewer large values under \
         one prefix (the SDKs ask for 256 entries a page)"
    )]
    ScanTooLarge { limit: u64, asked: u32 },
    #[error("the transform wrote state during init, where state is read-only")]
    StateWriteInInit,
    #[error("the transform wrote the empty state key, which Weir reserves for its checkpoints")]
    ReservedKey,
    #[error(
        "the transform read table {name:?}, which the pipeline does not declare (it \
         declares {declared}): add it under [pipelines.NAME.tables] or fix the name"
    )]
    UnknownTable { name: String, declared: String },
    #[error("the transform trapped: {message}")]
    Trap { message: String },
    #[error("the transform broke the weir:transform contract: {message}")]
    Contract { message: String },
}

impl GuestFault {
    /// A short, stable name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::MemoryLimit { .. } => "memory_limit",
            Self::StateTooLarge { .. } => "state_too_large",
            Self::StateBufferFull { .. } => "state_buffer_full",
            Self::StateQuotaReached { .. } => "state_quota",
            Self::ScanTooLarge { .. } => "scan_too_large",
            Self::StateWriteInInit => "state_write_in_init",
            Self::ReservedKey => "reserved_key",
            Self::UnknownTable { .. } => "unknown_table",
            Self::Trap { .. } => "trap",
            Self::Contract { .. } => "contract",
        }
    }
}
