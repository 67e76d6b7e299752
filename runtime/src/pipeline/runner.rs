//! A pipeline as a consumer-group member: the group consumer, and one worker thread per
//! owned partition, started and stopped by the rebalance callbacks.
//!
//! Membership is cooperative-sticky, so a rebalance revokes only the partitions that
//! move. Each partition's messages go to its own queue (split off the consumer before
//! the partition is assigned, so none reach the group queue), which its worker polls;
//! the runner thread only polls the group queue, which serves rebalances.
//!
//! On revocation the callback waits for the worker's final checkpoint before
//! returning, so the partition's next owner starts from everything this one did. A
//! lost partition (the session expired) is abandoned without committing: another
//! member may already own it, and its commit would be fenced anyway.
//!
//! A worker whose producer is fenced stops. Usually another member owns the partition
//! now and the rebalance that says so is on its way; but the broker also fences a
//! producer whose transaction outlived `transaction.timeout.ms` (a slow interval of
//! this very instance). So a fenced partition this member still holds after
//! [`FENCE_GRACE`] is started again from its last checkpoint, instead of standing
//! still while it looks assigned.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Message, TopicPartitionList};

use crate::config::GroupProtocol;
use crate::kafka::KafkaFailure;

use super::control::{Command, PartitionStatus, Stop};
use super::worker::{PipelineContext, Worker, WorkerError};

/// How often the runner polls the group queue (serving rebalances and heartbeats).
const GROUP_POLL: Duration = Duration::from_millis(100);

/// How long a fenced partition may stay assigned before it is started again: longer
/// than a member takes to learn it left the group (a heartbeat interval, a few seconds
/// under either protocol), so a zombie never restarts what another member owns.
const FENCE_GRACE: Duration = Duration::from_secs(15);

/// An input partition: topic and partition number.
pub type Partition = (String, i32);

/// A partition this member owns: its worker thread and how to reach it.
#[derive(Debug)]
pub struct Owned {
    pub commands: Sender<Command>,
    pub status: Arc<PartitionStatus>,
    thread: JoinHandle<()>,
}

/// The partitions a pipeline owns right now, shared with the admin API.
pub type OwnedPartitions = Arc<Mutex<BTreeMap<Partition, Owned>>>;

/// The group consumer's context: owns the partition workers.
pub struct GroupContext {
    ctx: Arc<PipelineContext>,
    /// The consumer this context belongs to, to split partition queues off it.
    consumer: OnceLock<Weak<BaseConsumer<GroupContext>>>,
    workers: OwnedPartitions,
    /// The first worker failure; the runner stops the pipeline on it.
    failure: Arc<Mutex<Option<(Partition, WorkerError)>>>,
    failed: Arc<AtomicBool>,
    /// Partitions whose worker stopped fenced, since when, and that worker's status
    /// (which tells it from a later worker of the same partition).
    fenced: Arc<Mutex<Vec<Fenced>>>,
}

#[derive(Debug)]
struct Fenced {
    partition: Partition,
    since: Instant,
    status: Arc<PartitionStatus>,
}

impl ClientContext for GroupContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(pipeline = %self.ctx.name, %error, reason, "Kafka consumer error");
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => self.assign(partitions),
            Rebalance::Revoke(partitions) => {
                let stop = if consumer.assignment_lost() {
                    Stop::Abandon
                } else {
                    Stop::Checkpoint
                };
                self.revoke(partitions, stop);
            }
            Rebalance::Error(error) => {
                tracing::error!(pipeline = %self.ctx.name, %error, "rebalance failed");
            }
        }
    }
}

impl GroupContext {
    fn assign(&self, partitions: &TopicPartitionList) {
        self.start_workers(partitions, None);
    }

