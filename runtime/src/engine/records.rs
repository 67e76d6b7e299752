//! The host's records, and how a batch of them crosses the component boundary.
//!
//! The rest of the host works with [`InputRecord`] and [`OutputRecord`], one owned
//! record at a time. The contract (`wit/transform.wit`) moves a batch as flat lists
//! instead: every key, value, header and topic byte in one `data` buffer, records
//! holding spans into it. Lowering a list into the guest costs a call of the guest's
//! allocator, so a record with its own lists cost three such calls (value, headers,
//! topic); a batch now costs five in all. This module is the only place that knows
//! the layout.

use super::bindings::weir::transform::types as wire;

/// A Kafka record header: a UTF-8 name and a byte value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Vec<u8>,
}

/// One record consumed from an input topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
    /// Kafka record timestamp, in milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl InputRecord {
    /// A record with only a value, at `offset` of `topic`/`partition`: for tests,
    /// benchmarks and tools that make records up.
    pub fn from_value(topic: &str, partition: i32, offset: i64, value: impl Into<Vec<u8>>) -> Self {
        Self {
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp: 0,
            topic: topic.to_owned(),
            partition,
            offset,
        }
    }
}

/// One record the transform wants written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
    /// Target topic; `None` sends it to the pipeline's default output topic.
    pub topic: Option<String>,
    /// Timestamp in milliseconds since the Unix epoch; `None` lets the host choose.
    pub timestamp: Option<i64>,
}

/// A batch too large for 32-bit spans: it could not fit in a guest's memory either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BatchTooLarge;

/// Consecutive records of one topic and partition: what one `process` call takes.
pub(super) fn runs(records: &[InputRecord]) -> impl Iterator<Item = &[InputRecord]> {
    records.chunk_by(|a, b| a.partition == b.partition && a.topic == b.topic)
}

/// A batch with no records, whose buffers [`encode`] fills.
pub(super) fn empty_batch() -> wire::InputBatch {
    wire::InputBatch {
        topic: String::new(),
        partition: 0,
        records: Vec::new(),
        headers: Vec::new(),
        data: Vec::new(),
    }
}

/// Lay `records` (one run: same topic and partition) out in `batch`, reusing its
/// buffers' capacity.
pub(super) fn encode(records: &[InputRecord], batch: &mut wire::InputBatch) -> Result<(), BatchTooLarge> {
    batch.records.clear();
    batch.headers.clear();
    batch.data.clear();
    batch.topic.clear();
    if let Some(first) = records.first() {
        batch.topic.push_str(&first.topic);
        batch.partition = first.partition;
    }
    let wire::InputBatch {
        records: out,
        headers,
        data,
        ..
    } = batch;
    for record in records {
        let first_header = span_start(headers.len())?;
        for header in &record.headers {
            headers.push(wire::Header {
                key: push(data, header.key.as_bytes())?,
                value: push(data, &header.value)?,
            });
        }
        out.push(wire::InputRecord {
            key: record.key.as_deref().map(|k| push(data, k)).transpose()?,
            value: record.value.as_deref().map(|v| push(data, v)).transpose()?,
            headers: span(first_header, record.headers.len())?,
            timestamp: record.timestamp,
            offset: record.offset,
        });
    }
    Ok(())
}

fn span_start(at: usize) -> Result<u32, BatchTooLarge> {
    u32::try_from(at).map_err(|_| BatchTooLarge)
}

fn span(start: u32, len: usize) -> Result<wire::Span, BatchTooLarge> {
    let len = u32::try_from(len).map_err(|_| BatchTooLarge)?;
    start.checked_add(len).ok_or(BatchTooLarge)?;
    Ok(wire::Span { start, len })
}

/// Append `bytes` to `data` and say where they went.
fn push(data: &mut Vec<u8>, bytes: &[u8]) -> Result<wire::Span, BatchTooLarge> {
    let start = span_start(data.len())?;
    let span = span(start, bytes.len())?;
    data.extend_from_slice(bytes);
    Ok(span)
}

