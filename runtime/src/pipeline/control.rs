//! How the rest of the daemon talks to a running partition worker: commands over a
//! channel (stop, read state), and a status it publishes through atomics so that
//! reading it never waits on the worker.

use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU32, Ordering};
use std::sync::mpsc::Sender;

use serde::Serialize;

/// How a worker is told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The partition was revoked or the pipeline stops: checkpoint, then exit.
    Checkpoint,
    /// The partition was lost (another member may already own it): exit without
    /// committing anything.
    Abandon,
}

/// Why a state read got no answer from the worker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reply {
    #[error("the partition is still starting or restoring its state; try again shortly")]
    NotReady,
    #[error("reading the state failed: {0}")]
    Failed(String),
}

/// A committed state value, or why there is none to give.
pub type StateAnswer = Result<Option<Vec<u8>>, Reply>;

/// A request to a partition worker, served between batches.
#[derive(Debug)]
pub enum Command {
    Stop(Stop),
    /// Read the committed value of a state key.
    Get {
        key: Vec<u8>,
        reply: Sender<StateAnswer>,
    },
}

/// Where a partition is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum Phase {
    Starting = 0,
    Restoring = 1,
    Running = 2,
    Paused = 3,
}

impl Phase {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Restoring,
            2 => Self::Running,
            3 => Self::Paused,
            _ => Self::Starting,
        }
    }
}

/// What a worker publishes about its partition.
#[derive(Debug, Default)]
pub struct PartitionStatus {
    phase: AtomicU8,
    version: AtomicU32,
    /// The next input offset to process; -1 before the first record.
    next_offset: AtomicI64,
    /// Records behind the high watermark; -1 when unknown.
    lag: AtomicI64,
    /// Where the fetch stood when the worker's producer was fenced; -1 if it was not.
    fenced_at: AtomicI64,
    /// Changelog records left to read while restoring, -1 otherwise.
    restore_remaining: AtomicI64,
}

/// A copy of a partition's status, for the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionSnapshot {
    pub topic: String,
    pub partition: i32,
    pub phase: Phase,
    /// The module version the partition runs (0 until it starts).
    pub version: u32,
    pub next_offset: Option<i64>,
    pub lag: Option<i64>,
    /// While restoring: changelog records left to read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_remaining: Option<i64>,
}

impl PartitionStatus {
    pub fn new() -> Self {
        Self {
            next_offset: AtomicI64::new(-1),
            lag: AtomicI64::new(-1),
            fenced_at: AtomicI64::new(-1),
            restore_remaining: AtomicI64::new(-1),
            ..Self::default()
        }
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// The worker was fenced with its fetch at `offset` (records before it were read).
    pub fn set_fenced_at(&self, offset: i64) {
        self.fenced_at.store(offset, Ordering::Relaxed);
    }

    pub fn fenced_at(&self) -> Option<i64> {
        let offset = self.fenced_at.load(Ordering::Relaxed);
        (offset >= 0).then_some(offset)
    }

    /// Changelog records left to restore; `None` once the restore is over.
    pub fn set_restore_remaining(&self, remaining: Option<i64>) {
        self.restore_remaining
            .store(remaining.unwrap_or(-1), Ordering::Relaxed);
    }

    pub fn set_version(&self, version: u32) {
        self.version.store(version, Ordering::Relaxed);
    }

    pub fn set_position(&self, next_offset: Option<i64>, lag: Option<i64>) {
        self.next_offset
            .store(next_offset.unwrap_or(-1), Ordering::Relaxed);
        self.lag.store(lag.unwrap_or(-1), Ordering::Relaxed);
    }

    pub fn snapshot(&self, topic: &str, partition: i32) -> PartitionSnapshot {
        let known = |v: i64| (v >= 0).then_some(v);
        PartitionSnapshot {
            topic: topic.to_owned(),
            partition,
            phase: Phase::from_u8(self.phase.load(Ordering::Relaxed)),
            version: self.version.load(Ordering::Relaxed),
            next_offset: known(self.next_offset.load(Ordering::Relaxed)),
            lag: known(self.lag.load(Ordering::Relaxed)),
            restore_remaining: known(self.restore_remaining.load(Ordering::Relaxed)),
        }
    }
}
