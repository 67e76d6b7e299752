//! A processing thread: the loop that runs many partitions (tasks) with one producer
//! per guarantee, in the spirit of Kafka Streams' stream threads. The daemon runs a fixed pool of them
//! (`pipeline::pool`) for all its pipelines, so threads and producers (and their broker
//! connections) do not grow with partitions or pipelines.
//!
//! Each round polls every task's queue without waiting and runs what came through
//! the transform; when no task had records the thread sleeps on its [`Wake`] (a queue
//! became non-empty, a command came, a started task was handed over). Every commit
//! interval (the shortest of its tasks' pipelines) all tasks checkpoint together, the
//! exactly-once ones in one transaction ([`checkpoint`]).
//!
//! Because the transaction is shared, what fails it is shared: a checkpoint the broker
//! refuses (a rebalance moved a group on) or a version that fails its trial sends
//! every task of the thread back to its last checkpoint, at most one commit interval
//! of work redone. A record the transform fails on is the error policy's (skipped,
//! dead-lettered, or the pipeline stops under `fail`) and costs the other tasks
//! nothing; a pipeline that stops takes its own tasks off the thread ([`recovery`]),
//! and the others go on from their last checkpoint.

mod checkpoint;
mod pending;
mod producers;
mod recovery;
mod sideline;

pub use pending::PendingBudget;

use checkpoint::Outcome;
use producers::Producers;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{Consumer, ConsumerContext};

use crate::engine::InputRecord;
use crate::kafka::{ClientSettings, KafkaFailure};

use super::context::TaskError;
use super::control::{Command, Phase, Reply, RunId, Stop, ThreadFailure, Wake};
use super::task::Task;

/// The longest a thread sleeps without looking at its commands and queues.
const POLL_SLICE: Duration = Duration::from_millis(50);

/// The commit interval of a thread without tasks (nothing to commit).
const IDLE_INTERVAL: Duration = Duration::from_secs(1);

/// One processing thread of the daemon.
pub struct ProcessingThread<C: ConsumerContext + 'static> {
    index: usize,
    producers: Producers,
    tasks: Vec<Task<C>>,
    /// The daemon's bound on uncommitted state writes, shared with the other threads.
    pending: Arc<PendingBudget>,
    /// Started tasks handed over by the starters.
    adopt: Receiver<Task<C>>,
    commands: Receiver<Command>,
    wake: Arc<Wake>,
    /// The shortest commit interval of the tasks' pipelines.
    interval: Duration,
    /// When the next checkpoint is due.
    deadline: Instant,
    /// Where the next round starts (see `round`).
    next_task: usize,
    /// Until when the tasks marked slow wait while the others run (see `round`).
    slow_wait: Option<Instant>,
    /// Told to shut down: the loop ends.
    shut_down: bool,
}

