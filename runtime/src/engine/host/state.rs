//! `weir:transform/state`: reads and writes against the partition's write buffer.
//!
//! Registered by hand, not through the generated bindings: those lift every `list<u8>`
//! argument into a `Vec` of its own, where these functions copy keys and values from
//! guest memory onto the stack and hand slices on, two allocations fewer for a put and
//! one for a get (BENCHMARKS.md).

use smallvec::SmallVec;
use wasmtime::Result;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, WasmList};

use super::{HostState, Phase};
use crate::engine::GuestFault;
use crate::engine::bindings::weir::transform::state::{Entry, SmallValue};
use crate::engine::bindings::{CONTRACT_PACKAGE, CONTRACT_VERSION};

/// Largest page a guest may ask one `scan` for; it pages for more.
const MAX_SCAN_PAGE: u32 = 1024;

/// A key or value copied out of guest memory: on the stack when short.
type Copied = SmallVec<[u8; 64]>;

fn copied(list: &WasmList<u8>, store: &StoreContextMut<'_, HostState>) -> Copied {
    SmallVec::from_slice(list.as_le_slice(store))
}

/// Define the `state` interface's functions in `linker`. No generated trait checks
/// that every function of `wit/` is here, but every Rust guest imports all five (the
/// SDK reaches state through a trait object), so a missing or mistyped one fails to
/// link in every engine test.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> Result<()> {
    type Store<'a> = StoreContextMut<'a, HostState>;
    let mut state = linker.instance(&format!("{CONTRACT_PACKAGE}/state@{CONTRACT_VERSION}"))?;
    state.func_wrap("get", |mut store: Store, (key,): (WasmList<u8>,)| {
        let key = copied(&key, &store);
        Ok((store.data_mut().state.get(&key)?,))
    })?;
    state.func_wrap("get-small", |mut store: Store, (key,): (WasmList<u8>,)| {
        let key = copied(&key, &store);
        Ok((store.data_mut().state.get_with(&key, small_value)?,))
    })?;
    state.func_wrap(
        "put",
        |mut store: Store, (key, value): (WasmList<u8>, WasmList<u8>)| {
            let (key, value) = (copied(&key, &store), copied(&value, &store));
            store.data_mut().put(&key, &value)
        },
    )?;
    state.func_wrap("delete", |mut store: Store, (key,): (WasmList<u8>,)| {
        let key = copied(&key, &store);
        store.data_mut().delete(&key)
    })?;
    state.func_wrap(
        "scan",
        |mut store: Store, (prefix, start_after, limit): (Vec<u8>, Option<Vec<u8>>, u32)| {
            Ok((store
                .data_mut()
                .scan(&prefix, start_after.as_deref(), limit)?,))
        },
    )?;
    Ok(())
}

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

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_write(key, Some(value))?;
        self.state.put_slices(key, value);
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.check_write(key, None)?;
        self.state.delete(key.to_vec());
        Ok(())
    }

    fn scan(
        &mut self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: u32,
    ) -> Result<Vec<Entry>> {
        let limit = limit.min(MAX_SCAN_PAGE) as usize;
        let entries = self.state.scan(prefix, start_after, limit)?;
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
    let len = match value {
        None => -1,
        Some(value) if value.len() > 16 => -2,
        Some(value) => value.len() as i32,
    };
    let mut bytes = [0_u8; 16];
    if len > 0 {
        bytes[..len as usize].copy_from_slice(value.unwrap_or_default());
    }
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
