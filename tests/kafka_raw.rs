//! Reads a topic's raw log over the Kafka wire protocol and settles transactions
//! itself, so end-to-end tests can check exactly-once output without trusting the
//! broker's `read_committed` filtering.
//!
//! Why not only a `read_committed` consumer: the suites check exactly-once both ways.
//! A consumer trusts the broker's filtering (its last stable offset and aborted-
//! transaction lists); this reader trusts only the log: it fetches with
//! `read_uncommitted`, decodes every record batch, and applies the transaction control
//! markers (COMMIT / ABORT) found in the log the way a `read_committed` consumer should.
//! On Apache Kafka both must agree; on brokers that show aborted records to
//! `read_committed` consumers (librdkafka's mock cluster) only this one is right.
//!
//! Caveat: this can only be as good as the markers in the log. The librdkafka mock
//! cluster's EndTxn handler writes no control markers at all, so on it every
//! transactional record stays "open" (see [`PartitionLog::open`]).
//!
//! Blocking `std::net::TcpStream`, one request in flight: these are test helpers, and
//! a runtime-free reader can be called from any test thread.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use kafka_protocol::messages::api_versions_request::ApiVersionsRequest;
use kafka_protocol::messages::api_versions_response::ApiVersionsResponse;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::fetch_response::{FetchResponse, PartitionData};
use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use kafka_protocol::messages::metadata_response::MetadataResponse;
use kafka_protocol::messages::{ApiKey, BrokerId, RequestHeader, ResponseHeader, TopicName};
use kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Message, StrBytes, VersionRange,
};
use kafka_protocol::records::{Record, RecordBatchDecoder};

/// One data record as a real Kafka `read_committed` consumer would see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// In record order. A null header value reads as empty. Duplicate header keys
    /// collapse to one (the decoder keeps headers in a map).
    pub headers: Vec<(String, Vec<u8>)>,
}

/// What the raw log of one partition holds, once its control markers are applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionLog {
    /// Records of non-transactional batches and of committed transactions, by offset.
    pub committed: Vec<CommittedRecord>,
    /// Records of transactions an ABORT marker ended.
    pub aborted: usize,
    /// Transactional records no marker has ended yet: an open transaction, or a
    /// broker that never writes markers (the librdkafka mock cluster).
    pub open: usize,
}

/// Reads partition `partition` of `topic` from offset 0 to its high watermark at
/// `bootstrap` ("host:port") and applies the control markers: what a
/// `read_committed` consumer should see, computed without trusting the broker to
/// filter it.
pub fn read_partition(bootstrap: &str, topic: &str, partition: i32) -> io::Result<PartitionLog> {
    let mut broker = Broker::connect(bootstrap)?;
    let layout = broker.topic_layout(topic)?;
    let leader = layout
        .leaders
        .iter()
        .find(|(p, _)| *p == partition)
        .ok_or_else(|| {
            invalid(format!(
                "topic {topic} has no partition {partition} ({} partitions)",
                layout.leaders.len()
            ))
        })?
        .1
        .clone();
    let mut leader = layout.leader_connection(broker, leader.as_deref())?;
    settle(partition, &leader.fetch_batches(topic, partition)?)
}

/// [`read_partition`] for every partition of `topic`; element `i` is partition `i`.
pub fn read_topic(bootstrap: &str, topic: &str) -> io::Result<Vec<PartitionLog>> {
    let mut bootstrap_broker = Broker::connect(bootstrap)?;
    let layout = bootstrap_broker.topic_layout(topic)?;
    if layout.single_broker {
        // The one broker leads every partition: keep the bootstrap connection.
        return layout
            .leaders
            .iter()
            .map(|(p, _)| settle(*p, &bootstrap_broker.fetch_batches(topic, *p)?))
            .collect();
    }
    let mut connections: HashMap<String, Broker> = HashMap::new();
    let mut logs = Vec::with_capacity(layout.leaders.len());
    for (partition, leader) in &layout.leaders {
        let address = leader
            .clone()
            .ok_or_else(|| invalid(format!("{topic}/{partition} has no leader")))?;
        let broker = match connections.entry(address) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let broker = Broker::connect(entry.key())?;
                entry.insert(broker)
            }
        };
        logs.push(settle(
            *partition,
            &broker.fetch_batches(topic, *partition)?,
        )?);
    }
    Ok(logs)
}

/// A transaction control record's type (the second i16 of its key).
const CONTROL_ABORT: i16 = 0;
const CONTROL_COMMIT: i16 = 1;

