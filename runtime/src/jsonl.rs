//! Records as JSON lines: the fixture format of `weir test`.
//!
//! One record per line: `{"key": ..., "value": ..., "headers": {...}, "timestamp": ...,
//! "topic": ..., "partition": ..., "offset": ...}`, every field optional. A key or value
//! given as a JSON string is its UTF-8 bytes; any other JSON (an object, a number) is
//! its compact JSON text; `key_base64`/`value_base64` carry binary. Outputs print the
//! same way: bytes that are a JSON object or array print as JSON, other UTF-8 as a
//! string, anything else as base64. Two outputs are equal when their bytes are, or
//! when both are JSON documents equal as JSON (key order does not matter).
//!
//! An input file may also move time between records: `{"watermark": ms}` moves the
//! partition's watermark to `ms`, `{"processing_time": ms}` the processing-time clock;
//! and set a row of a table the transform reads: `{"table": "customers", "key": "c1",
//! "value": {...}}` (no value deletes it) (see [`Step`]).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::engine::{Header, InputRecord, OutputRecord};

/// A line that could not be read as a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Reports past this many bad lines stop listing them: the file is likely not JSONL.
const MAX_REPORTED_ERRORS: usize = 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    key: Option<Value>,
    key_base64: Option<String>,
    value: Option<Value>,
    value_base64: Option<String>,
    #[serde(default)]
    headers: Map<String, Value>,
    timestamp: Option<i64>,
    topic: Option<String>,
    partition: Option<i32>,
    offset: Option<i64>,
    watermark: Option<i64>,
    processing_time: Option<i64>,
    table: Option<String>,
}

impl Line {
    /// The time this line moves to, if it is a time line; an error if it mixes a time
    /// with record fields.
    fn time(&self) -> Result<Option<Step>, String> {
        let step = match (self.watermark, self.processing_time) {
            (None, None) => return Ok(None),
            (Some(to), None) => Step::Watermark(to),
            (None, Some(to)) => Step::ProcessingTime(to),
            (Some(_), Some(_)) => {
                return Err("give `watermark` or `processing_time` on a line, not both".into());
            }
        };
        let has_record_fields = self.key.is_some()
            || self.key_base64.is_some()
            || self.value.is_some()
            || self.value_base64.is_some()
            || !self.headers.is_empty()
            || self.timestamp.is_some()
            || self.topic.is_some()
            || self.partition.is_some()
            || self.offset.is_some();
        if has_record_fields {
            return Err(
                "a `watermark` or `processing_time` line moves time and holds no record: \
                 put the record on a line of its own"
                    .into(),
            );
        }
        Ok(Some(step))
    }

    /// The row this line sets, if it is a table line; an error if it is not one
    /// whole (a key, maybe a value, nothing else).
    fn table_row(&mut self) -> Result<Option<Step>, String> {
        let Some(table) = self.table.take() else {
            return Ok(None);
        };
        let others = self.watermark.is_some()
            || self.processing_time.is_some()
            || !self.headers.is_empty()
            || self.timestamp.is_some()
            || self.topic.is_some()
            || self.partition.is_some()
            || self.offset.is_some();
        if others {
            return Err(
                "a `table` line sets a row (a `key` and a `value`, none to delete it) and \
                 holds nothing else: it applies before the records after it"
                    .into(),
            );
        }
        let key = Line::bytes(self.key.take(), self.key_base64.take(), "key")?
            .ok_or("a `table` line needs the row's `key`")?;
        let value = Line::bytes(self.value.take(), self.value_base64.take(), "value")?;
        Ok(Some(Step::TableRow { table, key, value }))
    }

    fn bytes(
        text: Option<Value>,
        base64: Option<String>,
        field: &str,
    ) -> Result<Option<Vec<u8>>, String> {
        match (text, base64) {
            (Some(_), Some(_)) => Err(format!("give `{field}` or `{field}_base64`, not both")),
            (None | Some(Value::Null), None) => Ok(None),
            (Some(Value::String(s)), None) => Ok(Some(s.into_bytes())),
            (Some(json), None) => Ok(Some(json.to_string().into_bytes())),
            (None, Some(b64)) => BASE64
                .decode(b64)
                .map(Some)
                .map_err(|e| format!("`{field}_base64` is not base64: {e}")),
        }
    }

    fn headers(headers: Map<String, Value>) -> Result<Vec<Header>, String> {
        headers
            .into_iter()
            .map(|(key, value)| match value {
                Value::String(s) => Ok(Header {
                    key,
                    value: s.into_bytes(),
                }),
                other => Err(format!("header `{key}` must be a string, not {other}")),
            })
            .collect()
    }
}

