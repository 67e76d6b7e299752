//! Which record a partition takes next, its input's or one of its tables': timestamp
//! order, as Kafka Streams processes a task's table and stream inputs.
//!
//! A stream record at time `t` is processed once every table record at or before `t`
//! is applied, and a table record is applied once the stream has reached its time.
//! A table is known to have none left only when its next fetched record is later, or
//! when its reader is at the end of the table topic: a table reader behind
//! with nothing fetched yet makes the stream wait (Kafka Streams waits the same way
//! for an input known to lag, KIP-695), or the record would miss table updates older
//! than itself merely because they arrived later.
//!
//! A restored partition first re-reads its tables up to where its checkpoint had read
//! them ([`Feed::replaying`]), whatever their times: those records were applied before
//! the records that follow the checkpoint.

/// What is known of one table's reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feed {
    /// The timestamp of the next table record, fetched and not applied yet.
    pub head: Option<i64>,
    /// The reader has reached the end of the table topic and fetched nothing since.
    pub at_end: bool,
    /// The reader is still short of the position the checkpoint had read to.
    pub replaying: bool,
}

/// The next step of a partition with tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Apply the head of table `i`.
    Table(usize),
    /// Process the stream record.
    Stream,
    /// Nothing can go on until a table reader fetches more (or finds the end).
    Wait,
}

/// What comes next, given the next stream record's timestamp (`None`: none fetched),
/// the partition's stream time (the largest timestamp it has processed, if any) and
/// every table's reader. With no stream record, fetched table records up to the
/// stream time are applied: a table keeps up with its idle stream, but never gets
/// ahead of it, so which rows a record meets depends on the records alone, not on
/// when their fetches happened to arrive.
pub fn next(stream: Option<i64>, stream_time: Option<i64>, feeds: &[Feed]) -> Next {
    // Replays first: they were applied before anything after the checkpoint.
    if let Some(i) = feeds.iter().position(|f| f.replaying && f.head.is_some()) {
        return Next::Table(i);
    }
    if feeds.iter().any(|f| f.replaying) {
        return Next::Wait;
    }
    // The earliest table record, ties to the first table.
    let earliest = feeds
        .iter()
        .enumerate()
        .filter_map(|(i, f)| Some((f.head?, i)))
        .min();
    let Some(t) = stream else {
        return match (earliest, stream_time) {
            (Some((head, i)), Some(now)) if head <= now => Next::Table(i),
            _ => Next::Wait,
        };
    };
    match earliest {
        Some((head, i)) if head <= t => Next::Table(i),
        _ if feeds.iter().all(|f| f.head.is_some() || f.at_end) => Next::Stream,
        _ => Next::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched(head: i64) -> Feed {
        Feed {
            head: Some(head),
            at_end: false,
            replaying: false,
        }
    }

    const AT_END: Feed = Feed {
        head: None,
        at_end: true,
        replaying: false,
    };
    const BEHIND: Feed = Feed {
        head: None,
        at_end: false,
        replaying: false,
    };

    #[test]
    fn a_stream_record_waits_for_the_table_records_at_or_before_it() {
        assert_eq!(next(Some(10), None, &[fetched(10)]), Next::Table(0));
        assert_eq!(next(Some(10), None, &[fetched(11)]), Next::Stream);
        assert_eq!(
            next(Some(10), None, &[fetched(11), fetched(3)]),
            Next::Table(1)
        );
        assert_eq!(next(Some(10), None, &[AT_END]), Next::Stream);
        assert_eq!(next(Some(10), None, &[fetched(20), AT_END]), Next::Stream);
    }

    #[test]
    fn a_table_reader_that_may_have_more_holds_the_stream() {
        assert_eq!(next(Some(10), None, &[BEHIND]), Next::Wait);
        assert_eq!(next(Some(10), None, &[fetched(20), BEHIND]), Next::Wait);
        // But what it has fetched at or before the record goes first.
        assert_eq!(next(Some(10), None, &[fetched(5), BEHIND]), Next::Table(0));
    }

    #[test]
    fn an_idle_stream_lets_the_tables_keep_up_to_its_time_only() {
        assert_eq!(
            next(None, Some(45), &[fetched(50), fetched(40)]),
            Next::Table(1)
        );
        assert_eq!(next(None, Some(45), &[fetched(50), AT_END]), Next::Wait);
        assert_eq!(next(None, None, &[fetched(50)]), Next::Wait);
        assert_eq!(next(None, Some(99), &[AT_END, BEHIND]), Next::Wait);
    }

    #[test]
    fn a_replay_goes_first_whatever_its_times() {
        let replaying = Feed {
            head: Some(1_000),
            at_end: false,
            replaying: true,
        };
        assert_eq!(next(Some(1), None, &[AT_END, replaying]), Next::Table(1));
        let waiting = Feed {
            head: None,
            ..replaying
        };
        assert_eq!(next(Some(1), None, &[fetched(0), waiting]), Next::Wait);
        assert_eq!(next(None, Some(5), &[fetched(0), waiting]), Next::Wait);
    }
}
