//! `wasi:clocks/monotonic-clock`, with every wait ending by the call's deadline.
//!
//! WASI is linked synchronously: a guest that sleeps (subscribes to the clock, then
//! polls) blocks its processing thread inside the host, where the epoch deadline that
//! stops a loop cannot reach it, and with the thread its partitions' revocation, a
//! reload and shutdown. Here a clock subscription is ready at the latest when the
//! call's time is up, and the call then fails as a `timeout`, as a loop would: the
//! epoch deadline stops the guest as it runs on, and a guest that returns first (the
//! epoch ticker lags on a busy machine) is failed by the engine, which the cut wait
//! tells ([`HostState::wait_cut`]). A wait cut short never passes for a wait done.
//! Sleeping within the call's time is allowed (it spends that time).
//!
//! The subscriptions and `now` are replaced together so that they read one clock:
//! nanoseconds since the instance was made.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::async_trait;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

use super::HostState;
use crate::time::ManualClock;

/// The interface these functions replace, as `wasmtime_wasi` links it (guests built
/// against any 0.2 release resolve to it).
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// The wall clock of a deterministic instance: always the Unix epoch.
pub(super) struct Epoch;

impl wasmtime_wasi::HostWallClock for Epoch {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// The wall clock of an instance whose processing time is a [`ManualClock`].
pub(super) struct Manual(pub(super) ManualClock);

impl wasmtime_wasi::HostWallClock for Manual {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    /// Times before the epoch read as the epoch (WASI's clock cannot go below it).
    fn now(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.0.now()).unwrap_or(0))
    }
}

/// Ready at `until`; `cut` is raised then if `until` is the call's deadline rather
/// than the time asked for.
struct Wake {
    until: tokio::time::Instant,
    cut: Option<Arc<AtomicBool>>,
}

#[async_trait]
impl Pollable for Wake {
    async fn ready(&mut self) {
        tokio::time::sleep_until(self.until).await;
        if let Some(cut) = &self.cut {
            cut.store(true, Ordering::Release);
        }
    }
}

impl HostState {
    /// Nanoseconds on the guest's monotonic clock.
    fn monotonic_now(&self) -> u64 {
        if self.frozen_clock {
            return 0;
        }
        u64::try_from(self.clock_origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A pollable ready after `wait`, or at the call's deadline if that comes first.
    fn wake_after(&mut self, wait: Duration) -> wasmtime::Result<Resource<DynPollable>> {
        let now = std::time::Instant::now();
        let asked = now.checked_add(wait);
        let cut = asked.is_none_or(|at| at > self.call_deadline);
        let until = if cut {
            self.call_deadline
        } else {
            asked.unwrap_or(now)
        };
        let wake = Wake {
            until: tokio::time::Instant::from_std(until.max(now)),
            cut: cut.then(|| self.wait_cut.clone()),
        };
        let wake = self.table.push(wake)?;
        subscribe(&mut self.table, wake)
    }
}

/// Replace the monotonic clock's `now` and subscriptions in `linker`, which
/// `wasmtime_wasi` has filled.
pub(crate) fn bound_waits(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap("now", |store, (): ()| Ok((store.data().monotonic_now(),)))?;
    clock.func_wrap("subscribe-duration", |mut store, (nanos,): (u64,)| {
        let wake = store.data_mut().wake_after(Duration::from_nanos(nanos))?;
        Ok((wake,))
    })?;
    clock.func_wrap("subscribe-instant", |mut store, (when,): (u64,)| {
        let host = store.data_mut();
        let wait = Duration::from_nanos(when.saturating_sub(host.monotonic_now()));
        Ok((host.wake_after(wait)?,))
    })?;
    linker.allow_shadowing(false);
    Ok(())
}
