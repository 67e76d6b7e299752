//! Starting an assigned partition: read the committed offset, restore state from the
//! changelog up to it, seek there and instantiate the transform.

use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerContext;

use crate::kafka::REQUEST_TIMEOUT;
use crate::state::changelog::RestoreError;
use crate::state::{PartitionState, RocksStore};

use super::tables::TableFeed;
use super::{Assigned, META_OFFSET, Task, TaskError, read_meta};
use crate::pipeline::position::Position;

/// How many times a start is tried when Kafka fails it.
const START_ATTEMPTS: u32 = 3;

impl<C: ConsumerContext + 'static> Assigned<C> {
    /// Bring the partition to where the group committed it, ready to run.
    ///
    /// Under exactly-once, the previous owner's last transaction may still be open (a
    /// zombie, or a member that crashed). The committed offset is read with
    /// `require_stable` (librdkafka asks for stable offsets under read_committed): the
    /// broker answers only once no transactional offset commit for the partition is
    /// pending, so the offset is final. A transaction that had not added its offsets
    /// yet can no longer commit them: the group's generation moved on when the
    /// partition moved, and the coordinator refuses offsets of an older one (KIP-447),
    /// which aborts the whole transaction. Its changelog records stay past the
    /// changelog's stable offset, where a read_committed restore never reads.
    ///
    /// A Kafka failure is tried again a few times before it fails the pipeline: a
    /// previous owner that died mid-transaction leaves the committed offset unstable
    /// until the broker times that transaction out (the commit interval plus 10 s).
    pub fn start(self) -> Result<Task<C>, TaskError> {
        let mut attempt = 1;
        loop {
            match self.prepare() {
                Ok(prepared) => return Ok(prepared.into_task(self)),
                Err(TaskError::Kafka(error))
                    if attempt < START_ATTEMPTS && !self.is_cancelled() =>
                {
                    tracing::warn!(pipeline = %self.ctx.name, topic = %self.topic, partition = self.partition, attempt, %error, "cannot start the partition yet; trying again");
                    attempt += 1;
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn prepare(&self) -> Result<Prepared, TaskError> {
        let ctx = &self.ctx;
        let mut state = PartitionState::new(Box::new(RocksStore::open_in(
            self.state_path(),
            &ctx.rocks,
        )?))
        .with_quota(ctx.state_quota.clone());
        let began = Instant::now();
        let deadline = began + REQUEST_TIMEOUT;
        let (committed_offset, head, position) = loop {
            if self.is_cancelled() {
                return Err(TaskError::Stopped);
            }
            let committed = self.committed(read_meta(&mut state, META_OFFSET)?)?;
            match self.restore(&mut state, committed) {
                Ok(progress) => break (committed, progress.head, progress.position),
                // Blocks applied so far were committed; asking again is safe.
                Err(TaskError::Restore(
                    error @ (RestoreError::BehindChangelog { .. }
                    | RestoreError::UnknownOffset { .. }),
                )) if Instant::now() < deadline => {
                    tracing::debug!(topic = %self.topic, partition = self.partition, %error, "asking for the committed offset again");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(error) => return Err(error),
            }
        };
        // A group that never committed starts at the log start (auto.offset.reset is
        // earliest): named here, so a rewind before the first checkpoint goes back to
        // it rather than leaving the fetch past records it never committed.
        let restored = began.elapsed();
        let start = match committed_offset {
            Some(offset) => offset,
            None => self.log_start()?,
        };
        let found = began.elapsed();
        let tables = self.open_tables(&mut state)?;
        self.seek(start)?;
        let seeked = began.elapsed();
        if self.is_cancelled() {
            return Err(TaskError::Stopped);
        }
        let active = ctx.versions.active();
        let instance = ctx.engine.instantiate_with_limits(
            &active.module,
            self.labels(&active),
            ctx.transform_config.clone(),
            state,
            ctx.limits.clone(),
        )?;
        self.status.set_version(active.version);
        tracing::debug!(
            pipeline = %ctx.name,
            topic = %self.topic,
            partition = self.partition,
            restored_ms = restored.as_millis() as u64,
            start_found_ms = found.as_millis() as u64,
            seeked_ms = seeked.as_millis() as u64,
            instantiated_ms = began.elapsed().as_millis() as u64,
            "partition prepared"
        );
        Ok(Prepared {
            instance,
            active,
            head,
            position,
            start,
            tables,
        })
    }

    /// Start reading each of the pipeline's tables where this partition's rows of it
    /// are read to: the table topic's log start for a new partition, and after a
    /// restore from the changelog (which brings no rows), up to where the checkpoint
    /// had read it before any record is processed.
    fn open_tables(&self, state: &mut PartitionState) -> Result<Vec<TableFeed>, TaskError> {
        let Some(consumer) = &self.tables else {
            return Ok(Vec::new());
        };
        self.ctx
            .tables
            .iter()
            .map(|table| TableFeed::open(consumer, table, self.partition, state))
            .collect()
    }
}

/// A started partition's parts, before they join its [`Assigned`] handle.
struct Prepared {
    instance: crate::engine::Instance,
    active: std::sync::Arc<crate::pipeline::versions::Active>,
    head: u64,
    position: i64,
    start: i64,
    tables: Vec<TableFeed>,
}

impl Prepared {
    fn into_task<C: ConsumerContext + 'static>(self, assigned: Assigned<C>) -> Task<C> {
        Task {
            assigned,
            instance: self.instance,
            active: self.active,
            head: self.head,
            position: self.position,
            fetch: Position::at(self.start),
            next_offset: self.start,
            checkpointed: self.start,
            careful_until: None,
            state_measured: None,
            idle_checked: None,
            paused: false,
            slow: false,
            tables: self.tables,
            held: None,
        }
    }
}
