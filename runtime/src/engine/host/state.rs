//! `weir:transform/state`: reads and writes against the partition's write buffer.
//!
//! The host's own keys (timers, the event clock: [`crate::time::timers`]) share the
//! partition's store; a guest can neither touch nor see them.

use wasmtime::Result;

use super::{HostState, Phase};
use crate::engine::GuestFault;
use crate::engine::bindings::weir::transform::state::{Entry, Host, SmallValue, Writes};
use crate::time::timers::{RESERVED_END, is_reserved};

/// Largest page a guest may ask one `scan` for; it pages for more.
pub(super) const MAX_SCAN_PAGE: u32 = 1024;

impl HostState {
    /// A guest's write of `key`: refused for the host's keys, then held to the limits.
    fn check_write(&self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        if key == crate::state::changelog::MARKER_KEY || is_reserved(key) {
            return Err(GuestFault::ReservedKey.into());
        }
        self.check_limits(key, value)
    }

    /// The limits every write is held to, the host's writes for a guest's timers too.
    pub(super) fn check_limits(&self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        if self.phase == Phase::Init {
            return Err(GuestFault::StateWriteInInit.into());
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
        if value.is_some()
            && let Some(reached) = self.state.quota_reached()
        {
            return Err(GuestFault::StateQuotaReached {
                used: reached.used,
                limit: reached.limit,
            }
            .into());
        }
        let pending = self.state.pending_memory() + 2 * (key.len() + value.map_or(0, <[u8]>::len));
        if pending as u64 > self.max_pending_bytes {
            return Err(GuestFault::StateBufferFull {
                limit: self.max_pending_bytes,
            }
            .into());
        }
        Ok(())
    }
}

impl Host for HostState {
    fn get(&mut self, key: Vec<u8>) -> Result<Option<Vec<u8>>> {
        if is_reserved(&key) {
            return Ok(None);
        }
        Ok(self.state.get(&key)?)
    }

    fn get_small(&mut self, key: Vec<u8>) -> Result<SmallValue> {
        if is_reserved(&key) {
            return Ok(small_value(None));
        }
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

    /// The layout is checked whole first; then each write is checked and applied in
    /// turn. One over the limits stops the call with the writes before it applied, and
    /// the fault then rolls back the whole batch, so none of them survive.
    fn write_all(&mut self, writes: Writes) -> Result<()> {
        for (key, value) in parse_writes(&writes)? {
            self.check_write(key, value)?;
            self.state.write_from(key, value);
        }
        Ok(())
    }

    fn scan(
        &mut self,
        prefix: Vec<u8>,
        start_after: Option<Vec<u8>>,
        limit: u32,
    ) -> Result<Vec<Entry>> {
        let limit = limit.min(MAX_SCAN_PAGE) as usize;
        let too_large = GuestFault::ScanTooLarge {
            limit: self.max_scan_bytes,
            asked: limit as u32,
        };
        let page = self
            .visible_page(&prefix, start_after.as_deref(), limit)?
            .ok_or(too_large)?;
        Ok(page
            .into_iter()
            .map(|e| Entry {
                key: e.key,
                value: e.value,
            })
            .collect())
    }
}

impl HostState {
    /// A scan page without the host's keys. They are one contiguous range, so a page
    /// that reaches it stops there and goes on from [`RESERVED_END`], past which
    /// the host keeps nothing.
    fn visible_page(
        &mut self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Option<Vec<crate::state::Entry>>> {
        if is_reserved(prefix) {
            return Ok(Some(Vec::new()));
        }
        let max_bytes = usize::try_from(self.max_scan_bytes).unwrap_or(usize::MAX);
        let Some(mut page) = self
            .state
            .scan_within(prefix, start_after, limit, max_bytes)?
        else {
            return Ok(None);
        };
        let Some(cut) = page.iter().position(|e| is_reserved(&e.key)) else {
            return Ok(Some(page));
        };
        page.truncate(cut);
        let used: usize = page.iter().map(|e| e.key.len() + e.value.len()).sum();
        let after = start_after
            .filter(|after| *after > RESERVED_END)
            .unwrap_or(RESERVED_END);
        let Some(rest) = self.state.scan_within(
            prefix,
            Some(after),
            limit - cut,
            max_bytes.saturating_sub(used),
        )?
        else {
            return Ok(None);
        };
        page.extend(rest);
        Ok(Some(page))
    }
}

/// A key and its new value; `None` deletes it.
pub(crate) type Write<'a> = (&'a [u8], Option<&'a [u8]>);

/// Each of `writes`, in order. Lengths that do not add up to `data` break the contract.
pub(crate) fn parse_writes(writes: &Writes) -> Result<Vec<Write<'_>>, GuestFault> {
    let broken = |message: String| GuestFault::Contract {
        message: format!("write-all: {message}"),
    };
    if writes.key_lens.len() != writes.value_lens.len() {
        return Err(broken(format!(
            "{} key lengths and {} value lengths",
            writes.key_lens.len(),
            writes.value_lens.len()
        )));
    }
    let mut data = &writes.data[..];
    let mut take = |len: usize| {
        let bytes = data
            .get(..len)
            .ok_or_else(|| broken(format!("lengths past the {} data bytes", writes.data.len())))?;
        data = &data[len..];
        Ok(bytes)
    };
    let parsed = writes
        .key_lens
        .iter()
        .zip(&writes.value_lens)
        .map(|(&key_len, &value_len)| {
            let key = take(key_len as usize)?;
            let value = match value_len {
                -1 => None,
                len => Some(take(
                    usize::try_from(len).map_err(|_| broken(format!("a value length of {len}")))?,
                )?),
            };
            Ok((key, value))
        })
        .collect::<Result<Vec<_>, GuestFault>>()?;
    if !data.is_empty() {
        return Err(broken(format!("{} data bytes left over", data.len())));
    }
    Ok(parsed)
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

    fn writes(key_lens: &[u32], value_lens: &[i32], data: &[u8]) -> Writes {
        Writes {
            key_lens: key_lens.to_vec(),
            value_lens: value_lens.to_vec(),
            data: data.to_vec(),
        }
    }

    #[test]
    fn batched_writes_are_read_in_order() {
        let w = writes(&[2, 1, 2], &[2, -1, 0], b"k1v1xk1");
        let parsed = parse_writes(&w).unwrap();
        assert_eq!(
            parsed,
            [
                (&b"k1"[..], Some(&b"v1"[..])),
                (&b"x"[..], None),
                (&b"k1"[..], Some(&b""[..]))
            ]
        );
        assert!(parse_writes(&writes(&[], &[], b"")).unwrap().is_empty());
    }

    #[test]
    fn batched_writes_that_do_not_add_up_break_the_contract() {
        let broken = |w: Writes| match parse_writes(&w) {
            Err(GuestFault::Contract { message }) => message,
            other => panic!("expected a contract fault, got {other:?}"),
        };
        assert!(broken(writes(&[1], &[], b"k")).contains("1 key lengths and 0 value"));
        assert!(broken(writes(&[1], &[5], b"kv")).contains("past the 2 data bytes"));
        assert!(broken(writes(&[1], &[1], b"kvx")).contains("1 data bytes left over"));
        assert!(broken(writes(&[1], &[-2], b"k")).contains("value length of -2"));
    }

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
