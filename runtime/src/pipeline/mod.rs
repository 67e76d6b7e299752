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

pub use crate::config::ErrorPolicy;
pub use crate::engine::{ProcessError, Processor};