/// Fetch v13+ names topics by id only; v4..=v11 carry everything we read, and every
/// broker we test against (Apache Kafka 4.x, librdkafka's mock cluster) serves them.
const FETCH_VERSIONS: VersionRange = VersionRange { min: 4, max: 11 };

/// Per fetch response and per partition: generous, so a round trip carries as many
/// batches as the broker is willing to send (the mock cluster sends one anyway).
const FETCH_MAX_BYTES: i32 = 64 << 20;

/// How long a broker may take to answer before the test fails instead of hanging.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// One record batch (magic 2) as stored in the log.
#[derive(Debug)]
struct Batch {
    base_offset: i64,
    /// From the batch header, not its records: a batch may hold fewer records than
    /// offsets (compaction), and the next batch starts after this.
    last_offset: i64,
    producer_id: i64,
    transactional: bool,
    control: bool,
    records: Vec<Record>,
}

/// Replays `batches` (in log order) like a `read_committed` consumer.
fn settle(partition: i32, batches: &[Batch]) -> io::Result<PartitionLog> {
    let mut log = PartitionLog::default();
    // Transactional records not yet ended by a marker, per producer id.
    let mut pending: HashMap<i64, Vec<CommittedRecord>> = HashMap::new();
    for batch in batches {
        if batch.control {
            for record in &batch.records {
                let ended = pending.remove(&batch.producer_id).unwrap_or_default();
                match control_type(record)? {
                    CONTROL_COMMIT => log.committed.extend(ended),
                    CONTROL_ABORT => log.aborted += ended.len(),
                    // Other control records (e.g. KRaft's leader-change ones) end no
                    // transaction.
                    _ => {
                        if !ended.is_empty() {
                            pending.insert(batch.producer_id, ended);
                        }
                    }
                }
            }
        } else {
            let records = batch.records.iter().map(|r| committed_record(partition, r));
            if batch.transactional {
                pending
                    .entry(batch.producer_id)
                    .or_default()
                    .extend(records);
            } else {
                log.committed.extend(records);
            }
        }
    }
    log.open = pending.values().map(Vec::len).sum();
    log.committed.sort_by_key(|r| r.offset);
    Ok(log)
}

/// The type of a control record: its key is version (i16) then type (i16).
fn control_type(record: &Record) -> io::Result<i16> {
    match record.key.as_deref() {
        Some([_, _, high, low, ..]) => Ok(i16::from_be_bytes([*high, *low])),
        other => Err(invalid(format!(
            "control record at offset {} has a malformed key {other:?}",
            record.offset
        ))),
    }
}

fn committed_record(partition: i32, record: &Record) -> CommittedRecord {
    CommittedRecord {
        partition,
        offset: record.offset,
        key: record.key.as_ref().map(|k| k.to_vec()),
        value: record.value.as_ref().map(|v| v.to_vec()),
        headers: record
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.as_ref().map(|v| v.to_vec()).unwrap_or_default(),
                )
            })
            .collect(),
    }
}

/// Splits fetched record bytes into whole batches and decodes them. A broker may end
/// a response with a truncated batch (cut at max_bytes); that is left for the next
/// fetch.
fn decode_batches(mut bytes: &[u8]) -> io::Result<Vec<Batch>> {
    // Batch header (magic 2): base offset i64, length i32, leader epoch i32, magic i8,
    // crc u32, attributes i16, last offset delta i32, base timestamp i64, max
    // timestamp i64, producer id i64, producer epoch i16, base sequence i32, count i32.
    const HEADER_LEN: usize = 61;
    let mut batches = Vec::new();
    while bytes.len() >= 12 {
        let length = i32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes"));
        let total = 12 + usize::try_from(length).map_err(|_| invalid("negative batch length"))?;
        if bytes.len() < total {
            break;
        }
        let (raw, rest) = bytes.split_at(total);
        bytes = rest;
        if raw.len() < HEADER_LEN {
            return Err(invalid(format!(
                "record batch of {total} bytes is too short"
            )));
        }
        if raw[16] != 2 {
            return Err(invalid(format!(
                "unsupported record batch magic {}",
                raw[16]
            )));
        }
        let be_i64 = |at: usize| i64::from_be_bytes(raw[at..at + 8].try_into().expect("8 bytes"));
        let attributes = i16::from_be_bytes([raw[21], raw[22]]);
        let base_offset = be_i64(0);
        let last_offset_delta = i32::from_be_bytes(raw[23..27].try_into().expect("4 bytes"));
        let records = RecordBatchDecoder::decode(&mut &raw[..])
            .map_err(|e| invalid(format!("record batch at offset {base_offset}: {e:#}")))?
            .records;
        batches.push(Batch {
            base_offset,
            last_offset: base_offset + i64::from(last_offset_delta),
            producer_id: be_i64(43),
            transactional: attributes & (1 << 4) != 0,
            control: attributes & (1 << 5) != 0,
            records,
        });
    }
    Ok(batches)
}

