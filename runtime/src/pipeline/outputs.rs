//! What a transform may send: to which topics, and how much.
//!
//! A transform names an output's topic itself, so without a check a guest could write
//! into a changelog (and inject state at the next restore), into its own input (a
//! loop), into the dead-letter topic or into Kafka's internal topics. A pipeline's
//! transform may write its `output` topic and the `extra_outputs` its config lists,
//! nothing else; config validation keeps changelogs, inputs, the dead-letter topic and
//! internal topics out of that list.
//!
//! Sizes are bounded too: an output over `limits.max_output_bytes` would be refused by
//! the producer (librdkafka's `message.max.bytes`) or the broker, and a pipeline that
//! restarted on it would meet the same record again forever; and one call's outputs
//! over `limits.max_batch_output_bytes` are host memory a guest chose to fill. Either
//! refusal fails its record under the pipeline's `on_error`, like a rejection.

use std::collections::BTreeSet;

use crate::engine::{Limits, OutputRecord};

/// The topics one pipeline's transform may write.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OutputTopics {
    /// Every topic: `weir test` and the benches, which write to no broker.
    Any,
    /// The pipeline's default output topic and its `extra_outputs`.
    Only {
        output: String,
        extra: BTreeSet<String>,
    },
}

/// The rules one pipeline's outputs must follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRules {
    topics: OutputTopics,
    max_output_bytes: u64,
    max_batch_output_bytes: u64,
}

/// Why outputs were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputRefusal {
    #[error(
        "the transform sent an output to topic {topic:?}, which this pipeline may not \
         write: it writes {allowed}. To allow the topic, list it in the pipeline's \
         `extra_outputs` (a changelog, input, dead-letter or internal topic cannot be \
         listed)"
    )]
    Topic {
        topic: String,
        /// The permitted topics, as a sentence fragment.
        allowed: String,
    },
    #[error(
        "the transform sent an output of {bytes} bytes (key, value and headers), over \
         limits.max_output_bytes ({limit}); raise that together with the topic's \
         max.message.bytes and the producer's message.max.bytes, or send smaller outputs"
    )]
    TooLarge { bytes: u64, limit: u64 },
    #[error(
        "the transform's outputs for one batch add up to {bytes} bytes, over \
         limits.max_batch_output_bytes ({limit}); raise it, lower batch_size, or send less \
         per record"
    )]
    CallTooLarge { bytes: u64, limit: u64 },
}

impl OutputRefusal {
    /// Short machine-readable kind, for metrics and dead-letter headers.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Topic { .. } => "forbidden_output",
            Self::TooLarge { .. } | Self::CallTooLarge { .. } => "output_too_large",
        }
    }
}

impl OutputRules {
    /// No rules: any topic, any size (`weir test`, benches).
    pub fn any() -> Self {
        Self {
            topics: OutputTopics::Any,
            max_output_bytes: u64::MAX,
            max_batch_output_bytes: u64::MAX,
        }
    }

    /// A pipeline's rules: `output` and `extra` topics, sizes from `limits`.
    pub fn pipeline(output: &str, extra: &[String], limits: &Limits) -> Self {
        Self {
            topics: OutputTopics::Only {
                output: output.to_owned(),
                extra: extra.iter().cloned().collect(),
            },
            max_output_bytes: limits.max_output_bytes,
            max_batch_output_bytes: limits.max_batch_output_bytes,
        }
    }

    /// Check the outputs of one call, `already` bytes of outputs into its batch; the
    /// call's own bytes when they pass.
    pub fn check(&self, outputs: &[OutputRecord], already: u64) -> Result<u64, OutputRefusal> {
        let mut total = 0;
        for output in outputs {
            self.check_topic(output.topic.as_deref())?;
            let bytes = size(output);
            if bytes > self.max_output_bytes {
                return Err(OutputRefusal::TooLarge {
                    bytes,
                    limit: self.max_output_bytes,
                });
            }
            total += bytes;
        }
        if already.saturating_add(total) > self.max_batch_output_bytes {
            return Err(OutputRefusal::CallTooLarge {
                bytes: already.saturating_add(total),
                limit: self.max_batch_output_bytes,
            });
        }
        Ok(total)
    }

    /// Whether an output to `topic` (`None`: the default output topic) may be sent.
    fn check_topic(&self, topic: Option<&str>) -> Result<(), OutputRefusal> {
        let (Some(topic), OutputTopics::Only { output, extra }) = (topic, &self.topics) else {
            return Ok(());
        };
        if topic == output || extra.contains(topic) {
            return Ok(());
        }
        let mut allowed = format!("only {output:?}");
        if !extra.is_empty() {
            let listed: Vec<String> = extra.iter().map(|t| format!("{t:?}")).collect();
            allowed = format!("{allowed} and its extra_outputs {}", listed.join(", "));
        }
        // The name is the guest's: longer than any topic's, it is cut, so the refusal
        // (logged, and a dead letter's header) stays small.
        let mut topic = topic.to_owned();
        crate::engine::text::cut(&mut topic, MAX_TOPIC_NAME);
        Err(OutputRefusal::Topic { topic, allowed })
    }
}