    /// Start a worker for each of `partitions` this member does not run yet;
    /// `careful_until` is for a partition started again after a fence.
    fn start_workers(&self, partitions: &TopicPartitionList, careful_until: Option<i64>) {
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            return;
        };
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        for element in partitions.elements() {
            let key = (element.topic().to_owned(), element.partition());
            if workers.contains_key(&key) {
                continue;
            }
            let Some(queue) = consumer.split_partition_queue(&key.0, key.1) else {
                // Left without a worker the partition would stand still while assigned:
                // fail the pipeline, whose restart assigns it again.
                tracing::error!(topic = %key.0, partition = key.1, "cannot split the partition queue");
                let mut slot = self.failure.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert((key, WorkerError::NoQueue));
                self.failed.store(true, Ordering::Release);
                continue;
            };
            let (sender, commands) = mpsc::channel();
            let status = Arc::new(PartitionStatus::new());
            let worker = Worker::new(
                self.ctx.clone(),
                key.0.clone(),
                key.1,
                consumer.clone(),
                queue,
                commands,
                status.clone(),
            )
            .careful_until(careful_until);
            let failure = self.failure.clone();
            let failed = self.failed.clone();
            let fenced = self.fenced.clone();
            let worker_status = status.clone();
            let name = format!("weir-{}-{}", key.1, key.0);
            let partition = key.clone();
            let pipeline = self.ctx.name.clone();
            let thread = std::thread::Builder::new()
                .name(name.chars().take(15).collect())
                .spawn(move || {
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run()));
                    let error = match outcome {
                        Ok(Ok(())) => return,
                        Ok(Err(error)) if error.is_fenced() => {
                            // Another member owns the partition now, or the broker timed
                            // the transaction out: the runner tells which (see FENCE_GRACE).
                            tracing::info!(%pipeline, topic = %partition.0, partition = partition.1, %error, "partition fenced: another instance took it over, or the broker aborted its transaction");
                            worker_status.set_phase(super::control::Phase::Starting);
                            fenced.lock().unwrap_or_else(|p| p.into_inner()).push(Fenced {
                                partition,
                                since: Instant::now(),
                                status: worker_status,
                            });
                            return;
                        }
                        Ok(Err(error)) => error,
                        Err(panic) => WorkerError::Panicked(panic_message(&panic)),
                    };
                    tracing::error!(%pipeline, topic = %partition.0, partition = partition.1, %error, "partition failed");
                    let mut slot = failure.lock().unwrap_or_else(|p| p.into_inner());
                    slot.get_or_insert((partition, error));
                    failed.store(true, Ordering::Release);
                })
                .expect("spawning a partition thread");
            tracing::info!(pipeline = %self.ctx.name, topic = %key.0, partition = key.1, "partition assigned");
            workers.insert(
                key,
                Owned {
                    commands: sender,
                    status,
                    thread,
                },
            );
        }
    }

    fn revoke(&self, partitions: &TopicPartitionList, stop: Stop) {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let mut stopping = Vec::new();
        for element in partitions.elements() {
            let key = (element.topic().to_owned(), element.partition());
            if let Some(owned) = workers.remove(&key) {
                let _ = owned.commands.send(Command::Stop(stop));
                stopping.push((key, owned.thread));
            }
        }
        drop(workers);
        for ((topic, partition), thread) in stopping {
            let _ = thread.join();
            tracing::info!(pipeline = %self.ctx.name, %topic, partition, ?stop, "partition released");
        }
    }

    /// Start again the fenced partitions this member still holds after [`FENCE_GRACE`];
    /// forget those a rebalance took away.
    fn restart_fenced(&self, consumer: &BaseConsumer<Self>) {
        let mut fenced = self.fenced.lock().unwrap_or_else(|p| p.into_inner());
        if fenced.is_empty() {
            return;
        }
        let Ok(assignment) = consumer.assignment() else {
            return;
        };
        let mut due = Vec::new();
        fenced.retain(|entry| {
            let (topic, partition) = &entry.partition;
            if assignment.find_partition(topic, *partition).is_none() {
                return false;
            }
            if entry.since.elapsed() < FENCE_GRACE {
                return true;
            }
            due.push((entry.partition.clone(), entry.status.clone()));
            false
        });
        drop(fenced);
        for ((topic, partition), status) in due {
            let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
            let same_worker = workers
                .get(&(topic.clone(), partition))
                .is_some_and(|owned| Arc::ptr_eq(&owned.status, &status));
            if !same_worker {
                continue;
            }
            let Some(owned) = workers.remove(&(topic.clone(), partition)) else {
                continue;
            };
            drop(workers);
            let _ = owned.thread.join();
            tracing::warn!(pipeline = %self.ctx.name, %topic, partition, "this instance still owns the fenced partition (the broker aborted a transaction that outlived transaction.timeout.ms): starting it again from its last checkpoint");
            self.ctx
                .metrics
                .partition(&self.ctx.name, &topic, partition)
                .restarts
                .inc();
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&topic, partition);
            self.start_workers(&tpl, status.fenced_at());
        }
    }

    /// Stop every worker with a final checkpoint.
    fn stop_all(&self) {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let all: Vec<_> = std::mem::take(&mut *workers).into_iter().collect();
        drop(workers);
        for (_, owned) in &all {
            let _ = owned.commands.send(Command::Stop(Stop::Checkpoint));
        }
        for ((topic, partition), owned) in all {
            let _ = owned.thread.join();
            tracing::info!(pipeline = %self.ctx.name, %topic, partition, "partition released");
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Why a pipeline stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Kafka(#[from] KafkaFailure),
    #[error("pipeline {pipeline:?}, partition {topic}/{partition}: {source}")]
    Partition {
        pipeline: String,
        topic: String,
        partition: i32,
        #[source]
        source: Box<WorkerError>,
    },
    #[error(
        "record {topic}/{partition}@{offset} reached the group queue instead of its \
         partition's queue; stopped before committing past it (this is a Weir bug)"
    )]
    Stray {
        topic: String,
        partition: i32,
        offset: i64,
    },
}

