//! Where a table lives in a partition's store, inside the host's reserved key range
//! (so transforms cannot write it, and their own scans never see it).
//!
//! - A row: `<reserved> "table\0" <name> "\0" <key>`, the latest value of `key` in the
//!   table topic. Local only: the table topic is its changelog.
//! - Rows read to: `<reserved> "tablerows\0" <name>`, the next table offset the rows
//!   hold. Local only, committed in the same write as the rows.
//! - Read to: `<reserved> "tableread\0" <name>`, the next table offset the partition's
//!   processing had applied at its checkpoint. In the changelog, so a restored state
//!   knows how far to read the table topic before processing again.
//!
//! - Read from: `<reserved> "tabletopic\0" <name>`, the table's topic (local only).
//!
//! The two positions are equal except after a restore from the changelog, which moves
//! the second but brings no rows: the rows are then read from the table topic up to it.

use crate::time::timers::RESERVED_PREFIX;

const ROW_TAG: &[u8] = b"table\x00";
const ROWS_READ_TAG: &[u8] = b"tablerows\x00";
const READ_TAG: &[u8] = b"tableread\x00";
const TOPIC_TAG: &[u8] = b"tabletopic\x00";

/// The scan prefix of every row of `table`.
pub fn rows_prefix(table: &str) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(RESERVED_PREFIX.len() + ROW_TAG.len() + table.len() + 1);
    prefix.extend_from_slice(RESERVED_PREFIX);
    prefix.extend_from_slice(ROW_TAG);
    prefix.extend_from_slice(table.as_bytes());
    prefix.push(0);
    prefix
}

/// The state key of `key`'s row in `table`.
pub fn row_key(table: &str, key: &[u8]) -> Vec<u8> {
    let mut row = rows_prefix(table);
    row.extend_from_slice(key);
    row
}

/// Where `table`'s rows are read to (local only).
pub fn rows_read_key(table: &str) -> Vec<u8> {
    tagged(ROWS_READ_TAG, table)
}

/// Where `table` was read to at the partition's checkpoint (changelogged).
pub fn read_key(table: &str) -> Vec<u8> {
    tagged(READ_TAG, table)
}

/// The topic `table`'s rows and positions were read from (local only): a table
/// pointed at another topic must not go on from the other topic's offsets.
pub fn topic_key(table: &str) -> Vec<u8> {
    tagged(TOPIC_TAG, table)
}

fn tagged(tag: &[u8], table: &str) -> Vec<u8> {
    [RESERVED_PREFIX, tag, table.as_bytes()].concat()
}

/// Whether `key` is kept in the partition's store only, never in the changelog: a
/// table's rows and how far they are read.
pub fn is_local_only(key: &[u8]) -> bool {
    key.strip_prefix(RESERVED_PREFIX).is_some_and(|rest| {
        [ROW_TAG, ROWS_READ_TAG, TOPIC_TAG]
            .iter()
            .any(|tag| rest.starts_with(tag))
    })
}

/// An offset as stored under a position key.
pub fn encode_offset(offset: i64) -> [u8; 8] {
    offset.to_be_bytes()
}

/// The offset stored under a position key, if the value is one.
pub fn decode_offset(value: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(value.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::timers::{CLOCK_KEY, TimeDomain, Timer, is_reserved, is_timer_key};

    #[test]
    fn rows_and_their_position_stay_local_and_the_read_position_does_not() {
        let row = row_key("customers", b"c-1");
        assert!(is_reserved(&row) && is_local_only(&row));
        assert!(row.starts_with(&rows_prefix("customers")));
        assert!(is_local_only(&rows_read_key("customers")));
        assert!(is_local_only(&topic_key("customers")));
        assert!(is_reserved(&read_key("customers")));
        assert!(!is_local_only(&read_key("customers")));
        for other in [
            CLOCK_KEY.to_vec(),
            Timer::new(TimeDomain::Event, 5, b"k".to_vec()).state_key(),
            b"table\x00customers\x00c-1".to_vec(),
        ] {
            assert!(!is_local_only(&other), "{other:?}");
        }
        assert!(!is_timer_key(&row));
    }

    #[test]
    fn one_tables_rows_are_not_a_prefix_of_another_tables() {
        // Names never hold 0 (the config refuses them), so "a" and "ab" stay apart.
        assert!(!row_key("ab", b"x").starts_with(&rows_prefix("a")));
    }

    #[test]
    fn offsets_read_back() {
        for offset in [0, 1, 1 << 40, i64::MAX] {
            assert_eq!(decode_offset(&encode_offset(offset)), Some(offset));
        }
        assert_eq!(decode_offset(b"short"), None);
    }
}
