//! What runs a transform over a batch: the seam between the engine, which provides it,
//! and the pipeline and `weir test`, which drive it.

use super::{EngineError, GuestFault, InputRecord, OutputRecord};
use crate::state::{PartitionState, StateError};

/// Something that runs a transform's `process` over a batch while owning the
/// partition's state: a Wasm [`Instance`](crate::engine::Instance), or native code in
/// benchmarks and tests that measure the host path without Wasm.
pub trait Processor {
    /// Process `records` (one partition, offset order). State writes go to
    /// [`state`](Processor::state); the caller scopes and rolls them back.
    fn process(&mut self, records: &[InputRecord]) -> Result<Vec<OutputRecord>, ProcessError>;

    /// The partition's state.
    fn state(&mut self) -> &mut PartitionState;
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
    /// The host failed; no record is to blame and the pipeline must stop.
    #[error(transparent)]
    Host(StateError),
    /// The instance could not be re-created after a fault.
    #[error("cannot restart the transform after a fault: {0}")]
    Restart(EngineError),
}
