//! Contract 0.2's imports, served by the current contract's implementations: the
//! functions are the same, only the generated types differ.

use wasmtime::Result;

use super::HostState;
use crate::engine::bindings::v0_2::weir::transform as earlier;
use crate::engine::bindings::v0_3::weir::transform as current;

impl earlier::types::Host for HostState {}

impl earlier::state::Host for HostState {
    fn get(&mut self, key: Vec<u8>) -> Result<Option<Vec<u8>>> {
        current::state::Host::get(self, key)
    }

    fn get_small(&mut self, key: Vec<u8>) -> Result<earlier::state::SmallValue> {
        let value = current::state::Host::get_small(self, key)?;
        Ok(earlier::state::SmallValue {
            len: value.len,
            low: value.low,
            high: value.high,
        })
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        current::state::Host::put(self, key, value)
    }

    fn write_all(&mut self, writes: earlier::state::Writes) -> Result<()> {
        let writes = current::state::Writes {
            key_lens: writes.key_lens,
            value_lens: writes.value_lens,
            data: writes.data,
        };
        current::state::Host::write_all(self, writes)
    }

    fn delete(&mut self, key: Vec<u8>) -> Result<()> {
        current::state::Host::delete(self, key)
    }

    fn scan(
        &mut self,
        prefix: Vec<u8>,
        start_after: Option<Vec<u8>>,
        limit: u32,
    ) -> Result<Vec<earlier::state::Entry>> {
        let page = current::state::Host::scan(self, prefix, start_after, limit)?;
        Ok(page
            .into_iter()
            .map(|e| earlier::state::Entry {
                key: e.key,
                value: e.value,
            })
            .collect())
    }
}

impl earlier::log::Host for HostState {
    fn log(&mut self, level: earlier::log::Level, message: String) -> Result<()> {
        use current::log::Level;
        let level = match level {
            earlier::log::Level::Trace => Level::Trace,
            earlier::log::Level::Debug => Level::Debug,
            earlier::log::Level::Info => Level::Info,
            earlier::log::Level::Warn => Level::Warn,
            earlier::log::Level::Error => Level::Error,
        };
        current::log::Host::log(self, level, message)
    }
}
