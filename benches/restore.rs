//! Restore speed: how fast a partition's state comes back from its changelog on an
//! instance with no local state, against Apache Kafka (one node on loopback, started by
//! scripts/kafka.sh for this run).
//!
//! The changelog of one input partition is written the way Weir writes it: checkpoints
//! of WEIR_BENCH_BLOCK state records each (default 1,000), every one a marker naming
//! the checkpoint, its parent and its input offset, then its records; WEIR_BENCH_KEYS
//! keys in all (default 1,000,000), each written once, 8-byte keys and values. The
//! group's committed input offset names the last checkpoint, as after a clean run. Then
//! a daemon in this process (the code `weir serve` runs) starts the pipeline with an
//! empty data directory, and its partition restores everything before it runs.
//! Reported: the restore's own time and rate, from the worker's `restored state from
//! the changelog` event, against the target of 500,000 records/s (issue 18).
//!
//! `cargo bench -p weir-benches --bench restore`.

#[global_allocator]
static ALLOCATOR: weir_runtime::HostAllocator = weir_runtime::HostAllocator;

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use weir_runtime::config::{Config, PipelineConfig};
use weir_runtime::daemon::Daemon;
use weir_runtime::kafka::records::checkpoint_headers;
use weir_runtime::state::changelog;
use weir_tests::broker::Kafka;
use weir_tests::guest;

const GROUP: &str = "bench.restore";

/// The `applied` and `elapsed_ms` of the restore event, once it is logged.
#[derive(Clone, Default)]
struct Restored(Arc<Mutex<Option<(u64, u64)>>>);

impl<S: tracing::Subscriber> Layer<S> for Restored {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        #[derive(Default)]
        struct Fields {
            message: bool,
            applied: Option<u64>,
            elapsed_ms: Option<u64>,
        }
        impl Visit for Fields {
            fn record_u64(&mut self, field: &Field, value: u64) {
                match field.name() {
                    "applied" => self.applied = Some(value),
                    "elapsed_ms" => self.elapsed_ms = Some(value),
                    _ => {}
                }
            }
            fn record_str(&mut self, field: &Field, value: &str) {
                if field.name() == "message" && value == "restored state from the changelog" {
                    self.message = true;
                }
            }
            fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
                if field.name() == "message"
                    && format!("{value:?}") == "restored state from the changelog"
                {
                    self.message = true;
                }
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let (true, Some(applied), Some(elapsed)) =
            (fields.message, fields.applied, fields.elapsed_ms)
        {
            *self.0.lock().unwrap() = Some((applied, elapsed));
        }
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// The changelog of input partition 0, as Weir writes it; returns the input offset the
/// last checkpoint commits.
fn write_changelog(bootstrap: &str, topic: &str, keys: u64, block: u64) -> i64 {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .create()
        .expect("a producer");
    let send = |record: BaseRecord<'_, [u8], [u8]>| {
        let mut record = record;
        loop {
            match producer.send(record) {
                Ok(()) => return,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
    };
    let (mut parent, mut checkpoint, mut input_offset) = (changelog::ROOT, 0_u64, 0_i64);
    let mut key = 0;
    while key < keys {
        checkpoint += 1;
        input_offset += 1;
        let offset = input_offset.to_string();
        let headers = checkpoint_headers(checkpoint, parent, input_offset);
        send(
            BaseRecord::to(topic)
                .partition(0)
                .key(changelog::MARKER_KEY)
                .payload(offset.as_bytes())
                .headers(headers),
        );
        for _ in 0..block.min(keys - key) {
            let k = key.to_be_bytes();
            send(
                BaseRecord::to(topic)
                    .partition(0)
                    .key(&k[..])
                    .payload(&k[..]),
            );
            key += 1;
        }
        parent = checkpoint;
    }
    producer
        .flush(Duration::from_secs(120))
        .expect("changelog written");
    input_offset
}

/// Every record of partition 0 of `topic`, read by a plain consumer to the end.
fn read_all(bootstrap: &str, topic: &str) -> u64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench.restore.bare")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        // As Weir's restore consumer prefetches (see worker/restore.rs).
        .set("queued.min.messages", "10000000")
        .set("queued.max.messages.kbytes", "16384")
        .set("max.partition.fetch.bytes", "8388608")
        .create()
        .expect("a consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(0))
        .unwrap();
    consumer.assign(&tpl).expect("assigned");
    let mut records = 0;
    loop {
        match consumer.poll(Duration::from_secs(30)) {
            Some(Ok(_)) => records += 1,
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return records,
            Some(Err(error)) => panic!("reading {topic}: {error}"),
            None => panic!("reading {topic} stalled"),
        }
    }
}

fn main() {
    let keys = env_number("WEIR_BENCH_KEYS", 1_000_000);
    let block = env_number("WEIR_BENCH_BLOCK", 1_000).max(1);
    let restored = Restored::default();
    // Info and above, as `weir serve` logs by default: debug events (one per changelog
    // record) would otherwise be built for the recorder and weigh on the restore.
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::INFO)
            .with(restored.clone()),
    )
    .expect("the restore recorder");

