//! Which topics a transform may send outputs to.
//!
//! A transform names an output's topic itself, so without a check a guest could write
//! into a changelog (and inject state at the next restore), into its own input (a
//! loop), into the dead-letter topic or into Kafka's internal topics. A pipeline's
//! transform may write its `output` topic and the `extra_outputs` its config lists,
//! nothing else; config validation keeps changelogs, inputs, the dead-letter topic and
//! internal topics out of that list. A refused output fails its record under the
//! pipeline's `on_error`, like a rejection.

use std::collections::BTreeSet;

/// The topics one pipeline's transform may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTopics {
    /// Every topic: `weir test` and the benches, which write to no broker.
    Any,
    /// The pipeline's default output topic and its `extra_outputs`.
    Only {
        output: String,
        extra: BTreeSet<String>,
    },
}

/// An output to a topic the pipeline may not write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the transform sent an output to topic {topic:?}, which this pipeline may not write: \
     it writes {allowed}. To allow the topic, list it in the pipeline's `extra_outputs` \
     (a changelog, input, dead-letter or internal topic cannot be listed)"
)]
pub struct ForbiddenOutput {
    pub topic: String,
    /// The permitted topics, as a sentence fragment.
    allowed: String,
}

impl OutputTopics {
    pub fn only(output: &str, extra: &[String]) -> Self {
        Self::Only {
            output: output.to_owned(),
            extra: extra.iter().cloned().collect(),
        }
    }

    /// Whether an output to `topic` (`None`: the default output topic) may be sent.
    pub fn check(&self, topic: Option<&str>) -> Result<(), ForbiddenOutput> {
        let (Some(topic), Self::Only { output, extra }) = (topic, self) else {
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
        Err(ForbiddenOutput {
            topic: topic.to_owned(),
            allowed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics() -> OutputTopics {
        OutputTopics::only("counts", &["alerts".to_owned()])
    }

    #[test]
    fn the_output_and_the_listed_extras_are_permitted() {
        let topics = topics();
        assert_eq!(topics.check(None), Ok(()));
        assert_eq!(topics.check(Some("counts")), Ok(()));
        assert_eq!(topics.check(Some("alerts")), Ok(()));
    }

    #[test]
    fn any_other_topic_is_refused_naming_the_setting() {
        let refused = topics().check(Some("weir.wc-text-changelog")).unwrap_err();
        assert_eq!(refused.topic, "weir.wc-text-changelog");
        let message = refused.to_string();
        assert!(message.contains("only \"counts\""), "{message}");
        assert!(message.contains("\"alerts\""), "{message}");
        assert!(message.contains("extra_outputs"), "{message}");
        assert!(topics().check(Some("__consumer_offsets")).is_err());
        assert!(topics().check(Some("count")).is_err());
    }

    #[test]
    fn without_a_pipeline_every_topic_is_permitted() {
        assert_eq!(OutputTopics::Any.check(Some("__consumer_offsets")), Ok(()));
    }
}
