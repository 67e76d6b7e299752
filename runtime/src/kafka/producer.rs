//! The producer of one processing thread: the outputs, changelog records and dead
//! letters of all its partitions, in Kafka transactions under exactly-once or
//! idempotently under at-least-once.
//!
//! Exactly-once works as Kafka Streams' `exactly_once_v2` (KIP-447): one transaction
//! per thread checkpoint, the input offsets of each pipeline's group committed with
//! that group consumer's metadata, so the group coordinator refuses the offsets of a
//! member that no longer owns the partitions (a zombie), and its whole transaction
//! aborts. The transactional id only fences earlier incarnations of the same thread
//! (`weir:<instance>:<n>`, the instance id kept in the data directory), so a restarted
//! daemon aborts what its predecessor left open at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext, PurgeConfig};
use rdkafka::{ClientContext, Message, TopicPartitionList};

use super::{ClientSettings, KafkaFailure, REQUEST_TIMEOUT};

/// What a produced record is, for its delivery report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum RecordKind {
    Output = 0,
    Changelog = 1,
    DeadLetter = 2,
}

/// The last changelog offset delivered to each changelog partition.
pub type ChangelogPositions = HashMap<String, HashMap<i32, i64>>;

/// Delivery reports, gathered between checkpoints.
#[derive(Debug, Default)]
struct Deliveries {
    /// The first failed delivery since the last checkpoint.
    failure: Mutex<Option<KafkaError>>,
    /// The last changelog record delivered to each changelog partition.
    last_changelog: Mutex<ChangelogPositions>,
}

/// Routes delivery reports into [`Deliveries`].
#[derive(Clone)]
pub struct DeliveryContext(Arc<Deliveries>);

impl ClientContext for DeliveryContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka producer error");
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, kind: usize) {
        match result {
            Ok(message) if kind == RecordKind::Changelog as usize => {
                let mut last = self
                    .0
                    .last_changelog
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                let partitions = match last.get_mut(message.topic()) {
                    Some(partitions) => partitions,
                    None => last.entry(message.topic().to_owned()).or_default(),
                };
                let offset = partitions.entry(message.partition()).or_insert(-1);
                *offset = (*offset).max(message.offset());
            }
            Ok(_) => {}
            // Records an abort purged: the abort itself dropped them on purpose, and
            // their reports may arrive after the next transaction began.
            Err((error, _))
                if matches!(
                    error.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
                ) => {}
            Err((error, _)) => {
                let mut failure = self.0.failure.lock().unwrap_or_else(|p| p.into_inner());
                failure.get_or_insert_with(|| error.clone());
            }
        }
    }
}

/// One record to produce.
pub struct Outgoing<'a> {
    pub topic: &'a str,
    /// `None` partitions by key (murmur2, like Java clients).
    pub partition: Option<i32>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Option<OwnedHeaders>,
    pub timestamp: Option<i64>,
    pub kind: RecordKind,
}

/// The timeout `send_offsets_to_transaction` is given, which librdkafka may not keep.
const OFFSETS_TIMEOUT: Duration = Duration::from_secs(20);

/// How long that call may take before the producer is given up as stuck (see
/// [`ThreadProducer::send_offsets`]): past its own timeout, and within the daemon's
/// 30 s shutdown grace, so a shutdown during a coordinator outage still ends in time.
const STUCK_AFTER: Duration = Duration::from_secs(25);

/// How long a flush sleeps when no delivery report is waiting: a checkpoint sees its
/// last ack at most this late, and a waiting thread wakes 5,000 times a second, a few
/// microseconds each, instead of spinning.
const DRAIN_PAUSE: Duration = Duration::from_micros(200);

/// A thread of the producer's own for `send_offsets_to_transaction` calls, so that a
/// call that never returns (see [`ThreadProducer::send_offsets`]) strands this thread,
/// not the processing thread. It holds a reference to the producer, which it drops,
/// destroying the producer, once the producer's owner is gone and any call returned.
struct OffsetsCaller {
    calls: mpsc::SyncSender<(TopicPartitionList, ConsumerGroupMetadata)>,
    answers: mpsc::Receiver<KafkaResult<()>>,
    /// A call did not come back in time: the thread may answer it any time later, so
    /// no other call is made through it.
    abandoned: AtomicBool,
}

