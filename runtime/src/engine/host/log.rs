//! `weir:transform/log`: guest log lines into the host's tracing, tagged with the
//! pipeline, partition and module version of the instance.

use wasmtime::Result;

use super::HostState;
use crate::engine::bindings::weir::transform::log::{Host, Level};

impl Host for HostState {
    fn log(&mut self, level: Level, mut message: String) -> Result<()> {
        // Longer messages are cut, so a guest cannot flood the logs.
        crate::engine::text::cut(&mut message, crate::engine::MAX_LOG_LINE_BYTES);
        if !self.stdio.admit(message.len()) {
            return Ok(());
        }
        let l = &self.labels;
        macro_rules! emit {
            ($level:ident) => {
                tracing::$level!(
                    target: "weir::guest", pipeline = %l.pipeline, partition = l.partition,
                    module = %l.module, "{message}"
                )
            };
        }
        match level {
            Level::Trace => emit!(trace),
            Level::Debug => emit!(debug),
            Level::Info => emit!(info),
            Level::Warn => emit!(warn),
            Level::Error => emit!(error),
        }
        Ok(())
    }
}
