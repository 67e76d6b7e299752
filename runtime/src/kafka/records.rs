//! Conversions between Kafka messages and the contract's records, and the headers Weir
//! adds (module version on outputs, failure details on dead letters, the identity of a
//! checkpoint on its changelog records).

use rdkafka::Message;
use rdkafka::message::{Header as KafkaHeader, Headers, OwnedHeaders};

use crate::engine::{Header, InputRecord, OutputRecord};
use crate::state::changelog;

/// Header naming the module version that produced an output.
pub const MODULE_HEADER: &str = "weir.module";

/// The headers naming a checkpoint on its changelog marker (and, in the every-record
/// format, on each of its state records): its id, its parent's, and the input offset it
/// commits. See `state::changelog` for how a restore reads them.
pub fn checkpoint_headers(checkpoint: u64, parent: u64, input_offset: i64) -> OwnedHeaders {
    let (id, parent, offset) = (
        changelog::encode_id(checkpoint),
        changelog::encode_id(parent),
        input_offset.to_string(),
    );
    OwnedHeaders::new_with_capacity(3)
        .insert(KafkaHeader {
            key: changelog::CHECKPOINT_HEADER,
            value: Some(id.as_str()),
        })
        .insert(KafkaHeader {
            key: changelog::PARENT_HEADER,
            value: Some(parent.as_str()),
        })
        .insert(KafkaHeader {
            key: changelog::OFFSET_HEADER,
            value: Some(offset.as_str()),
        })
}

/// An input record from a consumed message (copied: the message's memory belongs to
/// librdkafka).
pub fn input_record(message: &impl Message) -> InputRecord {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| Header {
                    key: h.key.to_owned(),
                    value: h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    InputRecord {
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
        timestamp: message.timestamp().to_millis().unwrap_or(-1),
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
    }
}

/// The headers of an output: the transform's own, then the module version.
pub fn output_headers(record: &OutputRecord, module: &str) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 1);
    for header in &record.headers {
        headers = headers.insert(KafkaHeader {
            key: &header.key,
            value: Some(&header.value),
        });
    }
    headers.insert(KafkaHeader {
        key: MODULE_HEADER,
        value: Some(module),
    })
}

/// Why a record was dead-lettered, carried in its headers.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    pub pipeline: &'a str,
    pub module: &'a str,
    /// Short machine-readable kind: `rejected`, `trap`, `timeout`, `memory`, ...
    pub kind: &'a str,
    pub error: &'a str,
}

/// The headers of a dead-lettered timer (its key is the record's key, it has no
/// value): `weir.dlq.*` as for a record, with `weir.dlq.timer` saying which timer
/// (`event-time@<ms>` or `processing-time@<ms>`) and no offset.
pub fn timer_dead_letter_headers(
    timer: &crate::time::Timer,
    topic: &str,
    partition: i32,
    why: &DeadLetter<'_>,
) -> OwnedHeaders {
    let which = format!("{}@{}", timer.domain, timer.at);
    let partition = partition.to_string();
    let fields: [(&str, &str); 7] = [
        ("weir.dlq.pipeline", why.pipeline),
        ("weir.dlq.module", why.module),
        ("weir.dlq.topic", topic),
        ("weir.dlq.partition", &partition),
        ("weir.dlq.timer", &which),
        ("weir.dlq.kind", why.kind),
        ("weir.dlq.error", why.error),
    ];
    fields.into_iter().fold(
        OwnedHeaders::new_with_capacity(7),
        |headers, (key, value)| {
            headers.insert(KafkaHeader {
                key,
                value: Some(value),
            })
        },
    )
}

/// The headers of a dead-lettered record: the original's, then `weir.dlq.*`.
pub fn dead_letter_headers(record: &InputRecord, why: &DeadLetter<'_>) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 7);
    for header in &record.headers {
        headers = headers.insert(KafkaHeader {
            key: &header.key,
            value: Some(&header.value),
        });
    }
    let partition = record.partition.to_string();
    let offset = record.offset.to_string();
    let fields: [(&str, &str); 7] = [
        ("weir.dlq.pipeline", why.pipeline),
        ("weir.dlq.module", why.module),
        ("weir.dlq.topic", &record.topic),
        ("weir.dlq.partition", &partition),
        ("weir.dlq.offset", &offset),
        ("weir.dlq.kind", why.kind),
        ("weir.dlq.error", why.error),
    ];
    for (key, value) in fields {
        headers = headers.insert(KafkaHeader {
            key,
            value: Some(value),
        });
    }
    headers
}