/// Parse each non-blank line of `text` with `parse`, collecting every error.
fn parse_lines<T>(
    text: &str,
    mut parse: impl FnMut(Line, usize) -> Result<T, String>,
) -> Result<Vec<(usize, T)>, Vec<LineError>> {
    let mut records = Vec::new();
    let mut errors = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<Line>(raw)
            .map_err(|e| format!("not a record: {e}"))
            .and_then(|fields| parse(fields, records.len()));
        match parsed {
            Ok(record) => records.push((line, record)),
            Err(message) if errors.len() < MAX_REPORTED_ERRORS => {
                errors.push(LineError { line, message })
            }
            Err(_) => {}
        }
    }
    if errors.is_empty() {
        Ok(records)
    } else {
        Err(errors)
    }
}

/// One line of an input file: a record, or a move of time before the next record.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Record(InputRecord),
    /// `{"watermark": ms}`: the partition's watermark moves to `ms` (never back), as
    /// if a record that far ahead had arrived; the event-time timers due fire.
    Watermark(i64),
    /// `{"processing_time": ms}`: the processing-time clock (the transform's wall
    /// clock too) moves to `ms`; the processing-time timers due fire.
    ProcessingTime(i64),
    /// `{"table": name, "key": ..., "value": ...}`: the row of `key` in table `name`
    /// is `value` from here on (deleted without one), as if the table topic had such
    /// a record at the time of the records after it.
    TableRow {
        table: String,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    },
}

/// The records and time moves of an input file, with the line each came from.
/// Missing record fields default to: no key, no headers, timestamp 0, topic
/// `default_topic`, partition 0, and offset equal to the record's position among the
/// file's records.
pub fn parse_steps(text: &str, default_topic: &str) -> Result<Vec<(usize, Step)>, Vec<LineError>> {
    let mut records = 0_i64;
    parse_lines(text, |mut line, _| {
        if let Some(row) = line.table_row()? {
            return Ok(row);
        }
        if let Some(step) = line.time()? {
            return Ok(step);
        }
        let position = records;
        records += 1;
        Ok(Step::Record(InputRecord {
            key: Line::bytes(line.key, line.key_base64, "key")?,
            value: Line::bytes(line.value, line.value_base64, "value")?,
            headers: Line::headers(line.headers)?,
            timestamp: line.timestamp.unwrap_or(0),
            topic: line.topic.unwrap_or_else(|| default_topic.to_owned()),
            partition: line.partition.unwrap_or(0),
            offset: line.offset.unwrap_or(position),
        }))
    })
}

/// Input records only (see [`parse_steps`]): a time line is an error.
pub fn parse_inputs(
    text: &str,
    default_topic: &str,
) -> Result<Vec<(usize, InputRecord)>, Vec<LineError>> {
    let steps = parse_steps(text, default_topic)?;
    let mut records = Vec::with_capacity(steps.len());
    let mut errors = Vec::new();
    for (line, step) in steps {
        match step {
            Step::Record(record) => records.push((line, record)),
            _ => errors.push(LineError {
                line,
                message: "a time line, where only records are read".to_owned(),
            }),
        }
    }
    if errors.is_empty() {
        Ok(records)
    } else {
        errors.truncate(MAX_REPORTED_ERRORS);
        Err(errors)
    }
}

/// Expected output records.
pub fn parse_outputs(text: &str) -> Result<Vec<OutputRecord>, Vec<LineError>> {
    let records = parse_lines(text, |line, _| {
        if line.partition.is_some() || line.offset.is_some() {
            return Err("outputs have no `partition` or `offset`; Kafka assigns them".to_owned());
        }
        if line.watermark.is_some() || line.processing_time.is_some() || line.table.is_some() {
            return Err(
                "time and table lines belong in the input file, not among the outputs".to_owned(),
            );
        }
        Ok(OutputRecord {
            key: Line::bytes(line.key, line.key_base64, "key")?,
            value: Line::bytes(line.value, line.value_base64, "value")?,
            headers: Line::headers(line.headers)?,
            topic: line.topic,
            timestamp: line.timestamp,
        })
    })?;
    Ok(records.into_iter().map(|(_, record)| record).collect())
}

/// How a key or value prints, and what it is compared as.
#[derive(Debug, PartialEq)]
enum Payload {
    Json(Value),
    Text(String),
    Binary(Vec<u8>),
}