/// Turn the guest's output batch into records, appending them to `out`. The guest is
/// not trusted: a span outside its batch, or a topic or header name that is not
/// UTF-8, is a contract violation, described in the error.
pub(super) fn decode(batch: &wire::OutputBatch, out: &mut Vec<OutputRecord>) -> Result<(), String> {
    let bytes = |span: wire::Span, what: &str| -> Result<&[u8], String> {
        let start = span.start as usize;
        batch
            .data
            .get(start..start + span.len as usize)
            .ok_or_else(|| {
                format!(
                    "an output's {what} span {}+{} is outside the batch's {} data bytes",
                    span.start,
                    span.len,
                    batch.data.len()
                )
            })
    };
    let text = |span: wire::Span, what: &str| -> Result<String, String> {
        let raw = bytes(span, what)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|e| format!("an output's {what} is not UTF-8: {e}"))
    };
    out.reserve(batch.records.len());
    for record in &batch.records {
        let start = record.headers.start as usize;
        let headers = batch
            .headers
            .get(start..start + record.headers.len as usize)
            .ok_or_else(|| {
                format!(
                    "an output's headers {}+{} are outside the batch's {} headers",
                    record.headers.start,
                    record.headers.len,
                    batch.headers.len()
                )
            })?;
        out.push(OutputRecord {
            key: record.key.map(|s| bytes(s, "key").map(<[u8]>::to_vec)).transpose()?,
            value: record.value.map(|s| bytes(s, "value").map(<[u8]>::to_vec)).transpose()?,
            headers: headers
                .iter()
                .map(|h| {
                    Ok(Header {
                        key: text(h.key, "header name")?,
                        value: bytes(h.value, "header value")?.to_vec(),
                    })
                })
                .collect::<Result<_, String>>()?,
            topic: record.topic.map(|s| text(s, "topic")).transpose()?,
            timestamp: record.timestamp,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: i64) -> InputRecord {
        InputRecord {
            key: (offset % 2 == 0).then(|| format!("k{offset}").into_bytes()),
            headers: vec![Header {
                key: "h".into(),
                value: vec![offset as u8],
            }],
            timestamp: 7,
            ..InputRecord::from_value("t", 1, offset, format!("v{offset}"))
        }
    }

    #[test]
    fn a_batch_keeps_every_field_of_every_record() {
        let records: Vec<_> = (0..3).map(record).collect();
        let mut batch = empty_batch();
        encode(&records, &mut batch).unwrap();
        assert_eq!((batch.topic.as_str(), batch.partition), ("t", 1));
        let text = |s: wire::Span| &batch.data[s.start as usize..(s.start + s.len) as usize];
        for (record, wire) in records.iter().zip(&batch.records) {
            assert_eq!(wire.key.map(text), record.key.as_deref());
            assert_eq!(wire.value.map(text), record.value.as_deref());
            assert_eq!((wire.offset, wire.timestamp), (record.offset, 7));
            let header = &batch.headers[wire.headers.start as usize];
            assert_eq!((wire.headers.len, text(header.key)), (1, &b"h"[..]));
            assert_eq!(text(header.value), &[record.offset as u8][..]);
        }
        // A second batch reuses the buffers and leaves nothing of the first.
        encode(&records[..1], &mut batch).unwrap();
        assert_eq!((batch.records.len(), batch.headers.len()), (1, 1));
        assert_eq!(batch.data, b"h\0k0v0");
    }

    #[test]
    fn runs_split_where_topic_or_partition_changes() {
        let mut records: Vec<_> = (0..5).map(record).collect();
        records[2].partition = 2;
        records[4].topic = "u".into();
        let lengths: Vec<usize> = runs(&records).map(<[_]>::len).collect();
        assert_eq!(lengths, [2, 1, 1, 1]);
    }

    fn output_batch(data: &[u8], records: Vec<wire::OutputRecord>, headers: Vec<wire::Header>) -> wire::OutputBatch {
        wire::OutputBatch {
            records,
            headers,
            data: data.to_vec(),
        }
    }

    fn span(start: u32, len: u32) -> wire::Span {
        wire::Span { start, len }
    }

    #[test]
    fn outputs_come_back_as_records() {
        let batch = output_batch(
            b"keyvaluetopicname\x01",
            vec![wire::OutputRecord {
                key: Some(span(0, 3)),
                value: Some(span(3, 5)),
                headers: span(0, 1),
                topic: Some(span(8, 5)),
                timestamp: Some(9),
            }],
            vec![wire::Header {
                key: span(13, 4),
                value: span(17, 1),
            }],
        );
        let mut out = Vec::new();
        decode(&batch, &mut out).unwrap();
        assert_eq!(
            out,
            [OutputRecord {
                key: Some(b"key".to_vec()),
                value: Some(b"value".to_vec()),
                headers: vec![Header {
                    key: "name".into(),
                    value: vec![1]
                }],
                topic: Some("topic".into()),
                timestamp: Some(9),
            }]
        );
    }

    #[test]
    fn a_span_outside_the_batch_is_refused() {
        let record = |value, headers| wire::OutputRecord {
            key: None,
            value: Some(value),
            headers,
            topic: None,
            timestamp: None,
        };
        let mut out = Vec::new();
        let bad_value = output_batch(b"abc", vec![record(span(2, 5), span(0, 0))], vec![]);
        let err = decode(&bad_value, &mut out).unwrap_err();
        assert!(err.contains("value span 2+5 is outside the batch's 3 data bytes"), "{err}");
        let bad_headers = output_batch(b"abc", vec![record(span(0, 1), span(0, 2))], vec![]);
        let err = decode(&bad_headers, &mut out).unwrap_err();
        assert!(err.contains("headers 0+2 are outside"), "{err}");
        let huge = output_batch(b"abc", vec![record(span(u32::MAX, u32::MAX), span(0, 0))], vec![]);
        assert!(decode(&huge, &mut out).is_err());
    }

    #[test]
    fn a_topic_that_is_not_utf8_is_refused() {
        let batch = output_batch(
            &[0xff],
            vec![wire::OutputRecord {
                key: None,
                value: None,
                headers: span(0, 0),
                topic: Some(span(0, 1)),
                timestamp: None,
            }],
            vec![],
        );
        let err = decode(&batch, &mut Vec::new()).unwrap_err();
        assert!(err.contains("topic is not UTF-8"), "{err}");
    }
}
