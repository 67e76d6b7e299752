//! A pipeline as a consumer-group member: the group consumer, and the starters that
//! bring a newly assigned partition up to its committed offset before one of the
//! daemon's processing threads (`pipeline::pool`, shared by every pipeline) runs it.
//!
//! Membership is cooperative-sticky, so a rebalance revokes only the partitions that
//! move. Each partition's messages go to its own queue (split off the consumer before
//! the partition is assigned, so none reach the group queue), which its thread polls;
//! the runner thread only polls the group queue, which serves rebalances.
//!
//! A partition assigned goes to the thread owning the fewest; one of the daemon's
//! starters (`pipeline::starter`) restores its state and hands it to that thread. On
//! revocation the callback waits until the partition is gone from its thread, after the
//! thread's checkpoint, so the next owner starts from everything this one did. A lost
//! partition (the session expired) is let go without committing: another member may
//! already own it, and its commit would be refused anyway.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Message, TopicPartitionList};

use crate::config::GroupProtocol;
use crate::kafka::KafkaFailure;

use super::context::{PipelineContext, TaskError};
pub use super::control::Partition;
use super::control::{
    Command, Failure, PartitionMailbox, PartitionStatus, Phase, RunId, Stop, ThreadFailure,
};
use super::pool::ProcessingPool;
use super::starter::Job;
use super::task::{Assigned, TableConsumer, table_consumer};

/// How often the runner polls the group queue (serving rebalances and heartbeats).
const GROUP_POLL: Duration = Duration::from_millis(100);

/// How often the pipeline's state directory is measured for its disk quota (a walk of
/// every store's directory): what it can write between two measurements is how far
/// past the quota it can go. Without a quota, only for the metric.
const DISK_EVERY: Duration = Duration::from_secs(1);
const DISK_EVERY_WITHOUT_QUOTA: Duration = Duration::from_secs(10);

/// Measures the disk the pipeline's stores take, now and then, for its quota and
/// `weir_pipeline_state_size_bytes`.
#[derive(Default)]
struct DiskWatch {
    measured: Option<Instant>,
}

impl DiskWatch {
    fn measure(&mut self, ctx: &PipelineContext) {
        let quota = &ctx.state_quota;
        let every = match quota.limit() {
            Some(_) => DISK_EVERY,
            None => DISK_EVERY_WITHOUT_QUOTA,
        };
        if self.measured.is_some_and(|at| at.elapsed() < every) {
            return;
        }
        self.measured = Some(Instant::now());
        let used = crate::state::stores_size(&ctx.state_dir);
        quota.measured(used);
        ctx.metrics.pipeline_state(&ctx.name, used, quota.limit());
    }
}

/// A partition this member owns: which thread runs it, and how to reach it.
#[derive(Debug)]
pub struct Owned {
    pub commands: PartitionMailbox,
    pub status: Arc<PartitionStatus>,
    thread: usize,
    cancel: Arc<AtomicBool>,
    /// Disconnected once the partition is dropped, wherever it was (see
    /// [`Assigned::gone`]).
    gone: Receiver<()>,
}

/// The partitions a pipeline owns right now, shared with the admin API.
pub type OwnedPartitions = Arc<Mutex<BTreeMap<Partition, Owned>>>;

/// The group consumer's context: assigns partitions to threads and lets them go.
pub struct GroupContext {
    ctx: Arc<PipelineContext>,
    run: RunId,
    /// The consumer this context belongs to, to split partition queues off it.
    consumer: OnceLock<Weak<BaseConsumer<GroupContext>>>,
    pool: Arc<ProcessingPool<GroupContext>>,
    owned: OwnedPartitions,
    failure: Arc<Failure>,
    /// Reads the tables of every partition this run owns, if the pipeline has any.
    tables: Option<Arc<TableConsumer>>,
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
                let keys = partitions
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                self.release(keys, stop);
            }
            Rebalance::Error(error) => {
                tracing::error!(pipeline = %self.ctx.name, %error, "rebalance failed");
            }
        }
    }
}