impl Payload {
    fn of(bytes: &[u8]) -> Self {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(json @ (Value::Object(_) | Value::Array(_))) => Payload::Json(json),
            _ => match std::str::from_utf8(bytes) {
                Ok(text) => Payload::Text(text.to_owned()),
                Err(_) => Payload::Binary(bytes.to_vec()),
            },
        }
    }

    fn insert(self, map: &mut Map<String, Value>, field: &str) {
        match self {
            Payload::Json(json) => map.insert(field.to_owned(), json),
            Payload::Text(text) => map.insert(field.to_owned(), Value::String(text)),
            Payload::Binary(bytes) => map.insert(
                format!("{field}_base64"),
                Value::String(BASE64.encode(bytes)),
            ),
        };
    }
}

/// An output as compared: payloads decoded, empty fields and zero timestamps dropped.
#[derive(Debug, PartialEq)]
struct Canonical {
    topic: Option<String>,
    key: Option<Payload>,
    value: Option<Payload>,
    headers: Vec<(String, Payload)>,
    timestamp: Option<i64>,
}

impl Canonical {
    fn of(record: &OutputRecord) -> Self {
        Self {
            topic: record.topic.clone(),
            key: record.key.as_deref().map(Payload::of),
            value: record.value.as_deref().map(Payload::of),
            headers: record
                .headers
                .iter()
                .map(|h| (h.key.clone(), Payload::of(&h.value)))
                .collect(),
            // Fixture inputs default to timestamp 0, and transforms pass it on: not worth printing.
            timestamp: record.timestamp.filter(|&t| t != 0),
        }
    }

    fn render(self) -> String {
        let mut map = Map::new();
        if let Some(topic) = self.topic {
            map.insert("topic".into(), Value::String(topic));
        }
        if let Some(key) = self.key {
            key.insert(&mut map, "key");
        }
        if let Some(value) = self.value {
            value.insert(&mut map, "value");
        }
        if !self.headers.is_empty() {
            let headers = self
                .headers
                .into_iter()
                .map(|(name, payload)| match payload {
                    Payload::Text(text) => (name, Value::String(text)),
                    Payload::Json(json) => (name, Value::String(json.to_string())),
                    Payload::Binary(bytes) => (
                        name,
                        Value::String(String::from_utf8_lossy(&bytes).into_owned()),
                    ),
                })
                .collect();
            map.insert("headers".into(), Value::Object(headers));
        }
        if let Some(timestamp) = self.timestamp {
            map.insert("timestamp".into(), timestamp.into());
        }
        Value::Object(map).to_string()
    }
}

/// One output as a JSON line.
pub fn render_output(record: &OutputRecord) -> String {
    Canonical::of(record).render()
}

