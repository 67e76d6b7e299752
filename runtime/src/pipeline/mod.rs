//! Running records through a transform: batches, per-record failure isolation and the
//! error policy, which `weir test` and Kafka pipelines share; and, for Kafka, the
//! group [`runner`], the daemon's [`pool`] of processing [`thread`]s and the
//! partitions ([`task`]s) they run.

mod batch;
pub mod context;
pub mod control;
pub mod outputs;
pub mod pool;
mod position;
pub mod runner;
mod starter;
mod task;
mod thread;
pub mod versions;

pub use batch::{
    BatchError, BatchOutcome, FailureReason, RecordFailure, TimerFailure, run_batch,
    run_batch_within,
};

pub use crate::config::ErrorPolicy;
pub use crate::engine::{ProcessError, Processor};

/// What a caught panic said.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
