//! Making sure the topics a pipeline needs exist with the right shape before it starts:
//! inputs must exist; changelogs are created compacted, partitioned like their input;
//! outputs and dead-letter topics are created when missing.

use std::collections::BTreeMap;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;

use super::{ClientSettings, KafkaFailure, REQUEST_TIMEOUT};

/// A topic a pipeline writes to, to create when missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// -1 for the broker's default.
    pub replication: i32,
    /// Compacted (`cleanup.policy=compact`): changelogs keep the latest value per key.
    pub compacted: bool,
    /// Must have exactly `partitions` partitions when it already exists.
    pub exact_partitions: bool,
}

/// Why a pipeline's topics are not usable.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error(transparent)]
    Kafka(#[from] KafkaFailure),
    #[error(
        "input topic {topic:?} does not exist on {brokers}; create it (for example with \
         `kafka-topics.sh --create --topic {topic} --partitions N`) or fix the name in the \
         config"
    )]
    MissingInput { topic: String, brokers: String },
    #[error(
        "table {table:?} reads topic {topic:?}, which does not exist on {brokers}; create \
         it compacted and partitioned like the inputs (for example `kafka-topics.sh \
         --create --topic {topic} --partitions N --config cleanup.policy=compact`) or fix \
         the name in the config"
    )]
    MissingTable {
        table: String,
        topic: String,
        brokers: String,
    },
    #[error(
        "table {table:?} reads topic {topic:?}, which has {has} partitions, but input \
         {input:?} has {needs}: a table must be partitioned like the inputs (partition p \
         of the table holds the keys of partition p of each input). Repartition one of \
         them to the same count, with the same keys and partitioner"
    )]
    NotCoPartitioned {
        table: String,
        topic: String,
        has: i32,
        input: String,
        needs: i32,
    },
    #[error(
        "topic {topic:?} has {has} partitions but must have {needs}, one per partition of \
         its input; delete it (Weir recreates it from the input's layout) or fix the input"
    )]
    PartitionMismatch { topic: String, has: i32, needs: i32 },
    #[error(
        "the broker refused to create topic {topic:?}: {reason}. Create it yourself \
         ({partitions} partitions{}) or grant this principal CREATE on the cluster",
        if *compacted { ", cleanup.policy=compact" } else { "" }
    )]
    Create {
        topic: String,
        partitions: i32,
        compacted: bool,
        reason: String,
    },
}

/// Partition counts of every topic the brokers know.
pub fn partition_counts(settings: &ClientSettings) -> Result<BTreeMap<String, i32>, KafkaFailure> {
    let consumer: BaseConsumer = settings
        .client_config()
        .create()
        .map_err(|e| KafkaFailure::new("cannot create a Kafka client", e))?;
    let metadata = consumer
        .fetch_metadata(None, REQUEST_TIMEOUT)
        .map_err(|e| {
            KafkaFailure::new(
                format!("cannot read topic metadata from {}", settings.bootstrap),
                e,
            )
        })?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
        .collect())
}

/// The partition count of each input, or an error naming the missing ones.
pub fn input_partitions(
    settings: &ClientSettings,
    existing: &BTreeMap<String, i32>,
    inputs: &[String],
) -> Result<BTreeMap<String, i32>, TopicError> {
    inputs
        .iter()
        .map(|topic| match existing.get(topic) {
            Some(&n) if n > 0 => Ok((topic.clone(), n)),
            _ => Err(TopicError::MissingInput {
                topic: topic.clone(),
                brokers: settings.bootstrap.clone(),
            }),
        })
        .collect()
}

/// Check that every table's topic exists and is partitioned like every input
/// (`inputs`: their partition counts).
pub fn check_tables(
    settings: &ClientSettings,
    existing: &BTreeMap<String, i32>,
    tables: &[crate::table::TableSpec],
    inputs: &BTreeMap<String, i32>,
) -> Result<(), TopicError> {
    for table in tables {
        let Some(&has) = existing.get(&table.topic).filter(|&&n| n > 0) else {
            return Err(TopicError::MissingTable {
                table: table.name.clone(),
                topic: table.topic.clone(),
                brokers: settings.bootstrap.clone(),
            });
        };
        if let Some((input, &needs)) = inputs.iter().find(|(_, n)| **n != has) {
            return Err(TopicError::NotCoPartitioned {
                table: table.name.clone(),
                topic: table.topic.clone(),
                has,
                input: input.clone(),
                needs,
            });
        }
    }
    Ok(())
}

/// Create the topics of `specs` that do not exist; check the shape of those that do.
pub async fn ensure(
    settings: &ClientSettings,
    existing: &BTreeMap<String, i32>,
    specs: &[TopicSpec],
) -> Result<(), TopicError> {
    let mut missing = Vec::new();
    for spec in specs {
        match existing.get(&spec.name) {
            Some(&has) if spec.exact_partitions && has != spec.partitions => {
                return Err(TopicError::PartitionMismatch {
                    topic: spec.name.clone(),
                    has,
                    needs: spec.partitions,
                });
            }
            Some(_) => {}
            None => missing.push(spec),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = settings
        .client_config()
        .create()
        .map_err(|e| KafkaFailure::new("cannot create a Kafka admin client", e))?;
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|spec| {
            let topic = NewTopic::new(
                &spec.name,
                spec.partitions,
                TopicReplication::Fixed(spec.replication),
            );
            if spec.compacted {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|e| KafkaFailure::new("cannot create topics", e))?;
    for (result, spec) in results.into_iter().zip(&missing) {
        match result {
            Ok(name) => {
                tracing::info!(topic = %name, partitions = spec.partitions, compacted = spec.compacted, "created topic")
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(TopicError::Create {
                    topic: name,
                    partitions: spec.partitions,
                    compacted: spec.compacted,
                    reason: code.to_string(),
                });
            }
        }
    }
    Ok(())
}
