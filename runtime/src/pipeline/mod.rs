//! Running records through a transform: batches, per-record failure isolation and the
//! error policy, which `weir test` and Kafka pipelines share; and, for Kafka, the
//! partition [`worker`] and the group [`runner`] that starts and stops workers.

mod batch;
pub mod control;
mod position;
pub mod runner;
pub mod versions;
pub mod worker;

pub use batch::{BatchError, BatchOutcome, FailureReason, RecordFailure, run_batch};

use serde::{Deserialize, Serialize};

use crate::engine::{EngineError, GuestFault};
use crate::engine::{InputRecord, OutputRecord};
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

/// What to do with a record the transform cannot process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorPolicy {
    /// Drop the record, log it, and go on.
    Skip,
    /// Set the record aside with its error (the dead-letter topic) and go on.
    DeadLetter,
    /// Stop the pipeline; nothing after the last checkpoint is committed.
    #[default]
    Fail,
}
