//! A pipeline as a consumer-group member: the group consumer, a fixed pool of
//! processing threads sharing its partitions, and the starters that bring a newly
//! assigned partition up to its committed offset before a thread runs it.
//!
//! Membership is cooperative-sticky, so a rebalance revokes only the partitions that
//! move. Each partition's messages go to its own queue (split off the consumer before
//! the partition is assigned, so none reach the group queue), which its thread polls;
//! the runner thread only polls the group queue, which serves rebalances.
//!
//! A partition assigned goes to the thread owning the fewest; a starter restores its
//! state (several partitions at a time, each from its own changelog) and hands it to
//! that thread. On revocation the callback waits until the partition is gone from its
//! thread, after the thread's checkpoint, so the next owner starts from everything
//! this one did. A lost partition (the session expired) is let go without committing:
//! another member may already own it, and its commit would be refused anyway.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Message, TopicPartitionList};

use crate::config::GroupProtocol;
use crate::kafka::KafkaFailure;

use super::context::{PipelineContext, TaskError};
pub use super::control::Partition;
use super::control::{Command, Mailbox, PartitionMailbox, PartitionStatus, Phase, Stop, Wake};
use super::task::{Assigned, Task};
use super::thread::{ProcessingThread, ThreadFailure};

/// How often the runner polls the group queue (serving rebalances and heartbeats).
const GROUP_POLL: Duration = Duration::from_millis(100);

/// How many partitions of a pipeline start (restore) at once.
const STARTERS: usize = 4;

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

/// The first failure of a thread or a start; the runner stops the pipeline on it.
#[derive(Debug, Default)]
struct Failure {
    slot: Mutex<Option<(Option<usize>, ThreadFailure)>>,
    failed: AtomicBool,
}

impl Failure {
    fn set(&self, thread: Option<usize>, failure: ThreadFailure) {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert((thread, failure));
        self.failed.store(true, Ordering::Release);
    }

    fn is_set(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }
}

/// A processing thread as the runner sees it.
struct ThreadHandle<C: ConsumerContext + 'static> {
    mailbox: Mailbox,
    adopt: Sender<Task<C>>,
    wake: Arc<Wake>,
    join: Mutex<Option<JoinHandle<()>>>,
}

/// The group consumer's context: assigns partitions to threads and lets them go.
pub struct GroupContext {
    ctx: Arc<PipelineContext>,
    /// The consumer this context belongs to, to split partition queues off it.
    consumer: OnceLock<Weak<BaseConsumer<GroupContext>>>,
    threads: OnceLock<Vec<ThreadHandle<GroupContext>>>,
    starter: Arc<Starter<GroupContext>>,
    owned: OwnedPartitions,
    failure: Arc<Failure>,
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
        let (Some(consumer), Some(threads)) = (
            self.consumer.get().and_then(Weak::upgrade),
            self.threads.get(),
        ) else {
            return;
        };
        let mut owned = self.owned.lock().unwrap_or_else(|p| p.into_inner());
        let mut load = vec![0_usize; threads.len()];
        for entry in owned.values() {
            load[entry.thread] += 1;
        }
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
                        partition: Some(Box::new(key)),
                        error: TaskError::NoQueue,
                    },
                );
                continue;
            };
            let thread = (0..load.len()).min_by_key(|&t| load[t]).unwrap_or(0);
            load[thread] += 1;
            let status = Arc::new(PartitionStatus::new());
            let cancel = Arc::new(AtomicBool::new(false));
            let (gone_tx, gone) = mpsc::channel();
            let handle = &threads[thread];
            let assigned = Assigned {
                changelog_topic: self.ctx.changelog_topic(&key.0),
                metrics: self.ctx.metrics.partition(&self.ctx.name, &key.0, key.1),
                ctx: self.ctx.clone(),
                topic: key.0.clone(),
                partition: key.1,
                consumer: consumer.clone(),
                queue,
                status: status.clone(),
                cancel: cancel.clone(),
                gone: gone_tx,
            };
            tracing::info!(pipeline = %self.ctx.name, topic = %key.0, partition = key.1, thread, "partition assigned");
            owned.insert(
                key,
                Owned {
                    commands: PartitionMailbox {
                        partition: (assigned.topic.clone(), assigned.partition),
                        mailbox: handle.mailbox.clone(),
                    },
                    status,
                    thread,
                    cancel,
                    gone,
                },
            );
            self.starter.submit(Job {
                assigned,
                thread,
                adopt: handle.adopt.clone(),
                wake: handle.wake.clone(),
            });
        }
    }

    /// Let `partitions` go and wait until each is gone from its thread (or starter).
    fn release(&self, partitions: Vec<Partition>, stop: Stop) {
        let Some(threads) = self.threads.get() else {
            return;
        };
        let mut owned = self.owned.lock().unwrap_or_else(|p| p.into_inner());
        let mut by_thread: BTreeMap<usize, Vec<Partition>> = BTreeMap::new();
        let mut leaving = Vec::new();
        for key in partitions {
            if let Some(entry) = owned.remove(&key) {
                entry.cancel.store(true, Ordering::Release);
                by_thread.entry(entry.thread).or_default().push(key.clone());
                leaving.push((key, entry.gone, entry.status));
            }
        }
        drop(owned);
        // Partitions still waiting for a starter go at once: a revocation must not wait
        // behind other partitions' restores.
        self.starter.drop_cancelled();
        for (thread, partitions) in by_thread {
            threads[thread]
                .mailbox
                .send(Command::Release { partitions, stop });
        }
        for ((topic, partition), gone, status) in leaving {
            let _ = gone.recv();
            // A partition a thread ran says "released"; one let go while starting,
            // which never said "running", says so instead.
            if matches!(status.phase(), Phase::Running | Phase::Paused) {
                tracing::info!(pipeline = %self.ctx.name, %topic, partition, ?stop, "partition released");
            } else {
                tracing::info!(pipeline = %self.ctx.name, %topic, partition, ?stop, "partition let go before it started");
            }
        }
    }

    /// Stop every thread with a final checkpoint.
    fn stop_all(&self) {
        let all: Vec<Partition> = self
            .owned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        self.release(all, Stop::Checkpoint);
        for handle in self.threads.get().into_iter().flatten() {
            handle.mailbox.send(Command::Shutdown);
            let join = handle.join.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(join) = join {
                let _ = join.join();
            }
        }
    }
}

