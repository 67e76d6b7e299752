//! What runs a transform over a batch: the seam between the engine, which provides it,
//! and the pipeline and `weir test`, which drive it.

use super::{EngineError, GuestFault, InputRecord, OutputRecord};
use crate::state::{PartitionState, StateError};
use crate::time::Timer;

/// Something that runs a transform's `process` over a batch while owning the
/// partition's state: a Wasm [`Instance`](crate::engine::Instance), or native code in
/// benchmarks and tests that measure the host path without Wasm.
pub trait Processor {
    /// Process `records` (one partition, offset order). State writes go to
    /// [`state`](Processor::state); the caller scopes and rolls them back. Timers do
    /// not fire here: the caller fires them between runs ([`fire_timers`]).
    ///
    /// [`fire_timers`]: Processor::fire_timers
    fn process(&mut self, records: &[InputRecord]) -> Result<Vec<OutputRecord>, ProcessError>;

    /// The partition's state.
    fn state(&mut self) -> &mut PartitionState;

    /// How many of `records` (what is left of a batch) to run before firing timers:
    /// up to the first record that meets a watermark at or past a pending event
    /// timer. At least 1; all of them for a transform without timers.
    fn run_end(&mut self, records: &[InputRecord]) -> Result<usize, StateError> {
        Ok(records.len())
    }

    /// Fire one group of the timers due now (event-time ones at the watermark the
    /// records so far have left, then processing-time ones), deleting them; `None`
    /// when none is due.
    fn fire_timers(&mut self) -> Result<Option<Fired>, FireError> {
        Ok(None)
    }

    /// Fire timers one per group (`true`) or many: a fault in a group does not say
    /// which timer caused it, so the caller asks for them one at a time to find out.
    fn isolate_timers(&mut self, _one_at_a_time: bool) {}

    /// Delete a pending timer (one that failed, so that it does not fire again). A
    /// processor that keeps timers anywhere besides the state (the engine's
    /// [`Instance`](crate::engine::Instance) holds the earliest in memory) overrides
    /// this to keep them in step.
    fn delete_timer(&mut self, timer: &Timer) {
        self.state().delete(timer.state_key());
    }
}

/// A group of timers that fired, and their outputs.
#[derive(Debug)]
pub struct Fired {
    pub timers: Vec<Timer>,
    pub outputs: Vec<OutputRecord>,
}

/// Why a group of timers produced nothing.
#[derive(Debug, thiserror::Error)]
pub enum FireError {
    /// The guest failed on the group: one timer when it said which, else all of them.
    #[error("the transform failed on a timer: {reason}")]
    Failed {
        timers: Vec<Timer>,
        reason: TimerFault,
    },
    #[error(transparent)]
    Host(StateError),
    #[error("cannot restart the transform after a fault: {0}")]
    Restart(EngineError),
}

/// Why a `process` call produced no outputs.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The transform refused one record: a decision about the data.
    #[error("the transform rejected the record: {message}")]
    Rejected { index: usize, message: String },
    /// The guest misbehaved: the policy applies to the record that triggers it.
    #[error(transparent)]
    Fault(GuestFault),
    /// A timer set during the call falls due before record `at` (> 0): the caller
    /// must roll the call back and run the records before `at` alone, so that the
    /// timer fires between the records around its time.
    #[error("a timer falls due before record {at} of the call")]
    Cut { at: usize },
    /// The host failed; no record is to blame and the pipeline must stop.
    #[error(transparent)]
    Host(StateError),
    /// The instance could not be re-created after a fault.
    #[error("cannot restart the transform after a fault: {0}")]
    Restart(EngineError),
}

/// How `on-timers` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimerFault {
    #[error("rejected by the transform: {message}")]
    Rejected { message: String },
    #[error(transparent)]
    Fault(GuestFault),
}
