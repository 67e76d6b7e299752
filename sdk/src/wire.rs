//! Batches as the contract moves them: flat lists, every byte of the batch in one
//! `data` buffer and records holding spans into it (`wit/transform.wit` says why).
//! The host builds input batches and checks output batches; this side trusts what
//! the host sends and builds outputs the host will accept.

use crate::bindings::weir::transform::types::{
    Header as WireHeader, InputBatch, OutputBatch, OutputRecord as WireOutput, Span,
};
use crate::{Header, Output, Record};

/// The records of `batch`, each owning its bytes.
pub fn decode(batch: InputBatch) -> Vec<Record> {
    let InputBatch {
        topic,
        partition,
        records,
        headers,
        data,
    } = batch;
    let bytes = |span: Span| data[span.start as usize..][..span.len as usize].to_vec();
    let text = |span: Span| String::from_utf8_lossy(&bytes(span)).into_owned();
    records
        .into_iter()
        .map(|r| Record {
            key: r.key.map(bytes),
            value: r.value.map(bytes),
            headers: headers[r.headers.start as usize..][..r.headers.len as usize]
                .iter()
                .map(|h| Header {
                    key: text(h.key),
                    value: bytes(h.value),
                })
                .collect(),
            timestamp: r.timestamp,
            topic: topic.clone(),
            partition,
            offset: r.offset,
        })
        .collect()
}

/// `outputs` as one output batch.
pub fn encode(outputs: Vec<Output>) -> OutputBatch {
    let mut batch = OutputBatch {
        records: Vec::with_capacity(outputs.len()),
        headers: Vec::new(),
        data: Vec::with_capacity(outputs.iter().map(payload_len).sum()),
    };
    for output in outputs {
        let data = &mut batch.data;
        let first_header = batch.headers.len() as u32;
        for header in &output.headers {
            batch.headers.push(WireHeader {
                key: push(data, header.key.as_bytes()),
                value: push(data, &header.value),
            });
        }
        batch.records.push(WireOutput {
            key: output.key.as_deref().map(|k| push(data, k)),
            value: output.value.as_deref().map(|v| push(data, v)),
            headers: Span {
                start: first_header,
                len: output.headers.len() as u32,
            },
            topic: output.topic.as_deref().map(|t| push(data, t.as_bytes())),
            timestamp: output.timestamp,
        });
    }
    batch
}

/// Bytes `output` adds to `data`, so the buffer is sized once.
fn payload_len(output: &Output) -> usize {
    let len = |bytes: &Option<Vec<u8>>| bytes.as_ref().map_or(0, Vec::len);
    len(&output.key)
        + len(&output.value)
        + output.topic.as_ref().map_or(0, String::len)
        + output
            .headers
            .iter()
            .map(|h| h.key.len() + h.value.len())
            .sum::<usize>()
}

/// Append `bytes` to `data` and say where they went. A guest's memory is 32-bit, so
/// a batch's data cannot outgrow a `u32`.
fn push(data: &mut Vec<u8>, bytes: &[u8]) -> Span {
    let start = data.len() as u32;
    data.extend_from_slice(bytes);
    Span {
        start,
        len: bytes.len() as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::weir::transform::types::InputRecord as WireInput;

    #[test]
    fn outputs_round_trip_through_a_batch() {
        let outputs = vec![
            Output::new("v1").with_key("k1").with_header("h", "x"),
            Output {
                value: None,
                timestamp: Some(5),
                ..Output::new("").to_topic("elsewhere")
            },
        ];
        let batch = encode(outputs.clone());
        let text = |s: Span| &batch.data[s.start as usize..][..s.len as usize];
        let first = &batch.records[0];
        assert_eq!(first.key.map(text), Some(&b"k1"[..]));
        assert_eq!(first.value.map(text), Some(&b"v1"[..]));
        let header = &batch.headers[first.headers.start as usize];
        assert_eq!((text(header.key), text(header.value)), (&b"h"[..], &b"x"[..]));
        let second = &batch.records[1];
        assert_eq!((second.value, second.headers.len), (None, 0));
        assert_eq!(second.topic.map(text), Some(&b"elsewhere"[..]));
        assert_eq!(second.timestamp, Some(5));
    }

    #[test]
    fn an_input_batch_becomes_records() {
        let span = |start, len| Span { start, len };
        let batch = InputBatch {
            topic: "in".into(),
            partition: 3,
            records: vec![
                WireInput {
                    key: Some(span(0, 1)),
                    value: Some(span(1, 2)),
                    headers: span(0, 1),
                    timestamp: 10,
                    offset: 40,
                },
                WireInput {
                    key: None,
                    value: None,
                    headers: span(1, 0),
                    timestamp: 11,
                    offset: 41,
                },
            ],
            headers: vec![WireHeader {
                key: span(3, 1),
                value: span(4, 1),
            }],
            data: b"kvvhx".to_vec(),
        };
        let records = decode(batch);
        assert_eq!(
            records[0],
            Record {
                key: Some(b"k".to_vec()),
                value: Some(b"vv".to_vec()),
                headers: vec![Header {
                    key: "h".into(),
                    value: b"x".to_vec()
                }],
                timestamp: 10,
                topic: "in".into(),
                partition: 3,
                offset: 40,
            }
        );
        assert_eq!((records[1].key.as_ref(), records[1].offset), (None, 41));
        assert!(records[1].headers.is_empty());
    }
}
