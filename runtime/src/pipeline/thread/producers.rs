//! A processing thread's producers: a transactional one for its exactly-once tasks and
//! an idempotent one for its at-least-once tasks, each made when the first task that
//! needs it arrives. A thread serves every pipeline of the daemon, so it may need both.

use std::time::Duration;

use crate::config::Guarantee;
use crate::kafka::producer::ThreadProducer;
use crate::kafka::{ClientSettings, KafkaFailure};

/// How long past the commit interval a transaction may stay open before the broker
/// aborts it (`transaction.timeout.ms`, unless set in `[kafka.producer_properties]`).
/// It bounds how long a member that died mid-transaction holds back read_committed
/// consumers of its outputs; Kafka Streams gives 10 s too.
pub(super) const TRANSACTION_SLACK: Duration = Duration::from_secs(10);

pub(super) struct Producers {
    settings: ClientSettings,
    /// `weir:<instance>:<thread>`: a restarted daemon takes its predecessor's ids, and
    /// each producer's initialisation fences the one before it.
    transactional_id: String,
    /// Whether `[kafka.producer_properties]` sets `transaction.timeout.ms` (config
    /// validation keeps it above every commit interval).
    timeout_configured: bool,
    /// With the transaction timeout it was made with.
    exactly_once: Option<(ThreadProducer, Duration)>,
    at_least_once: Option<ThreadProducer>,
}

impl Producers {
    pub(super) fn new(settings: ClientSettings, transactional_id: String) -> Self {
        let timeout_configured = settings
            .producer_config()
            .get("transaction.timeout.ms")
            .is_some();
        Self {
            settings,
            transactional_id,
            timeout_configured,
            exactly_once: None,
            at_least_once: None,
        }
    }

    pub(super) fn get(&self, guarantee: Guarantee) -> Option<&ThreadProducer> {
        match guarantee {
            Guarantee::ExactlyOnce => self.exactly_once.as_ref().map(|(p, _)| p),
            Guarantee::AtLeastOnce => self.at_least_once.as_ref(),
        }
    }

    /// The producer for `guarantee`, made now if there is none. `interval` is the
    /// thread's commit interval, which a transaction must outlast.
    pub(super) fn ensure(
        &mut self,
        guarantee: Guarantee,
        interval: Duration,
    ) -> Result<&ThreadProducer, KafkaFailure> {
        match guarantee {
            Guarantee::ExactlyOnce => {
                if self.exactly_once.is_none() {
                    let timeout = interval + TRANSACTION_SLACK;
                    let producer =
                        ThreadProducer::new(&self.settings, Some(&self.transactional_id), timeout)?;
                    self.exactly_once = Some((producer, timeout));
                }
                Ok(&self.exactly_once.as_ref().expect("just made").0)
            }
            Guarantee::AtLeastOnce => {
                if self.at_least_once.is_none() {
                    self.at_least_once =
                        Some(ThreadProducer::new(&self.settings, None, Duration::ZERO)?);
                }
                Ok(self.at_least_once.as_ref().expect("just made"))
            }
        }
    }

    /// Whether the transactional producer's timeout is too short for transactions of
    /// `interval` (tasks of a pipeline with a shorter commit interval left the thread):
    /// it must be replaced at the next boundary, or the broker would abort them.
    pub(super) fn outgrown(&self, interval: Duration) -> bool {
        !self.timeout_configured
            && self
                .exactly_once
                .as_ref()
                .is_some_and(|(_, timeout)| *timeout < interval + TRANSACTION_SLACK)
    }

    /// Abort the open transaction, if any.
    pub(super) fn abort(&self) -> Result<(), KafkaFailure> {
        match &self.exactly_once {
            Some((producer, _)) => producer.abort(),
            None => Ok(()),
        }
    }

    /// Serve delivery reports without blocking.
    pub(super) fn poll(&self) {
        if let Some((producer, _)) = &self.exactly_once {
            producer.poll();
        }
        if let Some(producer) = &self.at_least_once {
            producer.poll();
        }
    }

    /// Drop the transactional producer; the next [`ensure`](Self::ensure) makes a new
    /// one with the same transactional id, whose initialisation fences this one.
    pub(super) fn drop_exactly_once(&mut self) {
        self.exactly_once = None;
    }

    /// Drop both producers (a failure left them in doubt).
    pub(super) fn drop_all(&mut self) {
        self.exactly_once = None;
        self.at_least_once = None;
    }
}