impl<C: ConsumerContext + 'static> ProcessingThread<C> {
    /// Thread `index` of the daemon with id `instance`.
    pub fn new(
        settings: ClientSettings,
        index: usize,
        instance: &str,
        adopt: Receiver<Task<C>>,
        commands: Receiver<Command>,
        wake: Arc<Wake>,
        pending: Arc<PendingBudget>,
    ) -> Self {
        Self {
            index,
            producers: Producers::new(settings, format!("weir:{instance}:{index}")),
            tasks: Vec::new(),
            pending,
            adopt,
            commands,
            wake,
            interval: IDLE_INTERVAL,
            deadline: Instant::now() + IDLE_INTERVAL,
            next_task: 0,
            slow_wait: None,
            shut_down: false,
        }
    }

    /// Run until shut down. A failure costs the tasks it concerns (see [`recovery`]),
    /// never the thread: it serves the daemon's other pipelines on.
    pub fn run(mut self) {
        let mut batch: Vec<InputRecord> = Vec::new();
        while !self.shut_down {
            let step =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.step(&mut batch)));
            match step {
                Ok(Ok(())) => {}
                Ok(Err(failure)) => self.fail_safely(failure),
                Err(panic) => {
                    self.fail_safely(TaskError::Panicked(super::panic_message(&panic)).into());
                }
            }
        }
    }

    /// [`fail`](Self::fail), and if that panics too, give every task up with what it
    /// said: the thread must go on serving (the pool keeps handing it partitions).
    fn fail_safely(&mut self, failure: ThreadFailure) {
        let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.fail(failure)));
        if let Err(panic) = failed {
            let message = super::panic_message(&panic);
            for task in std::mem::take(&mut self.tasks) {
                task.assigned.failure.set(
                    Some(self.index),
                    TaskError::Panicked(message.clone()).into(),
                );
            }
            self.producers.drop_all();
            self.retime();
        }
    }

    /// One pass of the loop: take over started tasks, serve commands, follow pauses,
    /// run a round of batches, and checkpoint when due.
    fn step(&mut self, batch: &mut Vec<InputRecord>) -> Result<(), ThreadFailure> {
        self.adopt_started()?;
        self.serve_commands()?;
        if self.shut_down {
            return Ok(());
        }
        self.follow_pauses()?;
        // Nothing is in flight while paused: every moment is a boundary.
        self.follow_active(|task| task.paused)?;
        let busy = self.round(batch)?;
        self.producers.poll();
        let held = self.pending_state_memory();
        if Instant::now() >= self.deadline || self.pending.hold(self.index, held) {
            self.end_interval()?;
            let held = self.pending_state_memory();
            self.pending.hold(self.index, held);
        }
        if !busy {
            let wait = self
                .deadline
                .saturating_duration_since(Instant::now())
                .min(POLL_SLICE);
            self.wake.wait(wait);
        }
        Ok(())
    }

    /// One batch from each running task that has records, until the commit deadline
    /// passes: a round over many busy tasks must not stretch the interval (and its
    /// transaction). The next round starts where this one stopped, so every task gets
    /// its turn. True when any task had records.
    ///
    /// A slow batch (see [`sideline`]) marks its task slow, and the thread's slow tasks
    /// then wait while the others run, for as long as that batch took (four times as
    /// long when a call in it ran out its deadline): however many slow tasks a thread
    /// has, its other tasks get at least as much time as the slow ones, so poison
    /// records or a hostile transform cost their neighbours at most half of their
    /// thread, a fifth when they time out. Waiting only yields to work: a round in which
    /// no other task had records runs the slow ones at once.
    fn round(&mut self, batch: &mut Vec<InputRecord>) -> Result<bool, ThreadFailure> {
        let mut busy = false;
        let mut sidelined = false;
        let count = self.tasks.len();
        for step in 0..count {
            if busy && Instant::now() >= self.deadline {
                self.next_task = (self.next_task + step) % count.max(1);
                return Ok(true);
            }
            let i = (self.next_task + step) % count;
            if self.tasks[i].paused {
                continue;
            }
            if self.tasks[i].slow && self.slow_wait.is_some_and(|until| until > Instant::now()) {
                sidelined = true;
                continue;
            }
            batch.clear();
            let filled = self.tasks[i].fill(batch);
            let table_records = filled.map_err(|error| self.blame(i, error))?;
            let last = batch.last().map(|r| r.offset);
            // Without records, a partition still fires its processing-time timers.
            if last.is_none()
                && !self.tasks[i]
                    .idle_timer_due()
                    .map_err(|e| self.blame(i, e))?
            {
                if table_records > 0 {
                    // Table records are state writes: they count towards the buffer.
                    busy = true;
                    if self.tasks[i].state_buffer_half_full() && !self.end_interval()? {
                        return Ok(true);
                    }
                }
                continue;
            }
            busy = true;
            let careful = batch
                .first()
                .is_some_and(|first| self.tasks[i].is_careful_at(first.offset));
            if careful {
                // This batch once kept a transaction open past its timeout: it gets a
                // transaction of its own, opened by its outputs and committed at once.
                if !self.end_interval()? {
                    return Ok(true); // rewound: these records come again
                }
            }
            let guarantee = self.tasks[i].assigned.ctx.guarantee;
            let producer = self
                .producers
                .get(guarantee)
                .expect("a task's producer is made when the task is adopted");
            match self.tasks[i].run_batch(producer, batch) {
                Ok(ran) => {
                    if let Some(last) = last {
                        self.tasks[i].advance(last);
                    }
                    let wait = sideline::wait_after(ran);
                    self.tasks[i].slow = wait.is_some();
                    if let Some(wait) = wait {
                        let until = Instant::now() + wait;
                        self.slow_wait = Some(self.slow_wait.map_or(until, |u| u.max(until)));
                    }
                }
                Err(TaskError::TrialFailed { version }) => {
                    // The interval's records go again, through the restored version.
                    self.rewind_all(&format!("version {version} failed its trial"))?;
                    self.follow_active(|_| true)?;
                    self.deadline = Instant::now() + self.interval;
                    return Ok(true);
                }
                Err(error) => {
                    let error = self.blame(i, error);
                    self.recover(error)?;
                    return Ok(true);
                }
            }
            if (careful || self.tasks[i].state_buffer_half_full()) && !self.end_interval()? {
                return Ok(true); // rewound: these records come again
            }
        }
        if sidelined && !busy {
            // Nothing else to run: the slow tasks go on now.
            self.slow_wait = None;
            return Ok(true);
        }
        Ok(busy)
    }

    /// Memory the tasks' state writes since the last checkpoint hold.
    fn pending_state_memory(&mut self) -> u64 {
        self.tasks.iter_mut().map(Task::pending_state_memory).sum()
    }

    /// A failure while running task `i`.
    fn blame(&self, i: usize, error: TaskError) -> ThreadFailure {
        ThreadFailure {
            partition: Some(Box::new(self.tasks[i].key())),
            error,
        }
    }

    /// End a commit interval: checkpoint and follow the active versions, or go back to
    /// the last checkpoint after a failure the thread survives. False when it went
    /// back (the fetches were rewound).
    fn end_interval(&mut self) -> Result<bool, ThreadFailure> {
        self.deadline = Instant::now() + self.interval;
        match self.checkpoint() {
            Ok(Outcome::Committed) => {
                self.follow_active(|_| true)?;
                if self.producers.outgrown(self.interval) {
                    // Between transactions: the next one gets a longer timeout.
                    self.producers.drop_exactly_once();
                    self.ensure_producers()?;
                }
                Ok(true)
            }
            Ok(Outcome::Rewound) => Ok(false),
            Err(failure) => {
                self.recover(failure)?;
                Ok(false)
            }
        }
    }

    /// Switch the tasks `which` selects to their pipeline's active version, if it
    /// changed. Only at a boundary: a transaction never mixes versions.
    fn follow_active(&mut self, which: impl Fn(&Task<C>) -> bool) -> Result<(), ThreadFailure> {
        for i in 0..self.tasks.len() {
            if which(&self.tasks[i]) {
                self.tasks[i]
                    .follow_active()
                    .map_err(|e| self.blame(i, e))?;
            }
        }
        Ok(())
    }

    /// Make the producers the tasks need. A failure is the first such task's.
    fn ensure_producers(&mut self) -> Result<(), ThreadFailure> {
        for i in 0..self.tasks.len() {
            let guarantee = self.tasks[i].assigned.ctx.guarantee;
            if let Err(error) = self.producers.ensure(guarantee, self.interval) {
                return Err(self.blame(i, error.into()));
            }
        }
        Ok(())
    }

    /// The commit interval is the shortest of the tasks' pipelines': a thread commits
    /// all its tasks at once, and none may wait longer than its pipeline asks.
    fn retime(&mut self) {
        let interval = self
            .tasks
            .iter()
            .map(|t| t.assigned.ctx.commit_interval)
            .min()
            .unwrap_or(IDLE_INTERVAL);
        self.deadline = self.deadline.min(Instant::now() + interval);
        self.interval = interval;
    }

    /// Take over the tasks the starters finished. A task whose partition was let go in
    /// the meantime is dropped unrun.
    fn adopt_started(&mut self) -> Result<(), ThreadFailure> {
        loop {
            let mut task = match self.adopt.try_recv() {
                Ok(task) => task,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return Ok(()),
            };
            if task.assigned.is_cancelled() {
                continue;
            }
            let wake = self.wake.clone();
            task.assigned
                .queue
                .set_nonempty_callback(move || wake.notify());
            let wake = self.wake.clone();
            task.wake_tables_with(move || wake.notify());
            task.assigned.status.set_phase(Phase::Running);
            let assigned = &task.assigned;
            tracing::info!(
                pipeline = %assigned.ctx.name,
                topic = %assigned.topic,
                partition = assigned.partition,
                thread = self.index,
                offset = task.next_offset(),
                "partition running"
            );
            task.observe_position();
            self.tasks.push(task);
            self.retime();
            // A failure is this task's: its pipeline stops, the others go on.
            self.ensure_producers()?;
        }
    }

    /// Serve the commands waiting.
    fn serve_commands(&mut self) -> Result<(), ThreadFailure> {
        loop {
            let command = match self.commands.try_recv() {
                Ok(command) => command,
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Disconnected) => Command::Shutdown,
            };
            match command {
                Command::Get {
                    run,
                    partition,
                    key,
                    reply,
                } => {
                    let found = self
                        .tasks
                        .iter_mut()
                        .find(|t| t.assigned.is(run, &partition));
                    let answer = match found {
                        Some(task) => task
                            .get_committed(&key)
                            .map_err(|e| Reply::Failed(e.to_string())),
                        None => Err(Reply::NotReady),
                    };
                    let _ = reply.send(answer);
                }
                Command::Release {
                    run,
                    partitions,
                    stop,
                } => {
                    let named = |t: &Task<C>| partitions.iter().any(|p| t.assigned.is(run, p));
                    self.release(named, stop)?;
                }
                Command::Shutdown => {
                    self.shut_down = true;
                    self.release(|_| true, Stop::Checkpoint)?;
                    return Ok(());
                }
            }
        }
    }

    /// Let the tasks `which` selects go. With [`Stop::Checkpoint`] (revoked, or the
    /// pipeline stopping) the thread checkpoints first, so the next owner starts from
    /// everything done; if that fails, the next owner redoes the records since the
    /// checkpoint before, and the tasks staying go back to it. With [`Stop::Abandon`]
    /// (lost: another member may own them already) nothing of theirs may commit, so the
    /// transaction is aborted and the tasks staying go back too. The tasks leaving are
    /// dropped before that: seeking partitions no longer assigned could only fail.
    fn release(
        &mut self,
        leaves: impl Fn(&Task<C>) -> bool,
        stop: Stop,
    ) -> Result<(), ThreadFailure> {
        if !self.tasks.iter().any(&leaves) {
            return Ok(());
        }
        let mut failed = None;
        let mut lost = false;
        match stop {
            Stop::Checkpoint => match self.checkpoint() {
                Ok(_) => {}
                // A Kafka failure came before the commit.
                Err(failure) if matches!(failure.error, TaskError::Kafka(_)) => {
                    tracing::warn!(thread = self.index, error = %failure.error, "the last checkpoint before letting partitions go failed; their next owner redoes the records since the one before");
                    failed = Some(failure);
                }
                // Local state failed after the commit: going back would redo
                // committed records.
                Err(failure) => return Err(failure),
            },
            Stop::Abandon => {
                lost = self
                    .tasks
                    .iter_mut()
                    .filter(|t| leaves(t))
                    .any(Task::is_dirty)
            }
        }
        let (leaving, staying): (Vec<_>, Vec<_>) = std::mem::take(&mut self.tasks)
            .into_iter()
            .partition(&leaves);
        self.tasks = staying;
        self.next_task = 0;
        for mut task in leaving {
            task.discard();
            release_metrics(&task);
        }
        self.retime();
        if let Some(failure) = failed {
            // The tasks staying go back to their last checkpoint, whatever the failure.
            if self.recover(failure).is_err() {
                self.rewind_all("the last checkpoint before a release failed")?;
            }
        } else if lost {
            self.rewind_all("partitions were lost (the session expired)")?;
        }
        Ok(())
    }

    /// Pause the tasks whose pipeline was paused since (after a checkpoint: pausing
    /// leaves nothing in flight), and resume those whose pipeline was resumed.
    fn follow_pauses(&mut self) -> Result<(), ThreadFailure> {
        let flipped = |t: &Task<C>| t.assigned.ctx.paused.load(Ordering::Relaxed) != t.paused;
        // Every loop of the thread asks: no allocation unless something changed.
        if !self.tasks.iter().any(flipped) {
            return Ok(());
        }
        // Read once more, and keep: a pipeline paused between two reads would be
        // paused below without the checkpoint before.
        let changed: Vec<bool> = self
            .tasks
            .iter()
            .map(|t| t.assigned.ctx.paused.load(Ordering::Relaxed) != t.paused)
            .collect();
        if !changed.contains(&true) {
            return Ok(());
        }
        if (0..self.tasks.len()).any(|i| changed[i] && !self.tasks[i].paused) {
            // Committed or rewound: either way nothing uncommitted is left in flight.
            self.end_interval()?;
        }
        for (i, changed) in changed.into_iter().enumerate() {
            if changed && i < self.tasks.len() {
                let pause = !self.tasks[i].paused;
                set_paused(&mut self.tasks[i], pause).map_err(|e| self.blame(i, e.into()))?;
            }
        }
        Ok(())
    }
}

/// Pause or resume fetching a task's partition.
fn set_paused<C: ConsumerContext + 'static>(
    task: &mut Task<C>,
    pause: bool,
) -> Result<(), KafkaFailure> {
    let assigned = &task.assigned;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&assigned.topic, assigned.partition);
    let result = if pause {
        assigned.consumer.pause(&tpl)
    } else {
        assigned.consumer.resume(&tpl)
    };
    result.map_err(|e| KafkaFailure::new("cannot pause or resume fetching", e))?;
    task.pause_tables(pause)?;
    let assigned = &task.assigned;
    assigned
        .status
        .set_phase(if pause { Phase::Paused } else { Phase::Running });
    tracing::info!(pipeline = %assigned.ctx.name, topic = %assigned.topic, partition = assigned.partition, paused = pause, "partition paused or resumed");
    task.paused = pause;
    Ok(())
}

fn release_metrics<C: ConsumerContext + 'static>(task: &Task<C>) {
    let assigned = &task.assigned;
    assigned
        .ctx
        .metrics
        .release_partition(&assigned.ctx.name, &assigned.topic, assigned.partition);
}