/// Run `ctx`'s pipeline over `inputs` until `shutdown` is set or a partition fails.
/// On shutdown every partition checkpoints and the member leaves the group.
pub fn run(
    ctx: Arc<PipelineContext>,
    inputs: &[String],
    shutdown: &AtomicBool,
) -> Result<(), PipelineError> {
    let failure = Arc::new(Mutex::new(None));
    let failed = Arc::new(AtomicBool::new(false));
    let context = GroupContext {
        ctx: ctx.clone(),
        consumer: OnceLock::new(),
        workers: ctx.partitions.clone(),
        failure: failure.clone(),
        failed: failed.clone(),
        fenced: Arc::default(),
    };
    let mut config = ctx.settings.consumer_config();
    if let Some(url) = ctx.advertised_url.get()
        && config.get("client.id").is_none()
    {
        config.set("client.id", crate::kafka::advertising_client_id(url));
    }
    config
        .set("group.id", &ctx.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest");
    match ctx.group_protocol {
        GroupProtocol::Classic => {
            config.set("partition.assignment.strategy", "cooperative-sticky");
        }
        GroupProtocol::Consumer => {
            config.set("group.protocol", "consumer");
        }
    }
    let consumer: BaseConsumer<GroupContext> = config
        .create_with_context(context)
        .map_err(|e| KafkaFailure::new("cannot create the group consumer", e))?;
    let consumer = Arc::new(consumer);
    let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
    let topics: Vec<&str> = inputs.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| KafkaFailure::new(format!("cannot subscribe to {topics:?}"), e))?;
    tracing::info!(pipeline = %ctx.name, group = %ctx.group, inputs = ?topics, "joined the consumer group");

    let mut stray = None;
    while !shutdown.load(Ordering::Acquire) && !failed.load(Ordering::Acquire) {
        match consumer.poll(GROUP_POLL) {
            None => {}
            Some(Ok(message)) => {
                // Queues are split before assignment, so this is a bug; the worker of
                // this partition would commit past the record, so stop instead.
                stray = Some((
                    message.topic().to_owned(),
                    message.partition(),
                    message.offset(),
                ));
                break;
            }
            Some(Err(error)) => {
                tracing::warn!(pipeline = %ctx.name, %error, "consumer error");
            }
        }
        consumer.context().restart_fenced(&consumer);
    }
    consumer.context().stop_all();
    consumer.unsubscribe();
    drop(consumer);
    if let Some((topic, partition, offset)) = stray {
        return Err(PipelineError::Stray {
            topic,
            partition,
            offset,
        });
    }
    let failure = failure.lock().unwrap_or_else(|p| p.into_inner()).take();
    match failure {
        Some(((topic, partition), source)) => Err(PipelineError::Partition {
            pipeline: ctx.name.clone(),
            topic,
            partition,
            source: Box::new(source),
        }),
        None => Ok(()),
    }
}