/// Which broker leads each partition of a topic.
struct TopicLayout {
    /// (partition, leader "host:port"), by partition.
    leaders: Vec<(i32, Option<String>)>,
    /// Whether the cluster has one broker, which then leads everything (and is the
    /// one we are connected to, whatever address it advertises).
    single_broker: bool,
}

impl TopicLayout {
    fn leader_connection(&self, bootstrap: Broker, leader: Option<&str>) -> io::Result<Broker> {
        match leader {
            _ if self.single_broker => Ok(bootstrap),
            Some(address) => Broker::connect(address),
            None => Err(invalid("partition has no leader")),
        }
    }
}

/// A connection to one broker, with the API versions it supports.
struct Broker {
    stream: TcpStream,
    address: String,
    correlation_id: i32,
    /// API key -> (min, max) version the broker supports.
    versions: HashMap<i16, (i16, i16)>,
}

impl Broker {
    /// The first of the comma-separated `addresses` that answers.
    fn connect(addresses: &str) -> io::Result<Self> {
        let mut last = None;
        for address in addresses.split(',').map(str::trim) {
            match Self::connect_one(address) {
                Ok(broker) => return Ok(broker),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| invalid("no broker address")))
    }

    fn connect_one(address: &str) -> io::Result<Self> {
        let stream = TcpStream::connect(address)
            .map_err(|e| io::Error::new(e.kind(), format!("connecting to {address}: {e}")))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let mut broker = Broker {
            stream,
            address: address.to_owned(),
            correlation_id: 0,
            versions: HashMap::new(),
        };
        // v0: every broker speaks it, and it lists the same versions as later ones.
        let response: ApiVersionsResponse =
            broker.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())?;
        check(response.error_code, "ApiVersions")?;
        broker.versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(broker)
    }

    /// The highest version of `key` both the broker and `ours` support.
    fn version(&self, key: ApiKey, ours: VersionRange) -> io::Result<i16> {
        let (min, max) = *self
            .versions
            .get(&(key as i16))
            .ok_or_else(|| invalid(format!("{} does not support {key:?}", self.address)))?;
        let common = ours.intersect(&VersionRange { min, max });
        if common.is_empty() {
            return Err(invalid(format!(
                "{} supports {key:?} {min}..{max}, we support {ours}",
                self.address
            )));
        }
        Ok(common.max)
    }

    /// One request/response round trip.
    fn call<Req, Resp>(&mut self, key: ApiKey, version: i16, request: &Req) -> io::Result<Resp>
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion,
    {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("weir-tests-kafka-raw")));
        let mut body = Vec::new();
        header
            .encode(&mut body, Req::header_version(version))
            .and_then(|()| request.encode(&mut body, version))
            .map_err(|e| invalid(format!("encoding {key:?} v{version}: {e:#}")))?;
        let length = u32::try_from(body.len()).map_err(|_| invalid("request too large"))?;
        self.stream.write_all(&length.to_be_bytes())?;
        self.stream.write_all(&body)?;

        let mut length = [0; 4];
        self.stream.read_exact(&mut length)?;
        let mut response = vec![0; u32::from_be_bytes(length) as usize];
        self.stream.read_exact(&mut response)?;
        let mut buf = &response[..];
        let header =
            ResponseHeader::decode(&mut buf, Resp::header_version(version)).map_err(|e| {
                invalid(format!(
                    "decoding {key:?} v{version} response header: {e:#}"
                ))
            })?;
        if header.correlation_id != self.correlation_id {
            return Err(invalid(format!(
                "{key:?} response has correlation id {}, expected {}",
                header.correlation_id, self.correlation_id
            )));
        }
        Resp::decode(&mut buf, version)
            .map_err(|e| invalid(format!("decoding {key:?} v{version} response: {e:#}")))
    }

    fn topic_layout(&mut self, topic: &str) -> io::Result<TopicLayout> {
        let version = self.version(ApiKey::Metadata, MetadataRequest::VERSIONS)?;
        let request = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(topic))),
            ]))
            // Only settable from v4; before that the broker decides.
            .with_allow_auto_topic_creation(version < 4);
        let response: MetadataResponse = self.call(ApiKey::Metadata, version, &request)?;
        let found = response
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
            .ok_or_else(|| invalid(format!("metadata has no topic {topic}")))?;
        check(found.error_code, &format!("Metadata for {topic}"))?;
        let addresses: HashMap<BrokerId, String> = response
            .brokers
            .iter()
            .map(|b| (b.node_id, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        let mut leaders: Vec<(i32, Option<String>)> = found
            .partitions
            .iter()
            .map(|p| (p.partition_index, addresses.get(&p.leader_id).cloned()))
            .collect();
        leaders.sort_by_key(|(p, _)| *p);
        Ok(TopicLayout {
            leaders,
            single_broker: response.brokers.len() == 1,
        })
    }

    /// Every batch of the partition from offset 0 up to the high watermark the first
    /// fetch reports (later appends are not waited for).
    fn fetch_batches(&mut self, topic: &str, partition: i32) -> io::Result<Vec<Batch>> {
        let version = self.version(ApiKey::Fetch, FETCH_VERSIONS)?;
        let mut batches: Vec<Batch> = Vec::new();
        let mut next = 0;
        let mut end = None;
        loop {
            let data = self.fetch(version, topic, partition, next)?;
            check(
                data.error_code,
                &format!("Fetch {topic}/{partition} at {next}"),
            )?;
            let end = *end.get_or_insert(data.high_watermark);
            if next >= end {
                return Ok(batches);
            }
            let bytes = data.records.as_deref().unwrap_or_default();
            let before = next;
            for batch in decode_batches(bytes)? {
                if batch.base_offset >= end {
                    next = end;
                    break;
                }
                // A broker answers with the whole batch holding `next`, which may
                // start before it; skip what we already have.
                if batch.last_offset < next {
                    continue;
                }
                next = batch.last_offset + 1;
                batches.push(batch);
            }
            if next == before {
                return Err(invalid(format!(
                    "fetching {topic}/{partition} made no progress at offset {next} \
                     (high watermark {end}, {} bytes returned)",
                    bytes.len()
                )));
            }
        }
    }

    fn fetch(
        &mut self,
        version: i16,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> io::Result<PartitionData> {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(100)
            .with_min_bytes(1)
            .with_max_bytes(FETCH_MAX_BYTES)
            // read_uncommitted: everything, markers included; we settle it ourselves.
            .with_isolation_level(0)
            // Sessionless full fetch.
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(FETCH_MAX_BYTES),
                    ]),
            ]);
        let response: FetchResponse = self.call(ApiKey::Fetch, version, &request)?;
        check(response.error_code, "Fetch")?;
        response
            .responses
            .into_iter()
            .filter(|t| t.topic.0.as_str() == topic)
            .flat_map(|t| t.partitions)
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| invalid(format!("fetch response lacks {topic}/{partition}")))
    }
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

