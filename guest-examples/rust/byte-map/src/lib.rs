//! The smallest useful transform, for benchmarks: ASCII-uppercase every value byte.
//! It measures the cost of the host path and the Wasm boundary, not guest work.

use weir_sdk::{Config, Context, Error, Output, Record, Transform};

pub struct ByteMap;

impl Transform for ByteMap {
    fn init(_config: &Config) -> Result<Self, Error> {
        Ok(ByteMap)
    }

    fn process(&mut self, record: Record, ctx: &mut Context<'_>) -> Result<(), Error> {
        let mut value = record.value.unwrap_or_default();
        value.make_ascii_uppercase();
        let mut output = Output::new(value);
        output.key = record.key;
        ctx.emit(output);
        Ok(())
    }
}

weir_sdk::export!(ByteMap);
