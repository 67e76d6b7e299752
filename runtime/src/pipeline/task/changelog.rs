//! A task's part of a checkpoint: its block of the changelog, written into the
//! thread's transaction (see `pipeline::thread::checkpoint` for the whole protocol).

use rdkafka::consumer::ConsumerContext;
use rdkafka::message::OwnedHeaders;

use crate::config::ChangelogFormat;
use crate::kafka::KafkaFailure;
use crate::kafka::producer::{Outgoing, RecordKind, ThreadProducer};
use crate::kafka::records::checkpoint_headers;
use crate::state::changelog;
use crate::table::keys;

use super::Task;
use crate::pipeline::Processor as _;

impl<C: ConsumerContext + 'static> Task<C> {
    /// Queue checkpoint `id`'s block: a marker naming it, its parent and its input
    /// offset, then the buffered state writes. Returns how many state records it holds.
    pub fn write_changelog(
        &mut self,
        producer: &ThreadProducer,
        id: u64,
    ) -> Result<usize, KafkaFailure> {
        let this = &self.assigned;
        let (head, next_offset) = (self.head, self.next_offset);
        let headers = || checkpoint_headers(id, head, next_offset);
        let every_record = this.ctx.changelog_format == ChangelogFormat::EveryRecord;
        let send = |key: &[u8], value: Option<&[u8]>, headers: Option<OwnedHeaders>| {
            producer.send(Outgoing {
                topic: &this.changelog_topic,
                // The changelog is partitioned like the input: one partition's state.
                partition: Some(this.partition),
                key: Some(key),
                value,
                headers,
                timestamp: None,
                kind: RecordKind::Changelog,
            })
        };
        // The state records after the marker belong to it (see `changelog`). It is not
        // a tombstone, so compaction keeps the latest one even when the checkpoint
        // only deleted keys.
        send(
            changelog::MARKER_KEY,
            Some(next_offset.to_string().as_bytes()),
            Some(headers()),
        )?;
        // A table's rows stay local: the table topic is their changelog.
        let pending = self.instance.state().pending();
        let mut sent = 0;
        for (key, value) in pending.iter().filter(|(key, _)| !keys::is_local_only(key)) {
            send(key, value, every_record.then(headers))?;
            sent += 1;
        }
        Ok(sent)
    }
}
