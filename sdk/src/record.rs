//! Input and output records, with helpers. On the wire a batch of them travels as
//! columns (see `wire`); a transform only ever sees these.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Error;

/// A Kafka record header: a UTF-8 name and a byte value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Vec<u8>,
}

/// A record consumed from an input topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
    /// Kafka record timestamp, in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Shared by every record of a batch (a copy per record cost the byte-map and
    /// JSON examples about 5%); it reads as a `&str`: `&*record.topic`.
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

/// A record to write; `topic: None` goes to the pipeline's default output topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
    /// Target topic; `None` sends it to the pipeline's default output topic.
    pub topic: Option<String>,
    /// Timestamp in milliseconds since the Unix epoch; `None` lets the host choose
    /// (the SDK fills in the input record's when the output is emitted).
    pub timestamp: Option<i64>,
}

impl Record {
    /// A record with `value` and nothing else, as a test input.
    pub fn from_value(value: impl Into<Vec<u8>>) -> Self {
        Self {
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp: 0,
            topic: Arc::from(""),
            partition: 0,
            offset: 0,
        }
    }

    /// This record with `key`.
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The key as UTF-8 text, or `None` when there is no key.
    pub fn key_str(&self) -> Result<Option<&str>, Error> {
        self.key
            .as_deref()
            .map(|key| {
                std::str::from_utf8(key).map_err(|e| Error::msg(format!("key is not UTF-8: {e}")))
            })
            .transpose()
    }

    /// The value as UTF-8 text; an error when it is missing or not UTF-8.
    pub fn value_str(&self) -> Result<&str, Error> {
        let value = self
            .value
            .as_deref()
            .ok_or_else(|| Error::msg("record has no value"))?;
        std::str::from_utf8(value).map_err(|e| Error::msg(format!("value is not UTF-8: {e}")))
    }

    /// The value parsed as JSON into `T`, which may borrow from the record (`&str` or
    /// `Cow<str>` fields with `#[serde(borrow)]`) to save copying its strings.
    pub fn value_json<'a, T: Deserialize<'a>>(&'a self) -> Result<T, Error> {
        let value = self
            .value
            .as_deref()
            .ok_or_else(|| Error::msg("record has no value"))?;
        serde_json::from_slice(value)
            .map_err(|e| Error::msg(format!("value is not the expected JSON: {e}")))
    }

    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.key == name)
            .map(|h| h.value.as_slice())
    }
}

impl Output {
    /// An output with `value`, no key, to the default topic.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Self {
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
            topic: None,
            timestamp: None,
        }
    }

    /// An output whose value is `value` serialized as JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, Error> {
        Ok(Self::new(serde_json::to_vec(value)?))
    }

    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(Header {
            key: name.into(),
            value: value.into(),
        });
        self
    }

    /// Send this output to `topic` rather than the pipeline's default output topic.
    pub fn to_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    /// The value as UTF-8 text (handy in tests).
    pub fn value_str(&self) -> Result<&str, Error> {
        let value = self
            .value
            .as_deref()
            .ok_or_else(|| Error::msg("output has no value"))?;
        Ok(std::str::from_utf8(value)?)
    }

    /// The key as UTF-8 text (handy in tests).
    pub fn key_str(&self) -> Result<Option<&str>, Error> {
        Ok(self.key.as_deref().map(std::str::from_utf8).transpose()?)
    }
}
