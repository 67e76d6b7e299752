//! `weir:transform/state`: reads and writes against the partition's write buffer.

use wasmtime::Result;

use super::{HostState, Phase};
use crate::engine::GuestFault;
use crate::engine::bindings::weir::transform::state::{Entry, Host, SmallValue};

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

    fn get_small(&mut self, key: Vec<u8>) -> Result<SmallValue> {
        Ok(self.state.get_with(&key, small_value)?)
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

/// `value` as `get-small` returns it: up to 16 bytes in two little-endian words.
fn small_value(value: Option<&[u8]>) -> SmallValue {
    let mut bytes = [0_u8; 16];
    let len = match value {
        None => -1,
        Some(value) if value.len() > bytes.len() => -2,
        Some(value) => {
            bytes[..value.len()].copy_from_slice(value);
            value.len() as i32
        }
    };
    let (low, high) = bytes.split_at(8);
    SmallValue {
        len,
        low: u64::from_le_bytes(low.try_into().expect("8 bytes")),
        high: u64::from_le_bytes(high.try_into().expect("8 bytes")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_travel_in_two_little_endian_words() {
        let v = small_value(Some(b"0123456789abcdef"));
        assert_eq!(v.len, 16);
        assert_eq!(v.low.to_le_bytes(), *b"01234567");
        assert_eq!(v.high.to_le_bytes(), *b"89abcdef");
        let v = small_value(Some(b"42"));
        assert_eq!(
            (v.len, v.low, v.high),
            (2, u64::from(b'4') | u64::from(b'2') << 8, 0)
        );
        assert_eq!(small_value(Some(b"")).len, 0);
        assert_eq!(small_value(None).len, -1);
        assert_eq!(small_value(Some(&[7; 17])).len, -2);
    }
}
