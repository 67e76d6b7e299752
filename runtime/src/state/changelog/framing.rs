//! Framing: which checkpoint each changelog record belongs to.
//!
//! A record names its checkpoint in headers ([`Identity`]), or it has none and belongs
//! to the nearest record before it that has them. A checkpoint writes its marker first
//! and its state records after it, all from one producer, so in the log every state
//! record follows its own marker. (Changelogs of earlier versions put the headers on
//! every record; those records name themselves.)
//!
//! A record without headers and no marker before it in what a restore reads is an
//! *orphan*: compaction removed its marker (markers share one key, so only the latest
//! survives). Compaction only happens on brokers that also remove aborted transactions
//! (Kafka's log cleaner does), so an orphan committed, and it joins the checkpoint of
//! the next marker, which is applied with it or after it. A restore never starts inside
//! a block (it reads from the record after the local head's last one), so a log nobody
//! compacted has no orphans. Orphans with no marker after them cannot come from
//! compaction either (the latest marker survives it, and whatever follows it is its own
//! block): something else wrote them, and the restore refuses to guess ([`Unframed`]).

use super::ChangelogRecord;

/// What a checkpoint's marker says about the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub checkpoint: u64,
    pub parent: u64,
    /// The input offset the checkpoint commits.
    pub input_offset: i64,
}

/// A record as read, before framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// Offset in the changelog partition.
    pub offset: i64,
    /// What the record's own headers say; `None` when it has none.
    pub identity: Option<Identity>,
    pub key: Vec<u8>,
    /// `None` deletes the key.
    pub value: Option<Vec<u8>>,
}

impl RawRecord {
    fn framed(self, identity: Identity) -> ChangelogRecord {
        ChangelogRecord {
            offset: self.offset,
            checkpoint: identity.checkpoint,
            parent: identity.parent,
            input_offset: identity.input_offset,
            key: self.key,
            value: self.value,
        }
    }
}

/// Records without a checkpoint and no marker after them, from `offset` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("changelog records from offset {offset} on follow no checkpoint marker")]
pub struct Unframed {
    pub offset: i64,
}

/// Gives each record read from one changelog partition, in order, its checkpoint.
#[derive(Debug, Default)]
pub struct Framer {
    /// The checkpoint of the last record with headers.
    current: Option<Identity>,
    /// Records read before any record with headers.
    orphans: Vec<RawRecord>,
}

impl Framer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Frame the next record into `out`, in log order: nothing while it is an orphan,
    /// the orphans before it and then itself once it has headers.
    pub fn push(&mut self, record: RawRecord, out: &mut impl Extend<ChangelogRecord>) {
        match record.identity.or(self.current) {
            Some(identity) => {
                self.current = Some(identity);
                out.extend(self.orphans.drain(..).map(|o| o.framed(identity)));
                out.extend([record.framed(identity)]);
            }
            None => self.orphans.push(record),
        }
    }

    /// The partition is read to its end: every record must have found its checkpoint.
    pub fn finish(self) -> Result<(), Unframed> {
        match self.orphans.first() {
            Some(orphan) => Err(Unframed {
                offset: orphan.offset,
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::changelog::MARKER_KEY;

    fn identity(checkpoint: u64, parent: u64, input_offset: i64) -> Identity {
        Identity {
            checkpoint,
            parent,
            input_offset,
        }
    }

    fn raw(offset: i64, identity: Option<Identity>, key: &[u8]) -> RawRecord {
        RawRecord {
            offset,
            identity,
            key: key.to_vec(),
            value: Some(b"v".to_vec()),
        }
    }

    /// Frame `log`; (offset, checkpoint) of every record handed out, and the result.
    fn frame(log: Vec<RawRecord>) -> (Vec<(i64, u64)>, Result<(), Unframed>) {
        let mut framer = Framer::new();
        let mut framed = Vec::new();
        for record in log {
            framer.push(record, &mut framed);
        }
        let framed = framed.iter().map(|r| (r.offset, r.checkpoint)).collect();
        (framed, framer.finish())
    }

    #[test]
    fn state_records_belong_to_the_marker_before_them() {
        let log = vec![
            raw(0, Some(identity(1, 0, 10)), MARKER_KEY),
            raw(1, None, b"a"),
            raw(2, None, b"b"),
            raw(3, Some(identity(2, 1, 20)), MARKER_KEY),
            raw(4, None, b"a"),
        ];
        assert_eq!(
            frame(log),
            (vec![(0, 1), (1, 1), (2, 1), (3, 2), (4, 2)], Ok(()))
        );
    }

    #[test]
    fn records_of_earlier_versions_name_themselves() {
        // An old block (headers on every record, marker last), then a new one.
        let log = vec![
            raw(0, Some(identity(1, 0, 10)), b"a"),
            raw(1, Some(identity(1, 0, 10)), MARKER_KEY),
            raw(2, Some(identity(2, 1, 20)), MARKER_KEY),
            raw(3, None, b"a"),
        ];
        assert_eq!(frame(log), (vec![(0, 1), (1, 1), (2, 2), (3, 2)], Ok(())));
    }

    #[test]
    fn orphans_join_the_next_marker_in_log_order() {
        // Compaction removed the markers of the checkpoints that wrote 0 and 1.
        let log = vec![
            raw(0, None, b"a"),
            raw(1, None, b"b"),
            raw(5, Some(identity(3, 2, 30)), MARKER_KEY),
            raw(6, None, b"c"),
        ];
        assert_eq!(frame(log), (vec![(0, 3), (1, 3), (5, 3), (6, 3)], Ok(())));
    }

    #[test]
    fn orphans_with_no_marker_after_them_are_refused() {
        let log = vec![raw(7, None, b"a"), raw(8, None, b"b")];
        assert_eq!(frame(log), (vec![], Err(Unframed { offset: 7 })));
        assert_eq!(frame(vec![]), (vec![], Ok(())));
    }
}