impl GroupContext {
    /// Hand each newly assigned partition to the thread owning the fewest, through a
    /// starter.
    fn assign(&self, partitions: &TopicPartitionList) {
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            return;
        };
        let mut owned = self.owned.lock().unwrap_or_else(|p| p.into_inner());
        for element in partitions.elements() {
            let key = (element.topic().to_owned(), element.partition());
            if owned.contains_key(&key) {
                continue;
            }
            let Some(queue) = consumer.split_partition_queue(&key.0, key.1) else {
                // Left without a queue the partition would stand still while assigned:
                // fail the pipeline, whose restart assigns it again.
                tracing::error!(topic = %key.0, partition = key.1, "cannot split the partition queue");
                self.failure.set(
                    None,
                    ThreadFailure {
                        partition: Some(Box::new((self.run, key))),
                        error: TaskError::NoQueue,
                    },
                );
                continue;
            };
            let thread = self.pool.pick();
            let status = Arc::new(PartitionStatus::new());
            let cancel = Arc::new(AtomicBool::new(false));
            let (gone_tx, gone) = mpsc::channel();
            let handle = self.pool.thread(thread);
            let assigned = Assigned {
                run: self.run,
                failure: self.failure.clone(),
                changelog_topic: self.ctx.changelog_topic(&key.0),
                metrics: self.ctx.metrics.partition(&self.ctx.name, &key.0, key.1),
                ctx: self.ctx.clone(),
                topic: key.0.clone(),
                partition: key.1,
                consumer: consumer.clone(),
                queue,
                tables: self.tables.clone(),
                status: status.clone(),
                cancel: cancel.clone(),
                gone: gone_tx,
            };
            tracing::info!(pipeline = %self.ctx.name, topic = %key.0, partition = key.1, thread, "partition assigned");
            owned.insert(
                key,
                Owned {
                    commands: PartitionMailbox {
                        run: self.run,
                        partition: (assigned.topic.clone(), assigned.partition),
                        mailbox: handle.mailbox.clone(),
                    },
                    status,
                    thread,
                    cancel,
                    gone,
                },
            );
            self.pool.starter().submit(Job {
                assigned,
                thread,
                adopt: handle.adopt.clone(),
                wake: handle.wake.clone(),
            });
        }
    }

    /// Let `partitions` go and wait until each is gone from its thread (or starter).
    fn release(&self, partitions: Vec<Partition>, stop: Stop) {
        let mut owned = self.owned.lock().unwrap_or_else(|p| p.into_inner());
        let mut by_thread: BTreeMap<usize, Vec<Partition>> = BTreeMap::new();
        let mut leaving = Vec::new();
        for key in partitions {
            if let Some(entry) = owned.remove(&key) {
                entry.cancel.store(true, Ordering::Release);
                by_thread.entry(entry.thread).or_default().push(key.clone());
                leaving.push((key, entry.gone, entry.status, entry.thread));
            }
        }
        drop(owned);
        // Partitions still waiting for a starter go at once: a revocation must not wait
        // behind other partitions' restores.
        self.pool.starter().drop_cancelled();
        for (thread, partitions) in by_thread {
            self.pool.thread(thread).mailbox.send(Command::Release {
                run: self.run,
                partitions,
                stop,
            });
        }
        for ((topic, partition), gone, status, thread) in leaving {
            let _ = gone.recv();
            self.pool.unload(thread);
            // A partition a thread ran says "released"; one let go while starting,
            // which never said "running", says so instead.
            if matches!(status.phase(), Phase::Running | Phase::Paused) {
                tracing::info!(pipeline = %self.ctx.name, %topic, partition, ?stop, "partition released");
            } else {
                tracing::info!(pipeline = %self.ctx.name, %topic, partition, ?stop, "partition let go before it started");
            }
        }
    }

    /// Let every partition go with a final checkpoint.
    fn stop_all(&self) {
        let all: Vec<Partition> = self
            .owned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        self.release(all, Stop::Checkpoint);
    }
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
        source: Box<TaskError>,
    },
    #[error("pipeline {pipeline:?}, processing thread {thread}: {source}")]
    Thread {
        pipeline: String,
        thread: usize,
        #[source]
        source: Box<TaskError>,
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
    pool: Arc<ProcessingPool<GroupContext>>,
    shutdown: &AtomicBool,
) -> Result<(), PipelineError> {
    let failure = Arc::new(Failure::default());
    let tables = table_consumer(&ctx)?;
    let context = GroupContext {
        ctx: ctx.clone(),
        run: RunId::next(),
        consumer: OnceLock::new(),
        pool,
        owned: ctx.partitions.clone(),
        failure: failure.clone(),
        tables: tables.clone(),
    };
    let mut config = ctx.settings.consumer_config();
    if let Some(url) = ctx.advertised_url.get()
        && config.get("client.id").is_none()
    {
        config.set("client.id", crate::kafka::advertising_client_id(url));
    }
    // The pipeline's share of the daemon's fetch buffer, unless the config says
    // otherwise (its consumer_properties win).
    for (key, value) in [
        ("queued.max.messages.kbytes", ctx.fetch_queue_kbytes),
        ("fetch.message.max.bytes", ctx.fetch_bytes),
    ] {
        let alias = (key == "fetch.message.max.bytes").then_some("max.partition.fetch.bytes");
        if config.get(key).is_none() && alias.is_none_or(|a| config.get(a).is_none()) {
            config.set(key, value.to_string());
        }
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
    let subscribed = consumer
        .subscribe(&topics)
        .map_err(|e| KafkaFailure::new(format!("cannot subscribe to {topics:?}"), e));
    if let Err(error) = subscribed {
        consumer.context().stop_all();
        return Err(error.into());
    }
    tracing::info!(pipeline = %ctx.name, group = %ctx.group, inputs = ?topics, "joined the consumer group");

    let mut stray = None;
    let mut disk = DiskWatch::default();
    while !shutdown.load(Ordering::Acquire) && !failure.is_set() {
        disk.measure(&ctx);
        // The table consumer's own queue has only its events: each table partition's
        // records go to its task's queue.
        // A record here reached no reader (a bug), and its table would miss it: stop.
        if let Some(tables) = &tables
            && let Some(Ok(message)) = tables.poll(Duration::ZERO)
        {
            stray = Some((
                message.topic().to_owned(),
                message.partition(),
                message.offset(),
            ));
            break;
        }
        match consumer.poll(GROUP_POLL) {
            None => {}
            Some(Ok(message)) => {
                // Queues are split before assignment, so this is a bug; the thread of
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
    let failed = failure.take();
    match failed {
        Some((
            _,
            ThreadFailure {
                partition: Some(at),
                error,
            },
        )) => Err(PipelineError::Partition {
            pipeline: ctx.name.clone(),
            topic: at.1.0,
            partition: at.1.1,
            source: Box::new(error),
        }),
        Some((
            thread,
            ThreadFailure {
                partition: None,
                error,
            },
        )) => Err(PipelineError::Thread {
            pipeline: ctx.name.clone(),
            thread: thread.unwrap_or_default(),
            source: Box::new(error),
        }),
        None => Ok(()),
    }
}
