//! A processing thread: the loop that runs many partitions (tasks) with one producer,
//! in the spirit of Kafka Streams' stream threads.
//!
//! Each round polls every task's queue without waiting and runs what came through
//! the transform; when no task had records the thread sleeps on its [`Wake`] (a queue
//! became non-empty, a command came, a started task was handed over). Every commit
//! interval all tasks checkpoint together, in one transaction ([`checkpoint`]).
//!
//! Because the transaction is shared, what fails it is shared: a checkpoint the broker
//! refuses (a rebalance moved the group on) or a version that fails its trial sends
//! every task of the thread back to its last checkpoint, at most one commit interval
//! of work redone. A record the transform fails on is the error policy's (skipped,
//! dead-lettered, or the pipeline stops under `fail`) and costs the other tasks
//! nothing.

mod checkpoint;

use checkpoint::Outcome;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

use crate::config::Guarantee;
use crate::engine::InputRecord;
use crate::kafka::KafkaFailure;
use crate::kafka::producer::ThreadProducer;

use super::context::{PipelineContext, TaskError};
use super::control::{Command, Partition, Phase, Reply, Stop, Wake};
use super::task::{Assigned, Task};

/// The longest a thread sleeps without looking at its commands and queues.
const POLL_SLICE: Duration = Duration::from_millis(50);

/// How long past the commit interval a transaction may stay open before the broker
/// aborts it (`transaction.timeout.ms`, unless set in `[kafka.producer_properties]`).
/// It bounds how long a member that died mid-transaction holds back read_committed
/// consumers of its outputs; Kafka Streams gives 10 s too.
const TRANSACTION_SLACK: Duration = Duration::from_secs(10);

/// Why a processing thread stopped: the partition at fault, when one was.
#[derive(Debug)]
pub struct ThreadFailure {
    pub partition: Option<Box<Partition>>,
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

impl From<KafkaFailure> for ThreadFailure {
    fn from(error: KafkaFailure) -> Self {
        TaskError::from(error).into()
    }
}

/// One processing thread of a pipeline.
pub struct ProcessingThread<C: ConsumerContext + 'static> {
    ctx: Arc<PipelineContext>,
    index: usize,
    /// `<group>:<instance>:<index>` under exactly-once.
    transactional_id: Option<String>,
    consumer: Arc<BaseConsumer<C>>,
    /// Created with the first task.
    producer: Option<ThreadProducer>,
    tasks: Vec<Task<C>>,
    /// Started tasks handed over by the starters.
    adopt: Receiver<Task<C>>,
    commands: Receiver<Command>,
    wake: Arc<Wake>,
    paused: bool,
    /// Where the next round starts (see `round`).
    next_task: usize,
}