fn check(error_code: i16, what: &str) -> io::Result<()> {
    use kafka_protocol::error::ParseResponseErrorCode;
    match error_code.err() {
        None => Ok(()),
        Some(error) => Err(invalid(format!(
            "{what}: broker error {error_code} ({error:?})"
        ))),
    }
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kafka_protocol::messages::ProduceRequest;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::produce_response::ProduceResponse;
    use kafka_protocol::records::{
        Compression, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    use rdkafka::ClientConfig;
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn producer(bootstrap: &str, transactional_id: Option<&str>) -> BaseProducer {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", bootstrap);
        if let Some(id) = transactional_id {
            config.set("transactional.id", id);
        }
        config.create().expect("producer")
    }

    fn send(producer: &BaseProducer, topic: &str, value: &str) {
        let headers = OwnedHeaders::new().insert(Header {
            key: "v",
            value: Some(value),
        });
        producer
            .send(
                BaseRecord::to(topic)
                    .partition(0)
                    .key(value)
                    .payload(value)
                    .headers(headers),
            )
            .map_err(|(e, _)| e)
            .expect("send");
    }

    /// The producer id and epoch of the last transactional data batch in the log.
    fn last_transaction(bootstrap: &str, topic: &str) -> (i64, i16) {
        let batches = Broker::connect(bootstrap)
            .and_then(|mut b| b.fetch_batches(topic, 0))
            .expect("fetch");
        let batch = batches
            .iter()
            .rev()
            .find(|b| b.transactional && !b.control)
            .expect("a transactional batch");
        (batch.producer_id, batch.records[0].producer_epoch)
    }

    /// Appends the marker a real transaction coordinator would write on EndTxn: the
    /// librdkafka mock cluster writes none, and accepts a control batch in a Produce
    /// request that names no transactional id (a real broker would refuse it).
    fn append_marker(bootstrap: &str, topic: &str, (producer_id, epoch): (i64, i16), kind: i16) {
        let mut key = 0i16.to_be_bytes().to_vec();
        key.extend(kind.to_be_bytes());
        let mut value = 0i16.to_be_bytes().to_vec();
        value.extend(0i32.to_be_bytes()); // coordinator epoch
        let marker = Record {
            transactional: true,
            control: true,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: 0,
            key: Some(key.into()),
            value: Some(value.into()),
            headers: Default::default(),
        };
        let mut records = Vec::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut records, [&marker], &options).expect("encode marker");

        let mut broker = Broker::connect(bootstrap).expect("connect");
        // Produce v13+ names topics by id.
        let version = broker
            .version(ApiKey::Produce, VersionRange { min: 3, max: 12 })
            .expect("produce version");
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(topic_name(topic))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(records.into())),
                    ]),
            ]);
        let response: ProduceResponse = broker
            .call(ApiKey::Produce, version, &request)
            .expect("produce marker");
        for partition in response
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
        {
            check(partition.error_code, "produce marker").expect("marker appended");
        }
    }

    fn values(log: &PartitionLog) -> Vec<&str> {
        log.committed
            .iter()
            .map(|r| std::str::from_utf8(r.value.as_deref().expect("a value")).expect("utf-8"))
            .collect()
    }

    #[test]
    fn markers_settle_transactions() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        let bootstrap = cluster.bootstrap_servers();
        let topic = "raw";
        cluster.create_topic(topic, 1, 1).expect("topic");

        let transactional = producer(&bootstrap, Some("kafka-raw-test"));
        transactional.init_transactions(TIMEOUT).expect("init");
        transactional.begin_transaction().expect("begin");
        for value in ["a", "b", "c"] {
            send(&transactional, topic, value);
        }
        transactional.commit_transaction(TIMEOUT).expect("commit");

        // The mock cluster wrote no COMMIT marker: the transaction still looks open.
        let log = read_partition(&bootstrap, topic, 0).expect("read");
        assert_eq!((log.committed.len(), log.aborted, log.open), (0, 0, 3));

        append_marker(
            &bootstrap,
            topic,
            last_transaction(&bootstrap, topic),
            CONTROL_COMMIT,
        );

        transactional.begin_transaction().expect("begin");
        for value in ["x", "y"] {
            send(&transactional, topic, value);
        }
        transactional.flush(TIMEOUT).expect("flush");
        transactional.abort_transaction(TIMEOUT).expect("abort");
        append_marker(
            &bootstrap,
            topic,
            last_transaction(&bootstrap, topic),
            CONTROL_ABORT,
        );

        let plain = producer(&bootstrap, None);
        send(&plain, topic, "d");
        plain.flush(TIMEOUT).expect("flush");

        let log = read_partition(&bootstrap, topic, 0).expect("read");
        assert_eq!(values(&log), ["a", "b", "c", "d"]);
        assert_eq!((log.aborted, log.open), (2, 0));
        let first = &log.committed[0];
        assert_eq!(
            (first.partition, first.key.as_deref(), &first.headers[..]),
            (0, Some(&b"a"[..]), &[("v".to_owned(), b"a".to_vec())][..])
        );
        let offsets: Vec<i64> = log.committed.iter().map(|r| r.offset).collect();
        assert!(
            offsets.is_sorted() && offsets[3] > offsets[2],
            "{offsets:?}"
        );

        assert_eq!(read_topic(&bootstrap, topic).expect("read topic"), [log]);
    }

    #[test]
    fn empty_partitions_read_empty() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        let bootstrap = cluster.bootstrap_servers();
        cluster.create_topic("empty", 2, 1).expect("topic");

        assert_eq!(
            read_partition(&bootstrap, "empty", 1).expect("read"),
            PartitionLog::default()
        );
        assert_eq!(
            read_topic(&bootstrap, "empty").expect("read topic"),
            [PartitionLog::default(), PartitionLog::default()]
        );
        assert!(read_partition(&bootstrap, "empty", 2).is_err());
    }
}
