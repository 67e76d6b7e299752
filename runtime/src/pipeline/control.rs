//! How the rest of the daemon talks to a processing thread: commands over a channel
//! (let partitions go, read state, shut down), a wake-up the thread sleeps on when its
//! partitions have nothing to do, a status each partition publishes through atomics
//! so that reading it never waits on the thread, and the [`Failure`] slot through
//! which a thread tells a pipeline that it failed.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::context::TaskError;

/// An input partition: topic and partition number.
pub type Partition = (String, i32);

/// One run of a pipeline as a group member, from joining to leaving. The processing
/// threads serve every pipeline of the daemon, and two pipelines may read the same
/// topic (and a restarted pipeline the same partitions), so a thread tells its tasks
/// apart by run, not by partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(u64);

impl RunId {
    /// A run id never handed out before in this process.
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// Why a processing thread gave up tasks of a run: the partition at fault, when one
/// was (otherwise the thread's producer or transaction failed, for all its tasks).
#[derive(Debug)]
pub struct ThreadFailure {
    pub partition: Option<Box<(RunId, Partition)>>,
    pub error: TaskError,
}

impl From<TaskError> for ThreadFailure {
    fn from(error: TaskError) -> Self {
        Self {
            partition: None,
            error,
        }
    }
}

impl From<crate::kafka::KafkaFailure> for ThreadFailure {
    fn from(error: crate::kafka::KafkaFailure) -> Self {
        TaskError::from(error).into()
    }
}

/// The first failure of a run's partitions (on a processing thread or a starter): the
/// run's group loop watches it and stops the pipeline, which the daemon restarts.
#[derive(Debug, Default)]
pub struct Failure {
    slot: Mutex<Option<(Option<usize>, ThreadFailure)>>,
    failed: AtomicBool,
}

impl Failure {
    /// Keep `failure` (of processing thread `thread`, if it was one) unless an earlier
    /// one is kept already.
    pub fn set(&self, thread: Option<usize>, failure: ThreadFailure) {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert((thread, failure));
        self.failed.store(true, Ordering::Release);
    }

    pub fn is_set(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    pub fn take(&self) -> Option<(Option<usize>, ThreadFailure)> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// How partitions are let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The partition was revoked or the pipeline stops: checkpoint, then exit.
    Checkpoint,
    /// The partition was lost (another member may already own it): exit without
    /// committing anything.
    Abandon,
}

/// Why a state read got no answer from the partition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reply {
    #[error("the partition is still starting or restoring its state; try again shortly")]
    NotReady,
    #[error("reading the state failed: {0}")]
    Failed(String),
}

/// A committed state value, or why there is none to give.
pub type StateAnswer = Result<Option<Vec<u8>>, Reply>;

/// A request to a processing thread, served between batches.
#[derive(Debug)]
pub enum Command {
    /// Let these partitions of a run go (revoked or lost, or the pipeline stops).
    Release {
        run: RunId,
        partitions: Vec<Partition>,
        stop: Stop,
    },
    /// Read the committed value of a state key.
    Get {
        run: RunId,
        partition: Partition,
        key: Vec<u8>,
        reply: Sender<StateAnswer>,
    },
    /// Checkpoint every partition, let them go, and end the thread (the daemon stops).
    Shutdown,
}

/// What a processing thread sleeps on when none of its partitions has records: a
/// partition queue that gets some, a command, or a started partition handed over.
#[derive(Debug, Default)]
pub struct Wake {
    due: Mutex<bool>,
    signal: Condvar,
}

impl Wake {
    pub fn notify(&self) {
        *self.due.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.signal.notify_one();
    }

    /// Wait until notified (since the last wait) or for `timeout`.
    pub fn wait(&self, timeout: Duration) {
        let mut due = self.due.lock().unwrap_or_else(|p| p.into_inner());
        if !*due {
            due = self
                .signal
                .wait_timeout(due, timeout)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *due = false;
    }
}

/// Where a processing thread's commands go.
#[derive(Debug, Clone)]
pub struct Mailbox {
    commands: Sender<Command>,
    wake: Arc<Wake>,
}

impl Mailbox {
    pub fn new(commands: Sender<Command>, wake: Arc<Wake>) -> Self {
        Self { commands, wake }
    }

    /// False when the thread is gone.
    pub fn send(&self, command: Command) -> bool {
        let sent = self.commands.send(command).is_ok();
        self.wake.notify();
        sent
    }
}

/// The mailbox of the thread owning one partition, for requests about it.
#[derive(Debug, Clone)]
pub struct PartitionMailbox {
    pub run: RunId,
    pub partition: Partition,
    pub mailbox: Mailbox,
}

impl PartitionMailbox {
    /// Ask for the committed value of `key`; the answer comes on `reply`.
    pub fn get(&self, key: Vec<u8>, reply: Sender<StateAnswer>) -> bool {
        self.mailbox.send(Command::Get {
            run: self.run,
            partition: self.partition.clone(),
            key,
            reply,
        })
    }
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

/// What a partition publishes about itself.
#[derive(Debug, Default)]
pub struct PartitionStatus {
    phase: AtomicU8,
    version: AtomicU32,
    /// The next input offset to process; -1 before the first record.
    next_offset: AtomicI64,
    /// Records behind the high watermark; -1 when unknown.
    lag: AtomicI64,
    /// Changelog records left to read while restoring, -1 otherwise.
    restore_remaining: AtomicI64,
    /// The partition's watermark in ms (contract 0.3 transforms); `i64::MIN` when
    /// none.
    watermark: AtomicI64,
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
    /// Event time (contract 0.3 transforms): the watermark, in ms since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watermark: Option<i64>,
    /// How far the watermark trails the wall clock, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watermark_lag_ms: Option<i64>,
}

impl PartitionStatus {
    pub fn new() -> Self {
        Self {
            next_offset: AtomicI64::new(-1),
            lag: AtomicI64::new(-1),
            restore_remaining: AtomicI64::new(-1),
            watermark: AtomicI64::new(i64::MIN),
            ..Self::default()
        }
    }

    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
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

    pub fn set_watermark(&self, watermark: Option<i64>) {
        self.watermark
            .store(watermark.unwrap_or(i64::MIN), Ordering::Relaxed);
    }

    pub fn snapshot(&self, topic: &str, partition: i32) -> PartitionSnapshot {
        let known = |v: i64| (v >= 0).then_some(v);
        let watermark = Some(self.watermark.load(Ordering::Relaxed)).filter(|w| *w != i64::MIN);
        PartitionSnapshot {
            topic: topic.to_owned(),
            partition,
            phase: Phase::from_u8(self.phase.load(Ordering::Relaxed)),
            version: self.version.load(Ordering::Relaxed),
            next_offset: known(self.next_offset.load(Ordering::Relaxed)),
            lag: known(self.lag.load(Ordering::Relaxed)),
            restore_remaining: known(self.restore_remaining.load(Ordering::Relaxed)),
            watermark,
            watermark_lag_ms: watermark.map(watermark_lag_ms),
        }
    }
}

/// How far `watermark` trails the wall clock, in ms (0 when it is ahead).
pub fn watermark_lag_ms(watermark: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64);
    now.saturating_sub(watermark).max(0)
}