impl<C: ConsumerContext + 'static> ProcessingThread<C> {
    pub fn new(
        ctx: Arc<PipelineContext>,
        index: usize,
        instance: &str,
        consumer: Arc<BaseConsumer<C>>,
        adopt: Receiver<Task<C>>,
        commands: Receiver<Command>,
        wake: Arc<Wake>,
    ) -> Self {
        let transactional_id = (ctx.guarantee == Guarantee::ExactlyOnce)
            .then(|| format!("{}:{instance}:{index}", ctx.group));
        Self {
            ctx,
            index,
            transactional_id,
            consumer,
            producer: None,
            tasks: Vec::new(),
            adopt,
            commands,
            wake,
            paused: false,
            next_task: 0,
        }
    }

    /// Run until shut down, or until something fails that the thread cannot recover
    /// from. Whatever ends it, nothing after the last checkpoint is committed.
    pub fn run(mut self) -> Result<(), ThreadFailure> {
        let result = self.serve();
        if result.is_err() {
            for task in &mut self.tasks {
                task.discard();
            }
            if let Some(producer) = &self.producer
                && let Err(error) = producer.abort()
            {
                tracing::debug!(%error, "abort after a failure");
            }
        }
        for task in std::mem::take(&mut self.tasks) {
            self.release_metrics(&task);
        }
        result
    }

    fn serve(&mut self) -> Result<(), ThreadFailure> {
        let mut batch: Vec<InputRecord> = Vec::with_capacity(self.ctx.batch_size);
        let mut deadline = Instant::now() + self.ctx.commit_interval;
        loop {
            self.adopt_started()?;
            if self.serve_commands()? {
                return Ok(());
            }
            let pause = self.ctx.paused.load(Ordering::Relaxed);
            if pause != self.paused {
                self.set_paused(pause)?;
                deadline = Instant::now() + self.ctx.commit_interval;
                continue;
            }
            if self.paused {
                // Nothing is in flight while paused: every moment is a boundary.
                for task in &mut self.tasks {
                    task.follow_active()?;
                }
                self.wake.wait(POLL_SLICE);
                continue;
            }
            let busy = self.round(&mut batch, &mut deadline)?;
            if let Some(producer) = &self.producer {
                producer.poll();
            }
            if Instant::now() >= deadline {
                self.end_interval()?;
                deadline = Instant::now() + self.ctx.commit_interval;
            }
            if !busy {
                let wait = deadline
                    .saturating_duration_since(Instant::now())
                    .min(POLL_SLICE);
                self.wake.wait(wait);
            }
        }
    }

    /// One batch from each task that has records, until the commit deadline passes:
    /// a round over many busy tasks must not stretch the interval (and its
    /// transaction). The next round starts where this one stopped, so every task gets
    /// its turn. True when any task had records.
    fn round(
        &mut self,
        batch: &mut Vec<InputRecord>,
        deadline: &mut Instant,
    ) -> Result<bool, ThreadFailure> {
        let mut busy = false;
        let count = self.tasks.len();
        for step in 0..count {
            if busy && Instant::now() >= *deadline {
                self.next_task = (self.next_task + step) % count.max(1);
                return Ok(true);
            }
            let i = (self.next_task + step) % count;
            batch.clear();
            let filled = self.tasks[i].fill(batch);
            filled.map_err(|error| self.blame(i, error))?;
            let Some(last) = batch.last().map(|r| r.offset) else {
                continue;
            };
            busy = true;
            let careful = self.tasks[i].is_careful_at(batch[0].offset);
            if careful {
                // This batch once kept a transaction open past its timeout: it gets a
                // transaction of its own, opened by its outputs and committed at once.
                *deadline = Instant::now() + self.ctx.commit_interval;
                if !self.end_interval()? {
                    return Ok(true); // rewound: these records come again
                }
            }
            let producer = self
                .producer
                .as_ref()
                .expect("a thread with tasks has a producer");
            match self.tasks[i].run_batch(producer, batch) {
                Ok(()) => self.tasks[i].advance(last),
                Err(TaskError::TrialFailed { version }) => {
                    // The interval's records go again, through the restored version.
                    self.rewind_all(&format!("version {version} failed its trial"))?;
                    for task in &mut self.tasks {
                        task.follow_active()?;
                    }
                    *deadline = Instant::now() + self.ctx.commit_interval;
                    return Ok(true);
                }
                Err(error) => {
                    let error = self.blame(i, error);
                    self.recover(error)?;
                    return Ok(true);
                }
            }
            if careful {
                self.end_interval()?;
            }
        }
        Ok(busy)
    }

    /// A failure while running task `i`.
    fn blame(&self, i: usize, error: TaskError) -> ThreadFailure {
        ThreadFailure {
            partition: Some(Box::new(self.tasks[i].key())),
            error,
        }
    }

    /// End a commit interval: checkpoint and follow the active version, or go back to
    /// the last checkpoint after a failure the thread survives. False when it went
    /// back (the fetches were rewound).
    fn end_interval(&mut self) -> Result<bool, ThreadFailure> {
        match self.checkpoint() {
            Ok(Outcome::Committed) => {
                for task in &mut self.tasks {
                    task.follow_active()?;
                }
                Ok(true)
            }
            Ok(Outcome::Rewound) => Ok(false),
            Err(error) => {
                self.recover(error.into())?;
                Ok(false)
            }
        }
    }

    /// Go back to the last checkpoint after a Kafka failure the thread survives: a
    /// refused transaction is aborted; a producer the broker fenced (or librdkafka left
    /// hanging) is replaced. Other failures end the thread.
    fn recover(&mut self, failure: ThreadFailure) -> Result<(), ThreadFailure> {
        match &failure.error {
            TaskError::Kafka(kafka) if kafka.is_recoverable() => {
                let why = kafka.to_string();
                self.rewind_all(&why)
            }
            TaskError::Kafka(kafka) if kafka.needs_new_producer() => {
                let why = kafka.to_string();
                self.renew_producer(&why)
            }
            _ => Err(failure),
        }
    }

    /// Abort the transaction and send every task back to its last checkpoint.
    fn rewind_all(&mut self, why: &str) -> Result<(), ThreadFailure> {
        tracing::warn!(
            pipeline = %self.ctx.name,
            thread = self.index,
            partitions = self.tasks.len(),
            reason = %why,
            "going back to the last checkpoint"
        );
        let aborted = match &self.producer {
            Some(producer) => producer.abort(),
            None => Ok(()),
        };
        match aborted {
            Ok(()) => {}
            // Fenced since, or librdkafka left the abort unanswered: a new producer
            // ends the transaction for good.
            Err(failure) if failure.needs_new_producer() => {
                return self.renew_producer(&failure.to_string());
            }
            Err(failure) => return Err(failure.into()),
        }
        for i in 0..self.tasks.len() {
            self.tasks[i].rewind().map_err(|e| self.blame(i, e))?;
        }
        Ok(())
    }

    /// Replace a producer the broker fenced: a transaction of this thread outlived
    /// `transaction.timeout.ms` (the broker aborted it), or librdkafka left a call
    /// unanswered. The new producer has the same transactional id, so its
    /// initialisation fences the old one for good. Every task goes back to its last
    /// checkpoint and commits around each batch until past where it had fetched, so the
    /// same slow records do not time out again.
    fn renew_producer(&mut self, why: &str) -> Result<(), ThreadFailure> {
        tracing::warn!(
            pipeline = %self.ctx.name,
            thread = self.index,
            partitions = self.tasks.len(),
            reason = %why,
            "producer fenced: the broker aborted this thread's transaction (it outlived \
             transaction.timeout.ms) or librdkafka left it hanging; starting the thread's \
             partitions again from their last checkpoint with a new producer"
        );
        self.producer = None;
        self.producer = Some(self.new_producer()?);
        for i in 0..self.tasks.len() {
            let task = &mut self.tasks[i];
            let until = task.fetched_to();
            task.set_careful_until(until);
            task.assigned.metrics.restarts.inc();
            task.rewind().map_err(|e| self.blame(i, e))?;
        }
        Ok(())
    }

    fn new_producer(&self) -> Result<ThreadProducer, KafkaFailure> {
        ThreadProducer::new(
            &self.ctx.settings,
            self.transactional_id.as_deref(),
            self.ctx.commit_interval + TRANSACTION_SLACK,
        )
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
            if self.producer.is_none() {
                self.producer = Some(self.new_producer().map_err(|error| ThreadFailure {
                    partition: Some(Box::new(task.key())),
                    error: error.into(),
                })?);
            }
            let wake = self.wake.clone();
            task.assigned
                .queue
                .set_nonempty_callback(move || wake.notify());
            let assigned = &task.assigned;
            if self.paused {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&assigned.topic, assigned.partition);
                self.consumer
                    .pause(&tpl)
                    .map_err(|e| KafkaFailure::new("cannot pause fetching", e))?;
                assigned.status.set_phase(Phase::Paused);
                log_paused(assigned, true);
            } else {
                assigned.status.set_phase(Phase::Running);
            }
            tracing::info!(
                pipeline = %self.ctx.name,
                topic = %assigned.topic,
                partition = assigned.partition,
                thread = self.index,
                offset = task.next_offset(),
                "partition running"
            );
            task.observe_position();
            self.tasks.push(task);
        }
    }

    /// Serve the commands waiting. True when told to shut down.
    fn serve_commands(&mut self) -> Result<bool, ThreadFailure> {
        loop {
            let command = match self.commands.try_recv() {
                Ok(command) => command,
                Err(TryRecvError::Empty) => return Ok(false),
                Err(TryRecvError::Disconnected) => Command::Shutdown,
            };
            match command {
                Command::Get {
                    partition,
                    key,
                    reply,
                } => {
                    let (topic, number) = (&partition.0, partition.1);
                    let found = self
                        .tasks
                        .iter_mut()
                        .find(|t| t.assigned.topic == *topic && t.assigned.partition == number);
                    let answer = match found {
                        Some(task) => task
                            .get_committed(&key)
                            .map_err(|e| Reply::Failed(e.to_string())),
                        None => Err(Reply::NotReady),
                    };
                    let _ = reply.send(answer);
                }
                Command::Release { partitions, stop } => {
                    let named = |topic: &str, partition| {
                        partitions
                            .iter()
                            .any(|(t, p)| t == topic && *p == partition)
                    };
                    self.release(named, stop)?;
                }
                Command::Shutdown => {
                    self.release(|_, _| true, Stop::Checkpoint)?;
                    return Ok(true);
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
        which: impl Fn(&str, i32) -> bool,
        stop: Stop,
    ) -> Result<(), ThreadFailure> {
        let leaves = |t: &Task<C>| which(&t.assigned.topic, t.assigned.partition);
        if !self.tasks.iter().any(leaves) {
            return Ok(());
        }
        let mut failed = None;
        let mut lost = false;
        match stop {
            Stop::Checkpoint => match self.checkpoint() {
                Ok(_) => {}
                // A Kafka failure came before the commit.
                Err(error @ TaskError::Kafka(_)) => {
                    tracing::warn!(pipeline = %self.ctx.name, thread = self.index, %error, "the last checkpoint before letting partitions go failed; their next owner redoes the records since the one before");
                    failed = Some(error);
                }
                // Local state failed after the commit: going back would redo
                // committed records.
                Err(error) => return Err(error.into()),
            },
            Stop::Abandon => lost = self.tasks.iter_mut().any(Task::is_dirty),
        }
        let (leaving, staying): (Vec<_>, Vec<_>) = std::mem::take(&mut self.tasks)
            .into_iter()
            .partition(leaves);
        self.tasks = staying;
        for mut task in leaving {
            task.discard();
            self.release_metrics(&task);
        }
        if let Some(error) = failed {
            // The tasks staying go back to their last checkpoint, whatever the failure.
            if self.recover(error.into()).is_err() {
                self.rewind_all("the last checkpoint before a release failed")?;
            }
        } else if lost {
            self.rewind_all("partitions were lost (the session expired)")?;
        }
        Ok(())
    }

    fn release_metrics(&self, task: &Task<C>) {
        let assigned = &task.assigned;
        self.ctx
            .metrics
            .release_partition(&self.ctx.name, &assigned.topic, assigned.partition);
    }

    /// Pause (checkpoint, then stop fetching) or resume every task.
    fn set_paused(&mut self, pause: bool) -> Result<(), ThreadFailure> {
        if pause {
            // Committed or rewound: either way nothing uncommitted is left in flight.
            self.end_interval()?;
        }
        let mut tpl = TopicPartitionList::new();
        for task in &self.tasks {
            tpl.add_partition(&task.assigned.topic, task.assigned.partition);
        }
        if tpl.count() > 0 {
            let result = if pause {
                self.consumer.pause(&tpl)
            } else {
                self.consumer.resume(&tpl)
            };
            result.map_err(|e| KafkaFailure::new("cannot pause or resume fetching", e))?;
        }
        let phase = if pause { Phase::Paused } else { Phase::Running };
        for task in &self.tasks {
            task.assigned.status.set_phase(phase);
            log_paused(&task.assigned, pause);
        }
        self.paused = pause;
        Ok(())
    }
}

fn log_paused<C: ConsumerContext + 'static>(assigned: &Assigned<C>, paused: bool) {
    tracing::info!(pipeline = %assigned.ctx.name, topic = %assigned.topic, partition = assigned.partition, paused, "partition paused or resumed");
}
