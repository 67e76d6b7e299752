//! Batches as the contract moves them: a list per field and every key, value and
//! header byte in one `data` buffer (`wit/transform.wit` says why and how). The host
//! builds input batches and checks output batches; this side trusts what the host
//! sends and builds outputs the host accepts.

use std::sync::Arc;

use crate::bindings::weir::transform::types::{
    FiredTimers, InputBatch, OutputBatch, TimeDomain as WireDomain,
};
use crate::{Header, Output, Record, TimeDomain, Timer};

impl From<TimeDomain> for WireDomain {
    fn from(domain: TimeDomain) -> Self {
        match domain {
            TimeDomain::EventTime => WireDomain::EventTime,
            TimeDomain::ProcessingTime => WireDomain::ProcessingTime,
        }
    }
}

/// The timers of `fired`, in firing order.
pub fn decode_timers(fired: FiredTimers) -> Vec<Timer> {
    let domain = match fired.domain {
        WireDomain::EventTime => TimeDomain::EventTime,
        WireDomain::ProcessingTime => TimeDomain::ProcessingTime,
    };
    let mut keys = &fired.keys[..];
    fired
        .times
        .iter()
        .zip(&fired.key_lens)
        .map(|(&at, &len)| {
            let (key, rest) = keys.split_at(len as usize);
            keys = rest;
            Timer {
                domain,
                at,
                key: key.to_vec(),
            }
        })
        .collect()
}

/// The records of `batch`, each owning its bytes, and the watermark each meets.
pub fn decode(batch: InputBatch) -> (Vec<Record>, Vec<i64>) {
    let mut data = &batch.data[..];
    let mut take = |len: usize| {
        let (bytes, rest) = data.split_at(len);
        data = rest;
        bytes.to_vec()
    };
    let mut header_lens = batch.header_lens.chunks_exact(2);
    let topic: Arc<str> = Arc::from(batch.topic);
    let records = (0..batch.offsets.len())
        .map(|i| {
            let headers = (0..batch.header_counts[i])
                .map(|_| {
                    let lens = header_lens.next().expect("two lengths per header");
                    Header {
                        key: String::from_utf8_lossy(&take(lens[0] as usize)).into_owned(),
                        value: take(lens[1] as usize),
                    }
                })
                .collect();
            let key = usize::try_from(batch.key_lens[i]).ok().map(&mut take);
            let value = usize::try_from(batch.value_lens[i]).ok().map(&mut take);
            Record {
                key,
                value,
                headers,
                timestamp: batch.timestamps[i],
                topic: topic.clone(),
                partition: batch.partition,
                offset: batch.offsets[i],
            }
        })
        .collect();
    (records, batch.watermarks)
}

/// `outputs` as one output batch.
pub fn encode(outputs: Vec<Output>) -> OutputBatch {
    let n = outputs.len();
    let mut batch = OutputBatch {
        key_lens: Vec::with_capacity(n),
        value_lens: Vec::with_capacity(n),
        topic_lens: Vec::with_capacity(n),
        timestamps: Vec::with_capacity(n),
        header_counts: Vec::with_capacity(n),
        header_lens: Vec::new(),
        data: Vec::with_capacity(outputs.iter().map(payload_len).sum()),
    };
    for output in outputs {
        let data = &mut batch.data;
        batch.header_counts.push(output.headers.len() as u32);
        for header in &output.headers {
            batch.header_lens.push(header.key.len() as u32);
            batch.header_lens.push(header.value.len() as u32);
            data.extend_from_slice(header.key.as_bytes());
            data.extend_from_slice(&header.value);
        }
        batch.key_lens.push(push(data, output.key.as_deref()));
        batch.value_lens.push(push(data, output.value.as_deref()));
        batch
            .topic_lens
            .push(push(data, output.topic.as_deref().map(str::as_bytes)));
        batch.timestamps.push(output.timestamp.unwrap_or(-1));
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

/// Append `bytes` to `data`; their length, or -1 when absent. A field of 2 GiB or
/// more (possible only in a guest allowed nearly 4 GiB) wraps negative, and the host
/// refuses the batch.
fn push(data: &mut Vec<u8>, bytes: Option<&[u8]>) -> i32 {
    match bytes {
        Some(bytes) => {
            data.extend_from_slice(bytes);
            bytes.len() as i32
        }
        None => -1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_become_columns() {
        let outputs = vec![
            Output::new("v1").with_key("k1").with_header("h", "x"),
            Output {
                value: None,
                timestamp: Some(5),
                ..Output::new("").to_topic("elsewhere")
            },
        ];
        let batch = encode(outputs);
        assert_eq!(batch.key_lens, [2, -1]);
        assert_eq!(batch.value_lens, [2, -1]);
        assert_eq!(batch.topic_lens, [-1, 9]);
        assert_eq!(batch.timestamps, [-1, 5]);
        assert_eq!(batch.header_counts, [1, 0]);
        assert_eq!(batch.header_lens, [1, 1]);
        assert_eq!(batch.data, b"hxk1v1elsewhere");
    }

    #[test]
    fn an_input_batch_becomes_records() {
        let batch = InputBatch {
            topic: "in".into(),
            partition: 3,
            offsets: vec![40, 41],
            timestamps: vec![10, 11],
            watermarks: vec![i64::MIN, 5],
            key_lens: vec![1, -1],
            value_lens: vec![2, 0],
            header_counts: vec![1, 0],
            header_lens: vec![1, 1],
            data: b"hxkvv".to_vec(),
        };
        let (records, watermarks) = decode(batch);
        assert_eq!(watermarks, [i64::MIN, 5]);
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
                topic: Arc::from("in"),
                partition: 3,
                offset: 40,
            }
        );
        assert_eq!(records[1].key, None);
        assert_eq!(records[1].value.as_deref(), Some(&b""[..]));
        assert_eq!((records[1].offset, records[1].timestamp), (41, 11));
        assert!(records[1].headers.is_empty());
    }

    #[test]
    fn fired_timers_become_timers_in_order() {
        let fired = FiredTimers {
            domain: WireDomain::EventTime,
            times: vec![100, 100, 250],
            key_lens: vec![1, 0, 3],
            keys: b"aabc".to_vec(),
            watermark: 300,
        };
        assert_eq!(
            decode_timers(fired),
            [
                Timer::event(100, "a"),
                Timer::event(100, ""),
                Timer::event(250, "abc")
            ]
        );
    }
}
