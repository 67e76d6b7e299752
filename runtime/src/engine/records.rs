//! The host's records, and how a batch of them crosses the component boundary.
//!
//! The rest of the host works with [`InputRecord`] and [`OutputRecord`], one owned
//! record at a time. The contract (`wit/transform.wit`) moves a batch as columns
//! instead: a list of numbers per field and every key, value and header byte in one
//! `data` buffer. Wasmtime copies a list of numbers or bytes in one go, but lowers a
//! list of records field by field, with a call into the guest's allocator for each
//! list inside a record: a 100-byte record cost about 415 ns of boundary that way
//! (BENCHMARKS.md). This module is the only place in the host that knows the layout.

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

/// A batch too large for the contract's 32-bit lengths: it could not fit in a guest's
/// memory either.
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
        offsets: Vec::new(),
        timestamps: Vec::new(),
        watermarks: Vec::new(),
        key_lens: Vec::new(),
        value_lens: Vec::new(),
        header_counts: Vec::new(),
        header_lens: Vec::new(),
        data: Vec::new(),
    }
}

/// Lay `records` (one run: same topic and partition) out in `batch`, reusing its
/// buffers' capacity, with the watermark each meets (none for a 0.2 guest).
pub(super) fn encode(
    records: &[InputRecord],
    met: &[i64],
    batch: &mut wire::InputBatch,
) -> Result<(), BatchTooLarge> {
    let wire::InputBatch {
        topic,
        partition,
        offsets,
        timestamps,
        watermarks,
        key_lens,
        value_lens,
        header_counts,
        header_lens,
        data,
    } = batch;
    topic.clear();
    if let Some(first) = records.first() {
        topic.push_str(&first.topic);
        *partition = first.partition;
    }
    offsets.clear();
    timestamps.clear();
    watermarks.clear();
    watermarks.extend_from_slice(met);
    key_lens.clear();
    value_lens.clear();
    header_counts.clear();
    header_lens.clear();
    data.clear();
    for record in records {
        offsets.push(record.offset);
        timestamps.push(record.timestamp);
        header_counts.push(u32::try_from(record.headers.len()).map_err(|_| BatchTooLarge)?);
        for header in &record.headers {
            header_lens.push(u32::try_from(header.key.len()).map_err(|_| BatchTooLarge)?);
            header_lens.push(u32::try_from(header.value.len()).map_err(|_| BatchTooLarge)?);
            data.extend_from_slice(header.key.as_bytes());
            data.extend_from_slice(&header.value);
        }
        key_lens.push(push_optional(data, record.key.as_deref())?);
        value_lens.push(push_optional(data, record.value.as_deref())?);
    }
    u32::try_from(data.len()).map_err(|_| BatchTooLarge)?;
    Ok(())
}

/// An output batch with no outputs.
pub(super) fn empty_outputs() -> wire::OutputBatch {
    wire::OutputBatch {
        key_lens: Vec::new(),
        value_lens: Vec::new(),
        topic_lens: Vec::new(),
        timestamps: Vec::new(),
        header_counts: Vec::new(),
        header_lens: Vec::new(),
        data: Vec::new(),
    }
}

/// Timers as `on-timers` takes them: their times, and their keys in one buffer.
pub(super) fn encode_fired(
    timers: &[crate::time::Timer],
    watermark: i64,
) -> Result<wire::FiredTimers, BatchTooLarge> {
    let domain = timers
        .first()
        .map_or(crate::time::TimeDomain::Event, |t| t.domain);
    let mut fired = wire::FiredTimers {
        domain: domain.into(),
        times: Vec::with_capacity(timers.len()),
        key_lens: Vec::with_capacity(timers.len()),
        keys: Vec::new(),
        watermark,
    };
    for timer in timers {
        debug_assert_eq!(timer.domain, domain, "one domain per call");
        fired.times.push(timer.at);
        fired
            .key_lens
            .push(u32::try_from(timer.key.len()).map_err(|_| BatchTooLarge)?);
        fired.keys.extend_from_slice(&timer.key);
    }
    u32::try_from(fired.keys.len()).map_err(|_| BatchTooLarge)?;
    Ok(fired)
}