    let broker = Kafka::start(1);
    let bootstrap = broker.bootstrap.clone();
    let changelog_topic = PipelineConfig::changelog_topic(GROUP, "in");
    for topic in ["in", "out", changelog_topic.as_str()] {
        broker.create_topic(topic, 1);
    }
    let written = Instant::now();
    let committed = write_changelog(&bootstrap, &changelog_topic, keys, block);
    let written = written.elapsed();

    // A bare consumer reads the same changelog first: the ceiling a restore can reach
    // here, and a warm broker (its JIT and page cache) for the restore after it.
    let read = Instant::now();
    let records = read_all(&bootstrap, &changelog_topic);
    let read = read.elapsed();

    // The input the checkpoints consumed, and the group's offset after it.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("a producer");
    for _ in 0..committed {
        producer
            .send(BaseRecord::<(), [u8]>::to("in").partition(0).payload(b"x"))
            .expect("queued");
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("input written");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", GROUP)
        .create()
        .expect("a consumer");
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("in", 0, Offset::Offset(committed))
        .unwrap();
    consumer
        .commit(&offsets, CommitMode::Sync)
        .expect("the group's offset");

    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "data_dir = {:?}\n[kafka]\nbrokers = {bootstrap:?}\n\
         [pipelines.wc]\nmodule = {:?}\ninputs = [\"in\"]\noutput = \"out\"\n\
         group_id = {GROUP:?}\n",
        dir.path().display().to_string(),
        guest("word-count").display().to_string()
    );
    let config = Config::parse(&text, dir.path()).expect("a valid bench config");
    let daemon = Daemon::prepare(&config, None).expect("weir starts");
    let shutdown = Arc::new(AtomicBool::new(false));
    let waiter = {
        let (restored, shutdown) = (restored.clone(), shutdown.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(600);
            while restored.0.lock().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            shutdown.store(true, Ordering::Release);
        })
    };
    daemon.run(&shutdown).expect("weir stops cleanly");
    waiter.join().unwrap();

    let (applied, elapsed_ms) = restored
        .0
        .lock()
        .unwrap()
        .expect("the partition restored within 10 minutes");
    assert_eq!(applied, keys, "every key restored");
    println!(
        "changelog: {keys} keys in checkpoints of {block}, written in {written:.1?} \
         ({:.0} records/s)",
        keys as f64 / written.as_secs_f64()
    );
    println!(
        "bare consumer: {records} records in {read:.1?} = {:.0} records/s",
        records as f64 / read.as_secs_f64()
    );
    println!(
        "restore: {applied} records in {elapsed_ms} ms = {:.0} records/s (target 500,000)",
        applied as f64 * 1000.0 / elapsed_ms.max(1) as f64
    );
}