/// A partition to start, and the thread that runs it once started.
struct Job<C: ConsumerContext + 'static> {
    assigned: Assigned<C>,
    thread: usize,
    adopt: Sender<Task<C>>,
    wake: Arc<Wake>,
}

/// Starts partitions on up to [`STARTERS`] short-lived threads: restoring state is
/// slow and must not hold up the processing threads' other partitions.
struct Starter<C: ConsumerContext + 'static> {
    /// Jobs waiting, and how many starter threads run.
    queue: Mutex<(VecDeque<Job<C>>, usize)>,
    failure: Arc<Failure>,
    pipeline: String,
}

impl<C: ConsumerContext + 'static> Starter<C> {
    fn submit(self: &Arc<Self>, job: Job<C>) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.0.push_back(job);
        if queue.1 >= STARTERS {
            return;
        }
        queue.1 += 1;
        let this = self.clone();
        std::thread::Builder::new()
            .name("weir-starter".into())
            .spawn(move || this.work())
            .expect("spawning a partition starter");
    }

    /// Drop the waiting jobs whose partitions were let go.
    fn drop_cancelled(&self) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.0.retain(|job| !job.assigned.is_cancelled());
    }

    fn work(&self) {
        loop {
            let job = {
                let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                match queue.0.pop_front() {
                    Some(job) => job,
                    None => {
                        queue.1 -= 1;
                        return;
                    }
                }
            };
            self.start(job);
        }
    }

    fn start(&self, job: Job<C>) {
        let key = (job.assigned.topic.clone(), job.assigned.partition);
        if job.assigned.is_cancelled() {
            return;
        }
        let started = std::time::Instant::now();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.assigned.start()));
        let error = match outcome {
            Ok(Ok(task)) => {
                tracing::debug!(pipeline = %self.pipeline, topic = %key.0, partition = key.1, elapsed_ms = started.elapsed().as_millis() as u64, "partition started");
                // A thread that ended drops it, which is all a revocation waits for.
                let _ = job.adopt.send(task);
                job.wake.notify();
                return;
            }
            Ok(Err(TaskError::Stopped)) => return,
            Ok(Err(error)) => error,
            Err(panic) => TaskError::Panicked(panic_message(&panic)),
        };
        tracing::error!(pipeline = %self.pipeline, topic = %key.0, partition = key.1, %error, "partition failed to start");
        self.failure.set(
            Some(job.thread),
            ThreadFailure {
                partition: Some(Box::new(key)),
                error,
            },
        );
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
        "cannot keep the instance id in {path}: {source}. Weir needs to write its data \
         directory"
    )]
    InstanceId {
        path: String,
        #[source]
        source: std::io::Error,
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

/// This member's id in the pipeline's transactional ids: random, kept in the state
/// directory so that a restarted daemon takes its predecessor's ids (and fences it at
/// once) while two daemons never share one.
fn instance_id(ctx: &PipelineContext) -> Result<String, PipelineError> {
    let path = ctx.state_dir.join("instance-id");
    let failed = |source| PipelineError::InstanceId {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(failed(error)),
    }
    use std::hash::BuildHasher;
    let id = format!(
        "{:016x}",
        std::hash::RandomState::new().hash_one(std::time::SystemTime::now())
    );
    std::fs::create_dir_all(&ctx.state_dir).map_err(failed)?;
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, &id).map_err(failed)?;
    std::fs::rename(&temporary, &path).map_err(failed)?;
    Ok(id)
}