/// Kafka's longest topic name.
const MAX_TOPIC_NAME: usize = 249;
/// What an output costs beyond its key, value and headers: the record's framing in a
/// batch and the `weir.module` header Weir adds (about 80 bytes), rounded up. Counting
/// it keeps an output that passes here under librdkafka's `message.max.bytes` too, and
/// makes a flood of empty outputs cost something.
const OUTPUT_OVERHEAD: usize = 128;
/// What each header costs beyond its name and value.
const HEADER_OVERHEAD: usize = 16;

/// An output's bytes as Kafka counts them against `message.max.bytes`: key, value,
/// headers and the record's framing.
pub fn size(output: &OutputRecord) -> u64 {
    let bytes = |b: &Option<Vec<u8>>| b.as_ref().map_or(0, Vec::len);
    let headers: usize = output
        .headers
        .iter()
        .map(|h| h.key.len() + h.value.len() + HEADER_OVERHEAD)
        .sum();
    (bytes(&output.key) + bytes(&output.value) + headers + OUTPUT_OVERHEAD) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> OutputRules {
        let limits = Limits {
            max_output_bytes: 138,
            max_batch_output_bytes: 276,
            ..Limits::default()
        };
        OutputRules::pipeline("counts", &["alerts".to_owned()], &limits)
    }

    fn to(topic: Option<&str>, value: &str) -> OutputRecord {
        OutputRecord {
            key: Some(b"k".to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: vec![],
            topic: topic.map(str::to_owned),
            timestamp: None,
        }
    }

    #[test]
    fn the_output_and_the_listed_extras_are_permitted() {
        let outputs = [
            to(None, "a"),
            to(Some("counts"), "b"),
            to(Some("alerts"), "c"),
        ];
        for output in outputs {
            assert_eq!(rules().check(&[output], 0), Ok(130));
        }
    }

    #[test]
    fn any_other_topic_is_refused_naming_the_setting() {
        let refused = rules()
            .check(&[to(None, "a"), to(Some("weir.wc-text-changelog"), "b")], 0)
            .unwrap_err();
        assert_eq!(refused.kind(), "forbidden_output");
        let message = refused.to_string();
        assert!(message.contains("\"weir.wc-text-changelog\""), "{message}");
        assert!(message.contains("only \"counts\""), "{message}");
        assert!(message.contains("\"alerts\""), "{message}");
        assert!(message.contains("extra_outputs"), "{message}");
        for topic in ["__consumer_offsets", "count"] {
            assert!(
                rules().check(&[to(Some(topic), "x")], 0).is_err(),
                "{topic}"
            );
        }
        let long = "t".repeat(1 << 20);
        let refused = rules().check(&[to(Some(&long), "x")], 0).unwrap_err();
        assert!(
            refused.to_string().len() < 1000,
            "a guest's long name is cut"
        );
    }

    #[test]
    fn an_output_or_a_batch_over_its_size_is_refused() {
        // Key "k", a value and 128 bytes of framing: 138 is the most for one output.
        assert_eq!(rules().check(&[to(None, "123456789")], 0), Ok(138));
        let refused = rules().check(&[to(None, "1234567890")], 0).unwrap_err();
        assert_eq!(
            refused,
            OutputRefusal::TooLarge {
                bytes: 139,
                limit: 138
            }
        );
        assert!(refused.to_string().contains("limits.max_output_bytes"));
        // The batch's bound counts what earlier calls of the batch sent.
        assert_eq!(rules().check(&[to(None, "123456789")], 138), Ok(138));
        let refused = rules().check(&[to(None, "1")], 276).unwrap_err();
        assert_eq!(refused.kind(), "output_too_large");
        assert!(
            refused
                .to_string()
                .contains("limits.max_batch_output_bytes")
        );
        // Empty outputs are not free.
        let empties = vec![to(None, ""); 3];
        assert!(rules().check(&empties, 0).is_err());
    }

    #[test]
    fn without_a_pipeline_every_output_is_permitted() {
        let huge = "x".repeat(1 << 20);
        assert_eq!(
            OutputRules::any()
                .check(&[to(Some("__consumer_offsets"), &huge)], 0)
                .map(|_| ()),
            Ok(())
        );
    }
}
