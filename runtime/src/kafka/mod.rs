//! Everything that talks to Kafka: client settings, the embedded broker, topic setup,
//! the per-partition producer, and record conversion. The partition lifecycle that
//! uses them lives in [`crate::pipeline`].

pub mod embedded;
pub mod partitioner;
pub mod producer;
pub mod records;
pub mod topics;

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::config::KafkaConfig;

/// How long a single broker round trip (metadata, commit, init) may take before Weir
/// gives up and reports it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The client id prefix under which a group member advertises its admin URL, so other
/// members find it in the group's description (see `daemon::routing`).
pub const ADMIN_URL_PREFIX: &str = "weir|";

/// The client id a group member uses to advertise `admin_url`.
pub fn advertising_client_id(admin_url: &str) -> String {
    format!("{ADMIN_URL_PREFIX}{admin_url}")
}

/// Where the brokers are and the pass-through properties, resolved (the embedded
/// broker's address filled in).
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub bootstrap: String,
    pub properties: Vec<(String, String)>,
    pub consumer_properties: Vec<(String, String)>,
    pub producer_properties: Vec<(String, String)>,
}

impl ClientSettings {
    /// Settings for `config`; `bootstrap` replaces `"embedded"` when the in-process
    /// broker runs.
    pub fn new(config: &KafkaConfig, bootstrap: &str) -> Self {
        let strings = |properties: &std::collections::BTreeMap<_, crate::config::PropertyValue>| {
            properties
                .iter()
                .map(|(k, v): (&String, _)| (k.clone(), v.to_string()))
                .collect()
        };
        Self {
            bootstrap: bootstrap.to_owned(),
            properties: strings(&config.properties),
            consumer_properties: strings(&config.consumer_properties),
            producer_properties: strings(&config.producer_properties),
        }
    }

    /// Settings for `bootstrap` alone.
    pub fn plain(bootstrap: &str) -> Self {
        Self {
            bootstrap: bootstrap.to_owned(),
            properties: Vec::new(),
            consumer_properties: Vec::new(),
            producer_properties: Vec::new(),
        }
    }

    /// Producers get `key = value` unless the config sets `key` itself.
    pub fn producer_default(mut self, key: &str, value: String) -> Self {
        let set = |props: &[(String, String)]| props.iter().any(|(k, _)| k == key);
        if !set(&self.properties) && !set(&self.producer_properties) {
            self.producer_properties.push((key.to_owned(), value));
        }
        self
    }

    /// A client config with the brokers and the common pass-through properties, for
    /// admin and metadata clients.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// [`client_config`](Self::client_config) plus the consumer properties.
    pub fn consumer_config(&self) -> ClientConfig {
        let mut config = self.client_config();
        for (key, value) in &self.consumer_properties {
            config.set(key, value);
        }
        config
    }

    /// [`client_config`](Self::client_config) plus the producer properties.
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = self.client_config();
        for (key, value) in &self.producer_properties {
            config.set(key, value);
        }
        config
    }
}

/// A Kafka operation failed: what Weir was doing, the client's error, and a hint.
#[derive(Debug, thiserror::Error)]
#[error("{action}: {source}{}", hint(source))]
pub struct KafkaFailure {
    pub action: String,
    #[source]
    pub source: KafkaError,
}

impl KafkaFailure {
    pub fn new(action: impl Into<String>, source: KafkaError) -> Self {
        Self {
            action: action.into(),
            source,
        }
    }

    /// The broker fenced the producer: its transaction outlived
    /// `transaction.timeout.ms`, or a newer producer took its transactional id.
    pub fn is_fenced(&self) -> bool {
        matches!(
            self.source.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::Fenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::ProducerFenced
            )
        )
    }

    /// The producer can no longer be used, though nothing is wrong with the pipeline:
    /// fenced, or given up after librdkafka left a call unanswered (see
    /// `producer::ThreadProducer::send_offsets`). A new producer with the same
    /// transactional id carries on from the last checkpoint.
    pub fn needs_new_producer(&self) -> bool {
        self.is_fenced()
            || self.source.rdkafka_error_code() == Some(RDKafkaErrorCode::OperationTimedOut)
    }

    /// A failure the partition survives by going back to its last checkpoint: the
    /// transaction must be aborted (a rebalance bumped the group generation, say), or a
    /// plain offset commit met a rebalance.
    pub fn is_recoverable(&self) -> bool {
        if self.is_fenced() {
            return false;
        }
        let abortable = match &self.source {
            KafkaError::Transaction(error) => error.txn_requires_abort(),
            _ => false,
        };
        abortable
            || matches!(
                self.source.rdkafka_error_code(),
                Some(
                    RDKafkaErrorCode::RebalanceInProgress
                        | RDKafkaErrorCode::IllegalGeneration
                        | RDKafkaErrorCode::UnknownMemberId
                        | RDKafkaErrorCode::FencedInstanceId
                )
            )
    }
}

/// A consumer error librdkafka recovers from by itself: a broker unreachable for now
/// (one of the bootstrap addresses, a broker restarting, a leader moving).
pub fn is_transient(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::LeaderNotAvailable
        )
    )
}

/// The end of a partition, which a consumer with `enable.partition.eof` reports as an
/// error (once on the partition's queue, and again to its context's error callback).
pub fn is_end_of_partition(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
    )
}

/// What to do about the common failures.
fn hint(error: &KafkaError) -> &'static str {
    match error.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::Resolve
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::MessageTimedOut,
        ) => ". Check that the brokers in kafka.brokers are up and reachable from this host",
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed,
        ) => ". The broker refused this principal: grant it the ACLs listed in the README",
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => {
            ". Check the sasl.* and ssl.* settings under [kafka.properties]"
        }
        Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch) => {
            ". Another Weir instance now owns this partition; this one lets it go"
        }
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            ". Create the topic, or check its name in the config"
        }
        _ => "",
    }
}
