//! `weir:transform/timers`: a guest's timers, kept as state entries of the partition
//! ([`crate::time::timers`]), so they are buffered, rolled back and checkpointed with
//! the writes of the record that set them.

use wasmtime::Result;

use super::HostState;
use crate::engine::bindings::weir::transform::timers::Host;
use crate::engine::bindings::weir::transform::types::TimeDomain as WireDomain;
use crate::time::{TimeDomain, Timer};

impl From<WireDomain> for TimeDomain {
    fn from(domain: WireDomain) -> Self {
        match domain {
            WireDomain::EventTime => TimeDomain::Event,
            WireDomain::ProcessingTime => TimeDomain::Processing,
        }
    }
}

impl From<TimeDomain> for WireDomain {
    fn from(domain: TimeDomain) -> Self {
        match domain {
            TimeDomain::Event => WireDomain::EventTime,
            TimeDomain::Processing => WireDomain::ProcessingTime,
        }
    }
}

impl Host for HostState {
    fn set(&mut self, domain: WireDomain, at: i64, key: Vec<u8>) -> Result<()> {
        // Held to a state write's limits: the key's length, the pending bytes, the quota.
        self.check_limits(&key, Some(&[]))?;
        let domain = domain.into();
        self.timers
            .set(&mut self.state, Timer::new(domain, at, key));
        let cut_at = match domain {
            TimeDomain::Event => Some(at),
            TimeDomain::Processing => self.processing_cut_offset.map(|o| at.saturating_sub(o)),
        };
        if let Some(cut_at) = cut_at.filter(|c| *c > self.cut_floor) {
            self.earliest_cut = Some(self.earliest_cut.map_or(cut_at, |e| e.min(cut_at)));
        }
        Ok(())
    }

    fn delete(&mut self, domain: WireDomain, at: i64, key: Vec<u8>) -> Result<()> {
        self.check_limits(&key, None)?;
        self.timers
            .delete(&mut self.state, &Timer::new(domain.into(), at, key));
        Ok(())
    }
}
