//! `weir:transform/state`: reads and writes against the partition's write buffer.

use wasmtime::Result;

use super::{HostState, Phase};
use crate::engine::GuestFault;
use crate::engine::bindings::weir::transform::state::{Entry, Host};

/// Largest page a guest may ask one `scan` for; it pages for more.
const MAX_SCAN_PAGE: u32 = 1024;

impl HostState {
    fn check_write(&self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        if self.phase == Phase::Init {
            return Err(GuestFault::StateWriteInInit.into());
        }
        if key == crate::state::changelog::MARKER_KEY {
            return Err(GuestFault::ReservedKey.into());
        }
        if key.len() > self.max_key_bytes as usize {
            return Err(GuestFault::StateTooLarge {
                what: "key",
                size: key.len(),
                limit: self.max_key_bytes,
            }
            .into());
        }
        if let Some(value) = value
            && value.len() > self.max_value_bytes as usize
        {
            return Err(GuestFault::StateTooLarge {
                what: "value",
                size: value.len(),
                limit: self.max_value_bytes,
            }
            .into());
        }
        Ok(())
    }
}

impl Host for HostState {
    fn get(&mut self, key: Vec<u8>) -> Result<Option<Vec<u8>>> {
        Ok(self.state.get(&key)?)
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.check_write(&key, Some(&value))?;
        self.state.put(key, value);
        Ok(())
    }

    fn delete(&mut self, key: Vec<u8>) -> Result<()> {
        self.check_write(&key, None)?;
        self.state.delete(key);
        Ok(())
    }

    fn scan(
        &mut self,
        prefix: Vec<u8>,
        start_after: Option<Vec<u8>>,
        limit: u32,
    ) -> Result<Vec<Entry>> {
        let limit = limit.min(MAX_SCAN_PAGE) as usize;
        let entries = self.state.scan(&prefix, start_after.as_deref(), limit)?;
        Ok(entries
            .into_iter()
            .map(|e| Entry {
                key: e.key,
                value: e.value,
            })
            .collect())
    }
}