/// Start the pipeline's processing threads.
fn spawn_threads(
    ctx: &Arc<PipelineContext>,
    consumer: &Arc<BaseConsumer<GroupContext>>,
    instance: &str,
    failure: &Arc<Failure>,
) -> Vec<ThreadHandle<GroupContext>> {
    (0..ctx.threads.max(1))
        .map(|index| {
            let (commands_tx, commands) = mpsc::channel();
            let (adopt, adopted) = mpsc::channel();
            let wake = Arc::new(Wake::default());
            let thread = ProcessingThread::new(
                ctx.clone(),
                index,
                instance,
                consumer.clone(),
                adopted,
                commands,
                wake.clone(),
            );
            let failure = failure.clone();
            let pipeline = ctx.name.clone();
            let join = std::thread::Builder::new()
                .name(format!("weir-{index}-{pipeline}").chars().take(15).collect())
                .spawn(move || {
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| thread.run()));
                    let failed = match outcome {
                        Ok(Ok(())) => return,
                        Ok(Err(failed)) => failed,
                        Err(panic) => TaskError::Panicked(panic_message(&panic)).into(),
                    };
                    tracing::error!(%pipeline, thread = index, partition = ?failed.partition, error = %failed.error, "processing thread failed");
                    failure.set(Some(index), failed);
                })
                .expect("spawning a processing thread");
            ThreadHandle {
                mailbox: Mailbox::new(commands_tx, wake.clone()),
                adopt,
                wake,
                join: Mutex::new(Some(join)),
            }
        })
        .collect()
}

/// Run `ctx`'s pipeline over `inputs` until `shutdown` is set or a partition fails.
/// On shutdown every partition checkpoints and the member leaves the group.
pub fn run(
    ctx: Arc<PipelineContext>,
    inputs: &[String],
    shutdown: &AtomicBool,
) -> Result<(), PipelineError> {
    let instance = instance_id(&ctx)?;
    let failure = Arc::new(Failure::default());
    let context = GroupContext {
        ctx: ctx.clone(),
        consumer: OnceLock::new(),
        threads: OnceLock::new(),
        starter: Arc::new(Starter {
            queue: Mutex::default(),
            failure: failure.clone(),
            pipeline: ctx.name.clone(),
        }),
        owned: ctx.partitions.clone(),
        failure: failure.clone(),
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
    let threads = spawn_threads(&ctx, &consumer, &instance, &failure);
    let _ = consumer.context().threads.set(threads);
    let topics: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let subscribed = consumer
        .subscribe(&topics)
        .map_err(|e| KafkaFailure::new(format!("cannot subscribe to {topics:?}"), e));
    if let Err(error) = subscribed {
        consumer.context().stop_all();
        return Err(error.into());
    }
    tracing::info!(pipeline = %ctx.name, group = %ctx.group, inputs = ?topics, threads = ctx.threads, "joined the consumer group");

    let mut stray = None;
    while !shutdown.load(Ordering::Acquire) && !failure.is_set() {
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
    let failed = failure
        .slot
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    match failed {
        Some((
            _,
            ThreadFailure {
                partition: Some(at),
                error,
            },
        )) => Err(PipelineError::Partition {
            pipeline: ctx.name.clone(),
            topic: at.0,
            partition: at.1,
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
