//! What a guest can reach: the data behind each instance's `Store`, and one file per
//! imported WIT interface. WASI is linked too, with an empty context: no preopened
//! directories, no sockets, no environment, stdout and stderr into our logs; its
//! monotonic clock is ours, so that no wait outlasts a call ([`clocks`]). Components of
//! contract 0.2 get the same imports under their version's names ([`earlier`]).

mod clocks;
mod earlier;
mod log;
mod state;
mod tables;
mod timers;

pub(crate) use clocks::bound_waits;
pub(crate) use state::{Write, parse_writes};

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::InstanceLabels;
use super::limits::{Limits, MemoryLimiter};
use super::stdio::GuestStdio;
use super::timer_queue::TimerQueue;
use crate::state::PartitionState;

/// Which export the guest is running: state is read-only during `init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Init,
    Process,
}

/// The data of one instance's `Store`.
pub(crate) struct HostState {
    pub(crate) state: PartitionState,
    pub(crate) phase: Phase,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) stdio: GuestStdio,
    pub(crate) labels: Arc<InstanceLabels>,
    max_key_bytes: u32,
    max_value_bytes: u32,
    max_pending_bytes: u64,
    max_scan_bytes: u64,
    /// The tables the pipeline declares: what `tables.get` and `tables.scan` may name.
    tables: Arc<[String]>,
    /// Zero of the guest's monotonic clock.
    clock_origin: std::time::Instant,
    /// The monotonic clock stays at 0 (`limits.deterministic`).
    frozen_clock: bool,
    /// When the running call's time is up: a clock wait ends there at the latest.
    pub(crate) call_deadline: std::time::Instant,
    /// Raised when a clock wait ended at `call_deadline` instead of when it asked: the
    /// call has then timed out, whatever the guest does next.
    pub(crate) wait_cut: Arc<std::sync::atomic::AtomicBool>,
    /// The partition's timers, which `timers.set` and `timers.delete` write through.
    pub(crate) timers: TimerQueue,
    /// Timers set during a `process` call that fall due at a watermark past
    /// `cut_floor` (the one its first record met): the earliest such watermark, where
    /// the call must be cut. Timers set for a time already passed do not cut: they
    /// fire after the run they were set in, so a guest that sets them cannot make the
    /// host re-run a batch record by record.
    pub(crate) earliest_cut: Option<i64>,
    pub(crate) cut_floor: i64,
    /// Under `deterministic`, processing time is the stream time: a processing-time
    /// timer falls due at the watermark `at` less this (the allowance).
    processing_cut_offset: Option<i64>,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl HostState {
    pub(crate) fn new(labels: Arc<InstanceLabels>, limits: &Limits, state: PartitionState) -> Self {
        let stdio = GuestStdio::new(labels.clone(), limits);
        // The builder's defaults are the sandbox: no preopens, no env, no args, empty
        // stdin, and (since wasmtime 48) no TCP or UDP sockets and no name lookups.
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdio.stdout()).stderr(stdio.stderr());
        if limits.deterministic {
            let zeros = || wasmtime_wasi::Deterministic::new(vec![0]);
            wasi.wall_clock(clocks::Epoch)
                .secure_random(zeros())
                .insecure_random(zeros())
                .insecure_random_seed(0);
        } else if let Some(clock) = &limits.manual_clock {
            wasi.wall_clock(clocks::Manual(clock.clone()));
        }
        let wasi = wasi.build();
        Self {
            state,
            phase: Phase::Init,
            limiter: MemoryLimiter::new(limits.memory_limit_bytes),
            stdio,
            labels,
            max_key_bytes: limits.max_state_key_bytes,
            max_value_bytes: limits.max_state_value_bytes,
            max_pending_bytes: limits.max_pending_state_bytes,
            max_scan_bytes: limits.max_scan_bytes,
            tables: limits.tables.clone(),
            clock_origin: std::time::Instant::now(),
            frozen_clock: limits.deterministic,
            call_deadline: std::time::Instant::now() + limits.call_timeout(),
            wait_cut: Arc::default(),
            timers: TimerQueue::default(),
            earliest_cut: None,
            cut_floor: i64::MAX,
            processing_cut_offset: limits
                .deterministic
                .then(|| i64::try_from(limits.max_out_of_orderness_ms).unwrap_or(i64::MAX)),
            wasi,
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl super::bindings::weir::transform::types::Host for HostState {}
