//! Running records through a transform: batches, per-record failure isolation and the
//! error policy, which `weir test` and Kafka pipelines share; and, for Kafka, the
//! group [`runner`], its processing [`thread`]s and the partitions ([`task`]s) they run.

mod batch;
pub mod context;
pub mod control;
mod position;
pub mod runner;
mod task;
mod thread;
pub mod versions;

pub use batch::{BatchError, BatchOutcome, FailureReason, RecordFailure, run_batch};

pub use crate::config::ErrorPolicy;
pub use crate::engine::{ProcessError, Processor};