impl OffsetsCaller {
    fn start(producer: Arc<BaseProducer<DeliveryContext>>) -> Self {
        let (calls, jobs) = mpsc::sync_channel::<(TopicPartitionList, ConsumerGroupMetadata)>(1);
        let (done, answers) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("weir-txn-offsets".into())
            .spawn(move || {
                for (offsets, group) in jobs {
                    let result =
                        producer.send_offsets_to_transaction(&offsets, &group, OFFSETS_TIMEOUT);
                    if done.send(result).is_err() {
                        break;
                    }
                }
            })
            .expect("spawning the transactional offsets thread");
        Self {
            calls,
            answers,
            abandoned: AtomicBool::new(false),
        }
    }
}

/// Why a commit did not go through.
#[derive(Debug)]
pub enum CommitError {
    /// The transaction did not commit (it must be aborted, or the broker aborted it).
    NotCommitted(KafkaFailure),
    /// No answer came: the transaction may or may not have committed. A new producer
    /// with the same transactional id settles it (its initialisation completes a
    /// commit the coordinator prepared, or aborts), and the group's committed offsets
    /// then tell which.
    InDoubt(KafkaFailure),
}

/// The producer of one processing thread.
pub struct ThreadProducer {
    /// Shared only with the offsets thread (see `send_offsets`).
    producer: Arc<BaseProducer<DeliveryContext>>,
    /// For transactional producers.
    offsets: Option<OffsetsCaller>,
    deliveries: Arc<Deliveries>,
    transactional: bool,
    /// Whether a transaction is open (one begins at once after each commit or abort;
    /// if that failed, with the next record or commit).
    open: std::cell::Cell<bool>,
    /// [`STUCK_AFTER`], shorter in tests.
    stuck_after: Duration,
}

impl ThreadProducer {
    /// A transactional producer with `transactional_id`, or an idempotent one without.
    /// A transactional producer is initialised here, which fences earlier owners.
    pub fn new(
        settings: &ClientSettings,
        transactional_id: Option<&str>,
        transaction_timeout: Duration,
    ) -> Result<Self, KafkaFailure> {
        let mut config = settings.producer_config();
        // Defaults a config may override: a short linger batches a checkpoint's records;
        // murmur2 places keys where Java clients (Kafka Streams) would.
        for (key, default) in [("linger.ms", "5"), ("partitioner", "murmur2_random")] {
            if config.get(key).is_none() {
                config.set(key, default);
            }
        }
        config.set("enable.idempotence", "true");
        if let Some(id) = transactional_id {
            config.set("transactional.id", id);
            // A timeout set in [kafka.producer_properties] stands (config validation
            // keeps it above the commit interval).
            if config.get("transaction.timeout.ms").is_none() {
                config.set(
                    "transaction.timeout.ms",
                    transaction_timeout.as_millis().to_string(),
                );
            }
        }
        let deliveries = Arc::new(Deliveries::default());
        let producer: Arc<BaseProducer<DeliveryContext>> = config
            .create_with_context(DeliveryContext(deliveries.clone()))
            .map(Arc::new)
            .map_err(|e| KafkaFailure::new("cannot create a Kafka producer", e))?;
        let this = Self {
            offsets: transactional_id.map(|_| OffsetsCaller::start(producer.clone())),
            producer,
            deliveries,
            transactional: transactional_id.is_some(),
            open: std::cell::Cell::new(false),
            stuck_after: STUCK_AFTER,
        };
        if let Some(id) = transactional_id {
            this.producer
                .init_transactions(REQUEST_TIMEOUT)
                .map_err(|e| {
                    KafkaFailure::new(format!("cannot initialise transactions for {id:?}"), e)
                })?;
            this.begin()?;
        }
        Ok(this)
    }

    /// Begin a transaction unless one is open.
    fn begin(&self) -> Result<(), KafkaFailure> {
        if self.transactional && !self.open.get() {
            self.producer
                .begin_transaction()
                .map_err(|e| self.failure("cannot begin a transaction", e))?;
            self.open.set(true);
        }
        Ok(())
    }

