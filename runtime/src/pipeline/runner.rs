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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Message, TopicPartitionList};

use crate::kafka::KafkaFailure;

use super::control::{Command, PartitionStatus, Stop};
use super::worker::{PipelineContext, Worker, WorkerError};

/// How often the runner polls the group queue (serving rebalances and heartbeats).
const GROUP_POLL: Duration = Duration::from_millis(100);

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
                tracing::error!(topic = %key.0, partition = key.1, "cannot split the partition queue");
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
            );
            let failure = self.failure.clone();
            let failed = self.failed.clone();
            let registry = Arc::downgrade(&self.workers);
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
                            // Another member owns the partition now. Forget the worker, so
                            // that a later assignment of the partition starts a new one.
                            tracing::info!(%pipeline, topic = %partition.0, partition = partition.1, "partition taken over by another instance");
                            if let Some(workers) = registry.upgrade() {
                                workers.lock().unwrap_or_else(|p| p.into_inner()).remove(&partition);
                            }
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
    };
    let mut config = ctx.settings.consumer_config();
    if let Some(url) = ctx.advertised_url.get()
        && config.get("client.id").is_none()
    {
        config.set("client.id", crate::daemon::routing::client_id(url));
    }
    let consumer: BaseConsumer<GroupContext> = config
        .set("group.id", &ctx.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
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
