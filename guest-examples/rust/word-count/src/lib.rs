//! Stateful word count: split each record's value into words, keep a count per word
//! in state, and emit every word with its running count.
//!
//! State layout (shared by the word-count examples in every language, so a pipeline
//! can swap one for another and keep its counts): key `count/<word>`, value the count
//! as a JSON number.

use weir_sdk::{Config, Context, Error, Record, Transform};

pub struct WordCount {
    lowercase: bool,
}

impl Transform for WordCount {
    fn init(config: &Config) -> Result<Self, Error> {
        Ok(Self {
            lowercase: config.parse("lowercase")?.unwrap_or(true),
        })
    }

    fn process(&mut self, record: Record, ctx: &mut Context<'_>) -> Result<(), Error> {
        let text = record.value_str()?;
        for word in text
            .split(|c: char| !c.is_alphanumeric() && c != '\'')
            .filter(|w| !w.is_empty())
        {
            let word = if self.lowercase {
                word.to_lowercase()
            } else {
                word.to_owned()
            };
            let count = ctx
                .table::<u64>("count/")
                .update(&word, |n| n.unwrap_or(0) + 1)?;
            ctx.send(word, count.to_string());
        }
        Ok(())
    }
}

weir_sdk::export!(WordCount);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::Harness;

    #[test]
    fn counts_words_across_records() {
        let mut h = Harness::<WordCount>::new().unwrap();
        let out = h.process_value("To be, or not to be").unwrap();
        let pairs: Vec<(&str, &str)> = out
            .iter()
            .map(|o| (o.key_str().unwrap().unwrap(), o.value_str().unwrap()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("to", "1"),
                ("be", "1"),
                ("or", "1"),
                ("not", "1"),
                ("to", "2"),
                ("be", "2")
            ]
        );
        h.process_value("BE").unwrap();
        assert_eq!(h.state().get_str("count/be"), Some("3"));
    }

    #[test]
    fn a_record_without_text_fails_and_changes_nothing() {
        let mut h = Harness::<WordCount>::new().unwrap();
        let err = h.process(Record::from_value(vec![0xff, 0xfe])).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
        assert!(h.state().is_empty());
    }

    #[test]
    fn case_is_kept_when_configured() {
        let mut h =
            Harness::<WordCount>::with_config([("lowercase", "false")].into_iter().collect())
                .unwrap();
        h.process_value("Weir weir").unwrap();
        assert_eq!(h.state().get_str("count/Weir"), Some("1"));
    }
}