    /// A failure of `action`, naming the error behind a fatal one: once a producer is
    /// fenced, every later call fails with `Fatal`, and the caller must still see that
    /// it was fenced (the thread renews its producer; the pipeline goes on).
    fn failure(&self, action: impl Into<String>, error: KafkaError) -> KafkaFailure {
        let mut action = action.into();
        let error = match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Fatal) => match self.producer.client().fatal_error() {
                Some((code, reason)) => {
                    action = format!("{action} ({reason})");
                    KafkaError::Global(code)
                }
                None => error,
            },
            _ => error,
        };
        KafkaFailure::new(action, error)
    }

    /// Queue one record. Waits while librdkafka's queue is full, for as long as a
    /// request may take: a queue that stays full that long (a broker that stopped
    /// acknowledging, or a record larger than the whole queue, which librdkafka
    /// reports as full too) fails the send rather than hold the thread for ever.
    pub fn send(&self, record: Outgoing<'_>) -> Result<(), KafkaFailure> {
        self.begin()?;
        let mut base = BaseRecord::with_opaque_to(record.topic, record.kind as usize);
        if let Some(headers) = record.headers {
            base = base.headers(headers);
        }
        if let Some(key) = record.key {
            base = base.key(key);
        }
        if let Some(value) = record.value {
            base = base.payload(value);
        }
        if let Some(timestamp) = record.timestamp {
            base = base.timestamp(timestamp);
        }
        if let Some(partition) = record.partition {
            base = base.partition(partition);
        }
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            match self.producer.send(base) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if Instant::now() < deadline =>
                {
                    base = back;
                    self.serve_or_wait(Duration::from_millis(1));
                }
                Err((error @ KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    return Err(self.failure(
                        format!(
                            "the producer's queue stayed full for {REQUEST_TIMEOUT:?} while \
                             sending to {:?} (the brokers stopped acknowledging, or the record \
                             is larger than the queue: raise [memory] output_buffer_bytes)",
                            record.topic
                        ),
                        error,
                    ));
                }
                Err((error, _)) => {
                    return Err(
                        self.failure(format!("cannot produce to {:?}", record.topic), error)
                    );
                }
            }
        }
    }

    /// Serve delivery reports without blocking.
    pub fn poll(&self) {
        self.producer.poll(Duration::ZERO);
    }

    /// Wait until every queued record is acknowledged. Returns the offset of the last
    /// changelog record of each changelog partition written, or the first delivery
    /// failure.
    pub fn flush(&self) -> Result<ChangelogPositions, KafkaFailure> {
        self.drain(REQUEST_TIMEOUT)
            .map_err(|e| self.failure("records were not acknowledged in time", e))?;
        let failure = self
            .deliveries
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(error) = failure {
            return Err(self.failure("the broker refused a record", error));
        }
        Ok(std::mem::take(
            &mut *self
                .deliveries
                .last_changelog
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        ))
    }

    /// Wait until every record sent is answered, serving delivery reports as they
    /// come. rdkafka's `flush` polls in 100 ms slices and the reports arrive between
    /// its checks, which added 100 ms to every checkpoint.
    fn drain(&self, timeout: Duration) -> KafkaResult<()> {
        let deadline = std::time::Instant::now() + timeout;
        while self.producer.in_flight_count() > 0 {
            if std::time::Instant::now() >= deadline {
                return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
            }
            self.serve_or_wait(DRAIN_PAUSE);
        }
        Ok(())
    }

    /// Serve the delivery reports waiting, or sleep `pause` when there is none.
    ///
    /// Not `poll(timeout)`: rdkafka's poll loops until its deadline and hands
    /// librdkafka the time left in whole milliseconds, so its last millisecond (and
    /// all of a 1 ms poll) is a busy loop of non-blocking polls. Waiting for acks that
    /// way kept both processing threads of a 2-core machine spinning through every
    /// checkpoint's flush, most of their time in a windowed count on Kafka, starving
    /// the broker on the same cores.
    fn serve_or_wait(&self, pause: Duration) {
        let before = self.producer.in_flight_count();
        self.producer.poll(Duration::ZERO);
        if self.producer.in_flight_count() == before {
            std::thread::sleep(pause);
        }
    }

    /// Commit the transaction with the input offsets of each group (a thread serves
    /// several pipelines, each a group: Kafka takes the offsets of many groups into
    /// one transaction). Only for transactional producers.
    pub fn commit(
        &self,
        groups: Vec<(TopicPartitionList, ConsumerGroupMetadata)>,
    ) -> Result<(), CommitError> {
        debug_assert!(self.transactional);
        self.begin().map_err(CommitError::NotCommitted)?;
        for (offsets, group) in groups {
            self.send_offsets(offsets, group)
                .map_err(CommitError::NotCommitted)?;
        }
        let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
        loop {
            match self.producer.commit_transaction(REQUEST_TIMEOUT) {
                Ok(()) => {
                    self.open.set(false);
                    // It committed: a failure to begin the next one is the next
                    // record's to report.
                    if let Err(error) = self.begin() {
                        tracing::debug!(%error, "cannot begin the next transaction yet");
                    }
                    return Ok(());
                }
                // librdkafka says so when calling again is safe (the commit timed out).
                Err(KafkaError::Transaction(error))
                    if error.is_retriable() && std::time::Instant::now() < deadline =>
                {
                    tracing::debug!(%error, "committing the transaction again");
                }
                Err(error) => {
                    let failure = self.failure("cannot commit the transaction", error);
                    return Err(if failure.is_recoverable() || failure.is_fenced() {
                        CommitError::NotCommitted(failure)
                    } else {
                        CommitError::InDoubt(failure)
                    });
                }
            }
        }
    }

    /// `send_offsets_to_transaction`, on the producer's offsets thread, waited for at
    /// most [`STUCK_AFTER`]. librdkafka (2.12, and later releases so far) does not
    /// enforce this call's timeout when the group coordinator goes away mid-call
    /// (confluentinc/librdkafka#5456, #5511): it can block for good, and with it the
    /// thread, a rebalance waiting for its partitions to stop, and the pipeline,
    /// silently. Seen here with a broker SIGKILLed for 8 s. A call that outlives the
    /// wait fails the checkpoint with a timeout; the thread then creates a new producer
    /// with the same transactional id, whose initialisation fences this one, and the
    /// stranded thread ends whenever librdkafka answers it.
    fn send_offsets(
        &self,
        offsets: TopicPartitionList,
        group: ConsumerGroupMetadata,
    ) -> Result<(), KafkaFailure> {
        let action = "cannot add input offsets to the transaction";
        let caller = self
            .offsets
            .as_ref()
            .expect("transactional producers have an offsets thread");
        let timed_out = || {
            KafkaFailure::new(
                format!(
                    "{action}: no answer within {} s while the group coordinator was \
                     unavailable or moving",
                    self.stuck_after.as_secs()
                ),
                KafkaError::Global(RDKafkaErrorCode::OperationTimedOut),
            )
        };
        if caller.abandoned.load(Ordering::Relaxed) {
            return Err(timed_out());
        }
        let gone = || {
            KafkaFailure::new(
                format!("{action}: the offsets thread is gone (it panicked)"),
                KafkaError::Global(RDKafkaErrorCode::Fail),
            )
        };
        caller.calls.send((offsets, group)).map_err(|_| gone())?;
        match caller.answers.recv_timeout(self.stuck_after) {
            Ok(result) => result.map_err(|e| self.failure(action, e)),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(gone()),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                caller.abandoned.store(true, Ordering::Relaxed);
                tracing::error!(
                    waited_s = self.stuck_after.as_secs(),
                    "librdkafka's send_offsets_to_transaction did not return (a known librdkafka \
                     bug when the group coordinator moves: confluentinc/librdkafka#5456); \
                     giving this producer up"
                );
                Err(timed_out())
            }
        }
    }

    /// Abort the open transaction, if any (its records become invisible to
    /// read_committed consumers). What the aborted records' delivery reports said is
    /// forgotten: the next checkpoint answers only for its own records.
    pub fn abort(&self) -> Result<(), KafkaFailure> {
        if !self.transactional || !self.open.get() {
            return Ok(());
        }
        // librdkafka aborts only once every record's delivery report was served, and
        // only polling serves them: drop what is still queued, then poll until the
        // records in flight are answered (a flush), or the abort waits in vain.
        self.producer.purge(PurgeConfig::default().queue());
        if let Err(error) = self.drain(REQUEST_TIMEOUT) {
            tracing::debug!(%error, "records still in flight before an abort");
        }
        self.producer
            .abort_transaction(REQUEST_TIMEOUT)
            .map_err(|e| self.failure("cannot abort the transaction", e))?;
        self.open.set(false);
        // Forget what the aborted records' reports said.
        self.producer.poll(Duration::ZERO);
        self.deliveries
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        self.deliveries
            .last_changelog
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.begin()
    }

    pub fn is_transactional(&self) -> bool {
        self.transactional
    }

    #[cfg(test)]
    fn stuck_after(mut self, wait: Duration) -> Self {
        self.stuck_after = wait;
        self
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use rdkafka::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::mocking::{MockCluster, MockCoordinator};

    use super::*;

    fn record(value: &[u8]) -> Outgoing<'_> {
        Outgoing {
            topic: "out",
            partition: Some(0),
            key: None,
            value: Some(value),
            headers: None,
            timestamp: None,
            kind: RecordKind::Output,
        }
    }

    /// An abort purges the records still queued; their delivery reports (purge
    /// errors) must not fail the next transaction's checkpoint.
    #[test]
    fn records_an_abort_purged_do_not_fail_the_next_checkpoint() {
        let cluster = MockCluster::new(1).expect("a mock cluster");
        cluster.create_topic("out", 1, 1).expect("topic");
        let mut settings = ClientSettings::plain(&cluster.bootstrap_servers());
        // Records wait in the queue long enough for the abort to purge them.
        settings
            .producer_properties
            .push(("linger.ms".into(), "2000".into()));
        let producer = ThreadProducer::new(&settings, Some("purge-test"), Duration::from_secs(60))
            .expect("a transactional producer");
        for _ in 0..100 {
            producer.send(record(b"aborted")).unwrap();
        }
        producer.abort().expect("abort");
        producer.send(record(b"committed")).unwrap();
        producer
            .flush()
            .expect("the next transaction's records are acknowledged");
    }

    /// librdkafka does not time out `send_offsets_to_transaction` while the group
    /// coordinator is down (confluentinc/librdkafka#5456): a checkpoint then blocked
    /// its partition, and the rebalance waiting for it, for good. The commit must come
    /// back with an error the partition fails on.
    #[test]
    fn a_commit_comes_back_while_the_group_coordinator_is_down() {
        let cluster = MockCluster::new(2).expect("a mock cluster");
        cluster.create_topic("out", 1, 1).expect("topic");
        cluster
            .coordinator(MockCoordinator::Transaction("stuck-test".into()), 1)
            .expect("transaction coordinator");
        cluster
            .coordinator(MockCoordinator::Group("stuck-group".into()), 2)
            .expect("group coordinator");
        let settings = ClientSettings::plain(&cluster.bootstrap_servers());
        let producer = ThreadProducer::new(&settings, Some("stuck-test"), Duration::from_secs(60))
            .expect("a transactional producer")
            .stuck_after(Duration::from_secs(3));
        producer.send(record(b"x")).unwrap();
        producer.flush().expect("delivered");
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", "stuck-group")
            .create()
            .expect("a consumer");
        let group = consumer.group_metadata().expect("group metadata");
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset("in", 0, rdkafka::Offset::Offset(1))
            .unwrap();

        cluster.broker_down(2).expect("group coordinator down");
        let started = Instant::now();
        let outcome = producer.commit(vec![(offsets.clone(), group)]);
        let took = started.elapsed();
        let error = match outcome.expect_err("committed with the group coordinator down") {
            CommitError::NotCommitted(error) => error,
            CommitError::InDoubt(error) => panic!("the offsets never joined: {error}"),
        };
        // librdkafka's own 20 s timeout did not end the call (it never does here); the
        // 3 s wait of this test did.
        assert_eq!(
            error.source.rdkafka_error_code(),
            Some(RDKafkaErrorCode::OperationTimedOut),
            "{error}"
        );
        assert!(
            (Duration::from_secs(3)..Duration::from_secs(10)).contains(&took),
            "the commit took {took:?}"
        );
        // The producer is given up: a second commit is refused at once.
        let again = Instant::now();
        assert!(
            producer
                .commit(vec![(offsets, consumer.group_metadata().unwrap())])
                .is_err()
        );
        assert!(again.elapsed() < Duration::from_secs(1));
    }
}