/// Append `bytes` to `data`; their length, or -1 when absent.
fn push_optional(data: &mut Vec<u8>, bytes: Option<&[u8]>) -> Result<i32, BatchTooLarge> {
    let Some(bytes) = bytes else { return Ok(-1) };
    let len = i32::try_from(bytes.len()).map_err(|_| BatchTooLarge)?;
    data.extend_from_slice(bytes);
    Ok(len)
}

/// Reads an output batch's `data` front to back, checking every length against it.
struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], String> {
        let bytes = self.data.get(self.at..).and_then(|rest| rest.get(..len));
        let bytes = bytes.ok_or_else(|| {
            format!(
                "an output's {what} of {len} bytes at {} runs past the batch's {} data bytes",
                self.at,
                self.data.len()
            )
        })?;
        self.at += len;
        Ok(bytes)
    }

    fn optional(&mut self, len: i32, what: &str) -> Result<Option<&'a [u8]>, String> {
        match len {
            -1 => Ok(None),
            len if len < 0 => Err(format!("an output's {what} length is {len}")),
            len => self.take(len as usize, what).map(Some),
        }
    }

    fn text(&mut self, len: usize, what: &str) -> Result<String, String> {
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| format!("an output's {what} is not UTF-8: {e}"))
    }
}

/// Turn the guest's output batch into records, appending them to `out`. The guest is
/// not trusted: columns of different lengths, a length past the data, or a topic or
/// header name that is not UTF-8 is a contract violation, described in the error.
pub(super) fn decode(batch: &wire::OutputBatch, out: &mut Vec<OutputRecord>) -> Result<(), String> {
    let n = batch.key_lens.len();
    let columns = [
        ("value-lens", batch.value_lens.len()),
        ("topic-lens", batch.topic_lens.len()),
        ("timestamps", batch.timestamps.len()),
        ("header-counts", batch.header_counts.len()),
    ];
    if let Some((name, len)) = columns.iter().find(|(_, len)| *len != n) {
        return Err(format!(
            "the output batch has {n} key-lens but {len} {name}: every column needs one entry per output"
        ));
    }
    let headers: u64 = batch.header_counts.iter().map(|&c| u64::from(c)).sum();
    if headers * 2 != batch.header_lens.len() as u64 {
        return Err(format!(
            "the output batch counts {headers} headers but has {} header-lens (two per header)",
            batch.header_lens.len()
        ));
    }
    let mut data = Cursor {
        data: &batch.data,
        at: 0,
    };
    let mut header_lens = batch.header_lens.chunks_exact(2);
    out.reserve(n);
    for i in 0..n {
        let headers = (0..batch.header_counts[i])
            .map(|_| {
                let lens = header_lens.next().expect("counted above");
                Ok(Header {
                    key: data.text(lens[0] as usize, "header name")?,
                    value: data.take(lens[1] as usize, "header value")?.to_vec(),
                })
            })
            .collect::<Result<_, String>>()?;
        let key = data.optional(batch.key_lens[i], "key")?.map(<[u8]>::to_vec);
        let value = data
            .optional(batch.value_lens[i], "value")?
            .map(<[u8]>::to_vec);
        let topic = match batch.topic_lens[i] {
            -1 => None,
            len if len < 0 => return Err(format!("an output's topic length is {len}")),
            len => Some(data.text(len as usize, "topic")?),
        };
        let timestamp = Some(batch.timestamps[i]).filter(|t| *t >= 0);
        out.push(OutputRecord {
            key,
            value,
            headers,
            topic,
            timestamp,
        });
    }
    if data.at != batch.data.len() {
        return Err(format!(
            "the output batch has {} data bytes but its outputs use {}",
            batch.data.len(),
            data.at
        ));
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
                value: vec![b'0' + offset as u8],
            }],
            timestamp: 7 + offset,
            ..InputRecord::from_value("t", 1, offset, format!("v{offset}"))
        }
    }

    #[test]
    fn a_batch_keeps_every_field_of_every_record() {
        let records: Vec<_> = (0..3).map(record).collect();
        let mut batch = empty_batch();
        encode(&records, &[], &mut batch).unwrap();
        assert_eq!((batch.topic.as_str(), batch.partition), ("t", 1));
        assert_eq!(batch.offsets, [0, 1, 2]);
        assert_eq!(batch.timestamps, [7, 8, 9]);
        assert_eq!(batch.key_lens, [2, -1, 2]);
        assert_eq!(batch.value_lens, [2, 2, 2]);
        assert_eq!(batch.header_counts, [1, 1, 1]);
        assert_eq!(batch.header_lens, [1, 1, 1, 1, 1, 1]);
        assert_eq!(batch.data, b"h0k0v0h1v1h2k2v2");
        // A second batch reuses the buffers and leaves nothing of the first.
        encode(&records[1..2], &[], &mut batch).unwrap();
        assert_eq!((batch.offsets.len(), batch.header_lens.len()), (1, 2));
        assert_eq!(batch.data, b"h1v1");
    }

    #[test]
    fn runs_split_where_topic_or_partition_changes() {
        let mut records: Vec<_> = (0..5).map(record).collect();
        records[2].partition = 2;
        records[4].topic = "u".into();
        let lengths: Vec<usize> = runs(&records).map(<[_]>::len).collect();
        assert_eq!(lengths, [2, 1, 1, 1]);
    }

    /// One output per entry of `key_lens`, with no headers, no topic, no timestamp.
    fn outputs(data: &[u8], key_lens: &[i32], value_lens: &[i32]) -> wire::OutputBatch {
        let n = key_lens.len();
        wire::OutputBatch {
            key_lens: key_lens.to_vec(),
            value_lens: value_lens.to_vec(),
            topic_lens: vec![-1; n],
            timestamps: vec![-1; n],
            header_counts: vec![0; n],
            header_lens: vec![],
            data: data.to_vec(),
        }
    }

    #[test]
    fn outputs_come_back_as_records() {
        let batch = wire::OutputBatch {
            topic_lens: vec![5, -1],
            timestamps: vec![9, -1],
            header_counts: vec![1, 0],
            header_lens: vec![4, 1],
            ..outputs(b"name\x01keyvaluetopicv", &[3, -1], &[5, 1])
        };
        let mut out = Vec::new();
        decode(&batch, &mut out).unwrap();
        assert_eq!(
            out,
            [
                OutputRecord {
                    key: Some(b"key".to_vec()),
                    value: Some(b"value".to_vec()),
                    headers: vec![Header {
                        key: "name".into(),
                        value: vec![1]
                    }],
                    topic: Some("topic".into()),
                    timestamp: Some(9),
                },
                OutputRecord {
                    key: None,
                    value: Some(b"v".to_vec()),
                    headers: vec![],
                    topic: None,
                    timestamp: None,
                }
            ]
        );
    }

    #[test]
    fn a_malformed_output_batch_is_refused() {
        let decode = |batch: &wire::OutputBatch| decode(batch, &mut Vec::new()).unwrap_err();
        let err = decode(&outputs(b"abc", &[1], &[5]));
        assert!(
            err.contains("value of 5 bytes at 1 runs past the batch's 3 data bytes"),
            "{err}"
        );
        let err = decode(&outputs(b"abc", &[1, 1], &[1]));
        assert!(err.contains("2 key-lens but 1 value-lens"), "{err}");
        let err = decode(&outputs(b"abc", &[1], &[1]));
        assert!(err.contains("3 data bytes but its outputs use 2"), "{err}");
        let err = decode(&outputs(b"abc", &[-2], &[3]));
        assert!(err.contains("key length is -2"), "{err}");
        let err = decode(&wire::OutputBatch {
            header_counts: vec![2],
            header_lens: vec![1, 1],
            ..outputs(b"ab", &[-1], &[-1])
        });
        assert!(
            err.contains("counts 2 headers but has 2 header-lens"),
            "{err}"
        );
        let err = decode(&wire::OutputBatch {
            topic_lens: vec![1],
            ..outputs(&[0xff], &[-1], &[-1])
        });
        assert!(err.contains("topic is not UTF-8"), "{err}");
    }
}