/// `None` when `actual` matches `expected`; otherwise a unified diff of the two.
pub fn diff(expected: &[OutputRecord], actual: &[OutputRecord]) -> Option<String> {
    let same = expected.len() == actual.len()
        && expected
            .iter()
            .zip(actual)
            .all(|(e, a)| Canonical::of(e) == Canonical::of(a));
    if same {
        return None;
    }
    let lines = |records: &[OutputRecord]| {
        records
            .iter()
            .map(|r| render_output(r) + "\n")
            .collect::<String>()
    };
    let (expected, actual) = (lines(expected), lines(actual));
    let diff = similar::TextDiff::from_lines(&expected, &actual);
    Some(
        diff.unified_diff()
            .context_radius(2)
            .header("expected", "actual")
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_take_strings_json_and_base64() {
        let text = r#"{"key":"k","value":"hello"}

{"value":{"a":1,"b":[2]},"headers":{"h":"v"},"offset":9,"timestamp":5}
{"value_base64":"/wA="}"#;
        let records = parse_inputs(text, "in").unwrap();
        assert_eq!(
            records.iter().map(|(line, _)| *line).collect::<Vec<_>>(),
            [1, 3, 4]
        );
        let (_, first) = &records[0];
        assert_eq!(first.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(
            (first.topic.as_str(), first.partition, first.offset),
            ("in", 0, 0)
        );
        let (_, second) = &records[1];
        assert_eq!(second.value.as_deref(), Some(&br#"{"a":1,"b":[2]}"#[..]));
        assert_eq!((second.offset, second.timestamp), (9, 5));
        assert_eq!(second.headers[0].key, "h");
        assert_eq!(records[2].1.value.as_deref(), Some(&[0xff, 0][..]));
        assert_eq!(
            records[2].1.offset, 2,
            "offset defaults to the position in the file"
        );
    }

    #[test]
    fn time_lines_move_time_between_records_and_hold_nothing_else() {
        let text = r#"{"value":"a"}
{"watermark":100}
{"processing_time":7}
{"value":"b"}"#;
        let steps = parse_steps(text, "in").unwrap();
        assert_eq!(steps[1], (2, Step::Watermark(100)));
        assert_eq!(steps[2], (3, Step::ProcessingTime(7)));
        let Step::Record(last) = &steps[3].1 else {
            panic!("a record: {:?}", steps[3]);
        };
        assert_eq!(last.offset, 1, "time lines take no offset");

        let bad = r#"{"watermark":1,"value":"x"}
{"watermark":1,"processing_time":2}
{"watermark":"soon"}"#;
        let errors = parse_steps(bad, "in").unwrap_err();
        assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(
            errors[0].message.contains("line of its own"),
            "{}",
            errors[0]
        );
        assert!(parse_inputs(text, "in").unwrap_err()[0].line == 2);
        assert!(parse_outputs(r#"{"watermark":1}"#).is_err());
    }

    #[test]
    fn table_lines_set_and_delete_rows_and_hold_nothing_else() {
        let text = r#"{"table":"customers","key":"c1","value":{"name":"Ada"}}
{"value":"order"}
{"table":"customers","key":"c1"}"#;
        let steps = parse_steps(text, "in").unwrap();
        assert_eq!(
            steps[0].1,
            Step::TableRow {
                table: "customers".into(),
                key: b"c1".to_vec(),
                value: Some(br#"{"name":"Ada"}"#.to_vec()),
            }
        );
        let Step::Record(order) = &steps[1].1 else {
            panic!("a record: {:?}", steps[1]);
        };
        assert_eq!(order.offset, 0, "table lines take no offset");
        assert!(matches!(&steps[2].1, Step::TableRow { value: None, .. }));

        let bad = r#"{"table":"customers","value":"no key"}
{"table":"customers","key":"c1","timestamp":5}"#;
        let errors = parse_steps(bad, "in").unwrap_err();
        assert!(
            errors[0].message.contains("needs the row's `key`"),
            "{}",
            errors[0]
        );
        assert!(
            errors[1].message.contains("holds nothing else"),
            "{}",
            errors[1]
        );
        assert!(parse_outputs(r#"{"table":"t","key":"k"}"#).is_err());
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let text = "{\"value\":\"ok\"}\nnot json\n{\"vaule\":\"typo\"}\n{\"value\":\"x\",\"value_base64\":\"eA==\"}\n";
        let errors = parse_inputs(text, "in").unwrap_err();
        assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), [2, 3, 4]);
        assert!(
            errors[1].to_string().contains("unknown field `vaule`"),
            "{}",
            errors[1]
        );
        assert!(errors[2].message.contains("not both"));
    }

    #[test]
    fn outputs_render_and_compare_by_content() {
        let json = OutputRecord {
            key: Some(b"7".to_vec()),
            value: Some(br#"{"b":1,"a":2}"#.to_vec()),
            headers: vec![],
            topic: None,
            timestamp: Some(0),
        };
        assert_eq!(render_output(&json), r#"{"key":"7","value":{"b":1,"a":2}}"#);
        let expected = parse_outputs(r#"{"key":"7","value":{"a":2,"b":1}}"#).unwrap();
        assert_eq!(
            diff(&expected, std::slice::from_ref(&json)),
            None,
            "JSON key order does not matter"
        );

        let binary = OutputRecord {
            value: Some(vec![0xff]),
            key: None,
            headers: vec![],
            topic: Some("t".into()),
            timestamp: Some(3),
        };
        assert_eq!(
            render_output(&binary),
            r#"{"topic":"t","value_base64":"/w==","timestamp":3}"#
        );
    }

    #[test]
    fn a_mismatch_is_a_readable_diff() {
        let expected =
            parse_outputs("{\"key\":\"a\",\"value\":\"1\"}\n{\"key\":\"b\",\"value\":\"1\"}\n")
                .unwrap();
        let actual =
            parse_outputs("{\"key\":\"a\",\"value\":\"1\"}\n{\"key\":\"b\",\"value\":\"2\"}\n")
                .unwrap();
        let diff = diff(&expected, &actual).unwrap();
        assert!(diff.contains("-{\"key\":\"b\",\"value\":\"1\"}"), "{diff}");
        assert!(diff.contains("+{\"key\":\"b\",\"value\":\"2\"}"), "{diff}");
        assert!(
            super::diff(&expected, &expected[..1]).is_some(),
            "a missing output is a difference"
        );
    }
}
