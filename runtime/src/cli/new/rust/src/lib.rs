//! {{name}}: a Weir transform.
//!
//! For every record: emit its value in upper case, keyed as the input, followed by how
//! many records with that key this partition has seen (kept in state under
//! `seen/<key>`). A record without a value is refused: the pipeline's error policy
//! decides what happens to it.

use weir_sdk::{Config, Context, Error, Output, Record, Transform};

pub struct App;

impl Transform for App {
    fn init(_config: &Config) -> Result<Self, Error> {
        Ok(App)
    }

    fn process(&mut self, record: Record, ctx: &mut Context<'_>) -> Result<(), Error> {
        let text = record.value_str()?;
        if text.is_empty() {
            return Err(Error::msg("the record has no value"));
        }
        let key = record.key.clone().unwrap_or_default();
        let seen = ctx
            .table::<u64>("seen/")
            .update(&key, |n| n.unwrap_or(0) + 1)?;
        let mut output = Output::new(format!("{} #{seen}", text.to_uppercase()));
        if let Some(key) = record.key {
            output = output.with_key(key);
        }
        ctx.emit(output);
        Ok(())
    }
}

weir_sdk::export!(App);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::Harness;

    #[test]
    fn counts_per_key() {
        let mut h = Harness::<App>::new().unwrap();
        let out = h.process_value("hi").unwrap();
        assert_eq!(out[0].value_str().unwrap(), "HI #1");
        let out = h.process_value("again").unwrap();
        assert_eq!(out[0].value_str().unwrap(), "AGAIN #2");
        assert!(h.process_value("").is_err());
    }
}
