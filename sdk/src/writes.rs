//! The state writes of one batch, kept in the guest and sent to the host in one
//! `write-all` call when the batch succeeds.
//!
//! A host call costs more than the write it carries (a `put` was ~0.3 µs of a word
//! count's ~1.8 µs per record, BENCHMARKS.md), and nothing outside the guest can see a
//! batch's writes before `process` returns: the host applies them together and rolls
//! them back together. So the SDK keeps them here, reads its own writes from here
//! first, and sends them once. A failed batch's writes are dropped, as the host would
//! drop them.

use std::hash::BuildHasher;

use foldhash::fast::FixedState;
use hashbrown::HashTable;

use crate::bindings::weir::transform::state::Writes;

/// Writes in the order they were made, laid out as `write-all` carries them (each
/// write's key, then its value, in `data`; a value length of -1 deletes), and each
/// key's latest write.
#[derive(Debug)]
pub(crate) struct WriteBuffer {
    writes: Writes,
    /// Where each write's key starts in `writes.data`.
    starts: Vec<u32>,
    /// Index of each key's latest write.
    latest: HashTable<u32>,
    /// A fixed seed: the keys are the batch's own, and the table lives for one batch.
    hasher: FixedState,
}

impl WriteBuffer {
    pub const fn new() -> Self {
        Self {
            writes: Writes {
                key_lens: Vec::new(),
                value_lens: Vec::new(),
                data: Vec::new(),
            },
            starts: Vec::new(),
            latest: HashTable::new(),
            hasher: FixedState::with_seed(0),
        }
    }

    /// The latest write of `key` in this batch: `Some(None)` when it was deleted,
    /// `None` when the batch has not written it.
    pub fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        let hash = self.hasher.hash_one(key);
        let at = |i: u32| write_at(&self.writes, &self.starts, i);
        let &index = self.latest.find(hash, |&i| at(i).0 == key)?;
        Some(at(index).1)
    }

    /// Record a write of `key`: a put of `value`, or a delete when it is `None`.
    pub fn write(&mut self, key: &[u8], value: Option<&[u8]>) {
        let Self {
            writes,
            starts,
            latest,
            hasher,
        } = self;
        let index = u32::try_from(writes.key_lens.len()).expect("under 2^32 writes per batch");
        starts.push(u32::try_from(writes.data.len()).expect("under 4 GiB of writes per batch"));
        writes.key_lens.push(key.len() as u32);
        writes.data.extend_from_slice(key);
        writes.value_lens.push(value.map_or(-1, |v| {
            i32::try_from(v.len()).expect("a state value under 2 GiB")
        }));
        writes.data.extend_from_slice(value.unwrap_or_default());

        let at = |i: u32| write_at(writes, starts, i).0;
        let hash = hasher.hash_one(key);
        match latest.find_mut(hash, |&i| at(i) == key) {
            Some(slot) => *slot = index,
            None => {
                latest.insert_unique(hash, index, |&i| hasher.hash_one(at(i)));
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.writes.key_lens.is_empty()
    }

    /// The writes, as `write-all` takes them.
    pub fn writes(&self) -> &Writes {
        &self.writes
    }

    /// Forget every write, keeping the memory for the next batch.
    pub fn clear(&mut self) {
        self.writes.key_lens.clear();
        self.writes.value_lens.clear();
        self.writes.data.clear();
        self.starts.clear();
        self.latest.clear();
    }
}

/// Write `index`'s key and value (`None` for a delete).
fn write_at<'a>(writes: &'a Writes, starts: &[u32], index: u32) -> (&'a [u8], Option<&'a [u8]>) {
    let i = index as usize;
    let key_start = starts[i] as usize;
    let value_start = key_start + writes.key_lens[i] as usize;
    let value = usize::try_from(writes.value_lens[i])
        .ok()
        .map(|len| &writes.data[value_start..value_start + len]);
    (&writes.data[key_start..value_start], value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_see_the_latest_write_of_each_key() {
        let mut buffer = WriteBuffer::new();
        assert_eq!(buffer.get(b"a"), None);
        buffer.write(b"a", Some(b"1"));
        buffer.write(b"b", Some(b""));
        buffer.write(b"a", Some(b"22"));
        buffer.write(b"c", Some(b"x"));
        buffer.write(b"c", None);
        assert_eq!(buffer.get(b"a"), Some(Some(&b"22"[..])));
        assert_eq!(buffer.get(b"b"), Some(Some(&b""[..])));
        assert_eq!(buffer.get(b"c"), Some(None));
        assert_eq!(buffer.get(b"d"), None);
    }

    #[test]
    fn every_write_is_sent_in_order() {
        let mut buffer = WriteBuffer::new();
        buffer.write(b"k1", Some(b"v1"));
        buffer.write(b"k2", None);
        buffer.write(b"k1", Some(b"v"));
        let writes = buffer.writes();
        assert_eq!(writes.key_lens, [2, 2, 2]);
        assert_eq!(writes.value_lens, [2, -1, 1]);
        assert_eq!(writes.data, b"k1v1k2k1v");
    }

    #[test]
    fn clearing_forgets_every_write() {
        let mut buffer = WriteBuffer::new();
        for i in 0..1000_u32 {
            buffer.write(&i.to_le_bytes(), Some(&i.to_be_bytes()));
        }
        assert_eq!(
            buffer.get(&7_u32.to_le_bytes()),
            Some(Some(&7_u32.to_be_bytes()[..]))
        );
        buffer.clear();
        assert!(buffer.is_empty());
        assert_eq!(buffer.get(&7_u32.to_le_bytes()), None);
        buffer.write(b"k", Some(b"v"));
        let writes = buffer.writes();
        assert_eq!(
            (
                &writes.key_lens[..],
                &writes.value_lens[..],
                &writes.data[..]
            ),
            (&[1][..], &[1][..], &b"kv"[..])
        );
    }
}
