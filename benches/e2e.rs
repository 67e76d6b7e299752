//! End-to-end throughput and latency against Apache Kafka (a single node on loopback,
//! started by scripts/kafka.sh for this run):
//!
//! 1. a native rdkafka consume -> produce pass-through (the limit of this machine and
//!    broker: no transform, no state, no transactions);
//! 2. Weir stateless (the byte-map example) under exactly-once;
//! 3. Weir stateful word count under exactly-once, over one-word records (one state
//!    update and one output per input, the same traffic as the pass-through), beside
//!    Kafka Streams doing the same count (benches/kstreams: RocksDB, exactly_once_v2,
//!    as many stream threads as cores) on the same broker, topics and cores; and over
//!    ~100-byte lines of ~15 words (15 updates and 15 outputs per input);
//! 4. a windowed count (the tumbling-count example: per key, one-minute event-time
//!    windows, 10 s of grace, each emitted once when it closes) over keyed records with
//!    timestamps up to 5 s out of order, beside Kafka Streams' windowed count with
//!    suppression (benches/kstreams/WindowedCount) on the same broker and cores;
//! 5. an enrichment join (the enrich example: orders keyed by customer id, each joined
//!    with its row of a compacted `customers` table of 100,000 customers, kept by the
//!    host per partition), beside Kafka Streams' KStream-KTable join
//!    (benches/kstreams/EnrichJoin) on the same broker and cores;
//! 6. end-to-end latency, from the produce call to the output seen by a
//!    `read_committed` consumer, at a fixed moderate rate with a commit interval of
//!    100 ms: Weir stateless under exactly-once and at-least-once, Weir's word count and
//!    Kafka Streams' under exactly-once. The load runs 3 s before it is measured, so a
//!    new producer's first records (which wait for its metadata and producer id) do not
//!    count.
//!
//! Throughput is the steady state: input records per second from the first progress to
//! the end (for the pass-through, the first record received to the last output
//! acknowledged; for Weir, the first committed checkpoint to the one that commits the
//! last input). Group join and startup are reported apart, as the time to first progress.
//!
//! `cargo bench -p weir-benches --bench e2e` (a release build). Records and rate can be
//! set with WEIR_BENCH_RECORDS (default 1,000,000) and WEIR_BENCH_RATE (default 5,000/s);
//! WEIR_BENCH_COMMIT_MS sets the pipelines' commit interval (default: Weir's default),
//! WEIR_BENCH_PRODUCER adds producer properties (`linger.ms=20,batch.size=1000000`) and
//! WEIR_BENCH_CONSUMER consumer properties to Weir's config, and
//! WEIR_BENCH_CASES picks cases: stateless,stateful,windowed,enrich,lines,latency (default:
//! all), and
//! WEIR_BENCH_ROUNDS how many rounds of pass-through and Weir each case runs (default 3;
//! with an even count the upper of the two middle ratios is reported), and how many
//! rounds of each latency case (every round printed; WEIR_BENCH_THREADS sets Weir's
//! processing threads).
//! WEIR_BENCH_LATENCY_LOG=dir writes each measured latency record's send time, latency,
//! output partition, offset and broker append time to dir/<output topic>.tsv (the
//! latency outputs are stamped by the broker as appended, `LogAppendTime`).
//! Weir runs in this process through `weir_runtime::daemon`, the code `weir serve` runs.

#[global_allocator]
static ALLOCATOR: weir_runtime::HostAllocator = weir_runtime::HostAllocator;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message};
use weir_runtime::config::Config;
use weir_runtime::daemon::Daemon;
use weir_tests::broker::Kafka;
use weir_tests::guest;

mod streams_app;

use streams_app::{CommittedReader, Job, StreamsApp};

const PARTITIONS: i32 = 8;
const VALUE_BYTES: usize = 100;
/// Every consumer here polls briskly, so latency measures Weir and the broker, not
/// librdkafka's 500 ms default fetch wait on an idle partition.
const FETCH_WAIT_MS: u32 = 10;
/// How long the latency load runs before it is measured.
const LATENCY_WARM_UP: Duration = Duration::from_secs(3);
const WORDS: &[&str] = &[
    "river", "weir", "water", "stone", "bank", "flow", "mill", "race", "reed", "pool", "ford",
    "bridge", "eddy", "sluice", "gate", "lock",
];

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A ~100-byte line of words, varied by `i`.
fn line(i: u64) -> String {
    let mut text = String::with_capacity(VALUE_BYTES + 8);
    let mut k = i;
    while text.len() < VALUE_BYTES - 8 {
        text.push_str(WORDS[(k % WORDS.len() as u64) as usize]);
        text.push(' ');
        k = k
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
            >> 7;
    }
    text.truncate(VALUE_BYTES);
    text
}

fn producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .create()
        .expect("a producer")
}

fn send(producer: &BaseProducer, topic: &str, partition: Option<i32>, value: &[u8]) {
    let mut record = BaseRecord::<(), [u8]>::to(topic).payload(value);
    if let Some(p) = partition {
        record = record.partition(p);
    }
    deliver(producer, record);
}

/// Send `record`, waiting while the producer's queue is full.
fn deliver<K: rdkafka::message::ToBytes + ?Sized>(
    producer: &BaseProducer,
    mut record: BaseRecord<'_, K, [u8]>,
) {
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, back)) => {
                record = back;
                producer.poll(Duration::from_millis(1));
            }
        }
    }
}

/// Distinct words of the one-word input, as in the engine bench's stateful count.
const DISTINCT_WORDS: u64 = 100_000;

/// A one-word value, cycling through `DISTINCT_WORDS` words in a scattered order.
fn word(i: u64) -> String {
    format!("w{:06}", (i * 7919) % DISTINCT_WORDS)
}

/// Keys of the windowed input.
const WINDOW_KEYS: u64 = 100;
const EVENT_TIME_BASE: i64 = 1_700_000_000_000;

/// Clicks for the windowed count: `WINDOW_KEYS` keys, 10 ms of event time apart, some
/// up to 5 s behind (within the 10 s grace), each key in a partition of its own.
fn fill_clicks(bootstrap: &str, topic: &str, records: u64) {
    let producer = producer(bootstrap);
    for i in 0..records {
        let scattered = i.wrapping_mul(6364136223846793005) >> 33;
        let key = format!("u{:03}", scattered % WINDOW_KEYS);
        let behind = if scattered % 10 == 0 {
            (scattered % 5_000) as i64
        } else {
            0
        };
        let record = BaseRecord::<str, [u8]>::to(topic)
            .partition((i % PARTITIONS as u64) as i32)
            .key(key.as_str())
            .payload(&b"click"[..])
            .timestamp(EVENT_TIME_BASE + i as i64 * 10 - behind);
        deliver(&producer, record);
        if i % 1000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .expect("inputs acknowledged");
    println!("input {topic:?}: {records} keyed clicks in {PARTITIONS} partitions");
}

/// Customers of the enrichment join's table.
const CUSTOMERS: u64 = 100_000;
/// The join's table topic.
const CUSTOMERS_TOPIC: &str = "customers";

/// The customers table, all rows older than every order: keyed by id, partitioned by
/// librdkafka's default partitioner on the key, as the orders are (co-partitioned).
fn fill_customers(bootstrap: &str) {
    let producer = producer(bootstrap);
    for n in 0..CUSTOMERS {
        let key = format!("c{n:06}");
        let value = format!(r#"{{"name":"customer {n}","region":"r{}"}}"#, n % 17);
        let record = BaseRecord::<str, [u8]>::to(CUSTOMERS_TOPIC)
            .key(key.as_str())
            .payload(value.as_bytes())
            .timestamp(EVENT_TIME_BASE - 1_000);
        deliver(&producer, record);
        if n % 1000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .expect("customers acknowledged");
    println!("table {CUSTOMERS_TOPIC:?}: {CUSTOMERS} customers in {PARTITIONS} partitions");
}

/// Orders keyed by a scattered customer id (every one known), 1 ms of event time apart.
fn fill_orders(bootstrap: &str, topic: &str, records: u64) {
    let producer = producer(bootstrap);
    for i in 0..records {
        let customer = (i.wrapping_mul(6364136223846793005) >> 33) % CUSTOMERS;
        let key = format!("c{customer:06}");
        let value = format!(r#"{{"id":"o{i}","amount":{}.5}}"#, i % 500);
        let record = BaseRecord::<str, [u8]>::to(topic)
            .key(key.as_str())
            .payload(value.as_bytes())
            .timestamp(EVENT_TIME_BASE + i as i64);
        deliver(&producer, record);
        if i % 1000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .expect("orders acknowledged");
    println!("input {topic:?}: {records} orders in {PARTITIONS} partitions");
}

fn fill_input(bootstrap: &str, topic: &str, records: u64, value: impl Fn(u64) -> String) {
    let producer = producer(bootstrap);
    let started = Instant::now();
    for i in 0..records {
        send(
            &producer,
            topic,
            Some((i % PARTITIONS as u64) as i32),
            value(i).as_bytes(),
        );
        if i % 1000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .expect("inputs acknowledged");
    println!(
        "input {topic:?}: {records} records in {PARTITIONS} partitions, produced in {:.1?}",
        started.elapsed()
    );
}

/// How a pipeline drained its input.
struct Run {
    /// From the start of the pipeline (group join included) to its first progress.
    startup: Duration,
    /// Input records per second from the first progress to the last.
    records_per_s: f64,
}

impl Run {
    /// A run started at `started` whose progress was first seen at `first` and last at
    /// `last`, each an instant and the input records done by then.
    fn new(started: Instant, first: (Instant, u64), last: (Instant, u64)) -> Self {
        Self {
            startup: first.0 - started,
            records_per_s: (last.1 - first.1) as f64 / (last.0 - first.0).as_secs_f64(),
        }
    }

    fn print(&self, what: &str, baseline: Option<&Run>) {
        let share = baseline.map_or(String::new(), |b| {
            format!(
                "  {:>5.1}% of pass-through",
                100.0 * self.records_per_s / b.records_per_s
            )
        });
        println!(
            "{what:<44} {:>9.0} records/s{share}  (first progress after {:.1?})",
            self.records_per_s, self.startup
        );
    }
}

/// Native consume -> produce from `input` to `output`, no transform: from the first
/// record received to the last output acknowledged.
fn pass_through(bootstrap: &str, records: u64, input: &str, output: &str) -> Run {
    let started = Instant::now();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-{output}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("fetch.wait.max.ms", FETCH_WAIT_MS.to_string())
        .create()
        .expect("a consumer");
    consumer.subscribe(&[input]).expect("subscribe");
    let producer = producer(bootstrap);
    let mut first = None;
    let mut seen = 0;
    while seen < records {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            first.get_or_insert_with(|| (Instant::now(), 1));
            send(
                &producer,
                output,
                None,
                message.payload().unwrap_or_default(),
            );
            seen += 1;
            if seen % 1000 == 0 {
                producer.poll(Duration::ZERO);
            }
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .expect("outputs acknowledged");
    Run::new(started, first.expect("records"), (Instant::now(), records))
}

/// The config of one pipeline `name`; `extra` lines go in its table.
fn weir_config(
    dir: &Path,
    bootstrap: &str,
    name: &str,
    module: &Path,
    (input, output): (&str, &str),
    extra: &str,
) -> Config {
    let commit = std::env::var("WEIR_BENCH_COMMIT_MS")
        .map(|ms| format!("commit_interval_ms = {ms}\n"))
        .unwrap_or_default();
    let properties = |variable: &str| -> String {
        std::env::var(variable)
            .unwrap_or_default()
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(key, value)| format!("{key:?} = {value:?}\n"))
            .collect()
    };
    let (producer, consumer) = (
        properties("WEIR_BENCH_PRODUCER"),
        properties("WEIR_BENCH_CONSUMER"),
    );
    let threads = std::env::var("WEIR_BENCH_THREADS")
        .map(|n| format!("threads = {n}\n"))
        .unwrap_or_default();
    let text = format!(
        "{threads}data_dir = {:?}\n[kafka]\nbrokers = {bootstrap:?}\n[kafka.consumer_properties]\n\
         \"session.timeout.ms\" = 6000\n{consumer}[kafka.producer_properties]\n{producer}\
         [pipelines.{name}]\nmodule = {:?}\ninputs = [{input:?}]\noutput = {output:?}\n{commit}{extra}",
        dir.display().to_string(),
        module.display().to_string()
    );
    Config::parse(&text, dir).expect("a valid bench config")
}

/// Run `pipeline` over the whole of `input`: from its first committed checkpoint to
/// the one that commits the last input record. Progress is the daemon's own committed
/// positions (what `weir status` shows), not the broker's end offsets, which run ahead of
/// what is committed while transactions are open.
fn weir_throughput(
    bootstrap: &str,
    records: u64,
    (name, module, extra): (&str, &Path, &str),
    input: &str,
    output: &str,
) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let config = weir_config(dir.path(), bootstrap, name, module, (input, output), extra);
    let started = Instant::now();
    let daemon = Daemon::prepare(&config, None).expect("weir starts");
    let shutdown = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let committed = || -> u64 {
                let status = daemon.status();
                let partitions = status.iter().flat_map(|p| &p.partitions);
                partitions.filter_map(|p| p.next_offset).sum::<i64>() as u64
            };
            let mut first = None;
            loop {
                let (now, done) = (Instant::now(), committed());
                if done > 0 {
                    first.get_or_insert((now, done));
                }
                if done >= records {
                    shutdown.store(true, Ordering::Release);
                    return Run::new(started, first.expect("progress"), (now, done));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        daemon.run(&shutdown).expect("weir stops cleanly");
        watcher.join().unwrap()
    })
}

/// Latency percentiles and how many records they are of.
struct Latency {
    p50: Duration,
    p99: Duration,
    records: usize,
}

/// End-to-end latency of Weir's pipeline of `example` at `rate` records/s for
/// `seconds`, with `extra` settings (the guarantee) and a 100 ms commit interval.
fn weir_latency(
    bootstrap: &str,
    (input, output): (&str, &str),
    example: &str,
    extra: &str,
    rate: u64,
    seconds: u64,
) -> Latency {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (input.to_owned(), output.to_owned());
    let name = output.trim_start_matches("out-");
    let config = weir_config(
        dir.path(),
        bootstrap,
        name,
        &guest(example),
        (&input, &output),
        &format!("commit_interval_ms = 100\n{extra}"),
    );
    let daemon = Daemon::prepare(&config, None).expect("weir starts");
    let shutdown = Arc::new(AtomicBool::new(false));
    let stop = shutdown.clone();
    let bootstrap = bootstrap.to_owned();
    let driver = std::thread::spawn(move || {
        let result = drive_latency(&bootstrap, (&input, &output), rate, seconds);
        stop.store(true, Ordering::Release);
        result
    });
    daemon.run(&shutdown).expect("weir stops cleanly");
    driver.join().unwrap()
}

/// End-to-end latency of the Kafka Streams word count, as [`weir_latency`].
fn kstreams_latency(
    bootstrap: &str,
    (input, output): (&str, &str),
    rate: u64,
    seconds: u64,
) -> Latency {
    let app = format!("bench-{}", output.trim_start_matches("out-"));
    let _app = StreamsApp::start(Job::WordCount, bootstrap, &app, input, output, 2, 100);
    drive_latency(bootstrap, (input, output), rate, seconds)
}

/// When a latency record was sent, in microseconds since the epoch: the first 20
/// digits of the value (byte map's outputs) or of a key `t<digits>` (word count's).
fn sent_at(message: &impl Message) -> Option<u64> {
    let digits =
        |bytes: &[u8]| -> Option<u64> { std::str::from_utf8(bytes.get(..20)?).ok()?.parse().ok() };
    match message.key() {
        Some(key) if key.first() == Some(&b't') => digits(&key[1..]),
        _ => message.payload().and_then(digits),
    }
}

/// Produce to `input` at `rate` with the send time in each value; read `output`
/// read_committed and measure.
fn drive_latency(
    bootstrap: &str,
    (input, output): (&str, &str),
    rate: u64,
    seconds: u64,
) -> Latency {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-reader-{output}"))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("fetch.wait.max.ms", FETCH_WAIT_MS.to_string())
        .create()
        .expect("a reader");
    reader.subscribe(&[output]).unwrap();
    // Give the pipeline and the reader time to join their groups.
    let warmup = Instant::now();
    while warmup.elapsed() < Duration::from_secs(7) {
        reader.poll(Duration::from_millis(100));
    }

    let now_micros = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64
    };
    let producer = producer(bootstrap);
    // The load runs LATENCY_WARM_UP before it is measured: a new producer's first
    // records wait for its metadata and producer id (up to half a second here, for
    // Kafka's own Java producer too), which is the bench's start, not the steady state.
    let measured = rate * seconds;
    let total = measured + rate * LATENCY_WARM_UP.as_secs();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let started = Instant::now();
    let measure_from = now_micros() + LATENCY_WARM_UP.as_micros() as u64;
    let mut latencies = Vec::with_capacity(measured as usize);
    // WEIR_BENCH_LATENCY_LOG=dir keeps every measured record's send time, latency,
    // output partition, offset and broker append time in dir/<output>.tsv, to see when
    // the tails happen and where.
    let mut trace = std::env::var_os("WEIR_BENCH_LATENCY_LOG").map(|dir| {
        let path = Path::new(&dir).join(format!("{output}.tsv"));
        std::io::BufWriter::new(std::fs::File::create(path).expect("a latency log"))
    });
    let mut sent = 0;
    let deadline = started + LATENCY_WARM_UP + Duration::from_secs(seconds + 30);
    while (latencies.len() as u64) < measured && Instant::now() < deadline {
        while sent < total && started + interval * sent as u32 <= Instant::now() {
            // Byte map keeps the leading digits; word count keys an output by the
            // word `t<digits>` (and one by the bare digits, which is not read).
            let stamp = now_micros();
            let mut value = format!("{stamp:020} t{stamp:020}").into_bytes();
            value.resize(VALUE_BYTES, b' ');
            send(&producer, input, None, &value);
            sent += 1;
        }
        producer.poll(Duration::ZERO);
        if let Some(Ok(message)) = reader.poll(Duration::from_millis(1))
            && let Some(at) = sent_at(&message)
            && at >= measure_from
        {
            let latency = now_micros().saturating_sub(at);
            latencies.push(Duration::from_micros(latency));
            if let Some(trace) = &mut trace {
                use std::io::Write;
                let (partition, offset) = (message.partition(), message.offset());
                let appended = message.timestamp().to_millis().unwrap_or(0);
                writeln!(trace, "{at}\t{latency}\t{partition}\t{offset}\t{appended}").unwrap();
            }
        }
    }
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Latency {
        p50: pick(0.50),
        p99: pick(0.99),
        records: latencies.len(),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and test discovery
    }
    let records = env_number("WEIR_BENCH_RECORDS", 1_000_000);
    let rate = env_number("WEIR_BENCH_RATE", 5_000);
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let rounds = env_number("WEIR_BENCH_ROUNDS", 3).max(1);
    let broker = Kafka::start(1);
    let mut topics = vec![
        "in".to_owned(),
        "words".to_owned(),
        "clicks".to_owned(),
        "orders".to_owned(),
        CUSTOMERS_TOPIC.to_owned(),
        "out-lines".to_owned(),
    ];
    for case in &LATENCY_CASES {
        for round in 1..=rounds {
            let (input, output) = case.topics(round);
            topics.extend([input, output]);
        }
    }
    for case in &ROUND_CASES {
        for round in 1..=rounds {
            topics.extend([case.pass_through_output(round), case.weir_output(round)]);
            if case.kstreams.is_some() {
                topics.push(case.kstreams_output(round));
            }
        }
    }
    for topic in &topics {
        if topic.starts_with("out-lat") {
            // The broker stamps each output when it appends it: the latency log can
            // tell the pipeline's part from the commit's and the reader's.
            let append = [("message.timestamp.type", "LogAppendTime")];
            broker.create_topic_with(topic, PARTITIONS, &append);
        } else if topic == CUSTOMERS_TOPIC {
            broker.create_topic_with(topic, PARTITIONS, &[("cleanup.policy", "compact")]);
        } else {
            broker.create_topic(topic, PARTITIONS);
        }
    }
    let bootstrap = broker.bootstrap.clone();
    fill_input(&bootstrap, "in", records, line);
    fill_input(&bootstrap, "words", records, word);
    if wanted("windowed") {
        fill_clicks(&bootstrap, "clicks", records);
    }
    if wanted("enrich") {
        fill_customers(&bootstrap);
        fill_orders(&bootstrap, "orders", records);
    }

    for case in &ROUND_CASES {
        if wanted(case.name) {
            compare_rounds(case, rounds, &bootstrap, records);
        }
    }
    if wanted("lines") {
        let module = guest("word-count");
        let lines = weir_throughput(
            &bootstrap,
            records,
            ("linecount", &module, ""),
            "in",
            "out-lines",
        );
        lines.print("weir word count over 15-word lines (EOS)", None);
    }
    if wanted("latency") {
        // Rounds in turn, not each case's rounds together: a slow stretch of the
        // machine or the broker then shows in one round of every case, not in all
        // rounds of one.
        for round in 1..=rounds {
            for case in &LATENCY_CASES {
                let (input, output) = case.topics(round);
                let latency = match case.example {
                    Some(example) => {
                        weir_latency(&bootstrap, (&input, &output), example, case.extra, rate, 10)
                    }
                    None => kstreams_latency(&bootstrap, (&input, &output), rate, 10),
                };
                println!(
                    "latency at {rate}/s, round {round}, {:<44} p50 {:>7.1?}  p99 {:>7.1?}  ({} records)",
                    case.what, latency.p50, latency.p99, latency.records
                );
            }
        }
    }
}

/// A latency case: Weir running `example` with `extra` settings, or Kafka Streams.
struct LatencyCase {
    name: &'static str,
    what: &'static str,
    example: Option<&'static str>,
    extra: &'static str,
}

impl LatencyCase {
    fn topics(&self, round: u64) -> (String, String) {
        (
            format!("in-{}-{round}", self.name),
            format!("out-{}-{round}", self.name),
        )
    }
}

const LATENCY_CASES: [LatencyCase; 4] = [
    LatencyCase {
        name: "lat-eos",
        what: "weir byte map, EOS (target p99 250 ms)",
        example: Some("byte-map"),
        extra: "guarantee = \"exactly-once\"\n",
    },
    LatencyCase {
        name: "lat-alo",
        what: "weir byte map, at-least-once (target p99 50 ms)",
        example: Some("byte-map"),
        extra: "guarantee = \"at-least-once\"\n",
    },
    LatencyCase {
        name: "lat-count",
        what: "weir word count, EOS",
        example: Some("word-count"),
        extra: "guarantee = \"exactly-once\"\n",
    },
    LatencyCase {
        name: "lat-kstreams",
        what: "kafka streams word count, EOS v2",
        example: None,
        extra: "",
    },
];

/// A case measured in rounds against the pass-through of its input.
struct RoundCase {
    /// Its name in WEIR_BENCH_CASES, and the prefix of its pipelines and topics.
    name: &'static str,
    what: &'static str,
    example: &'static str,
    input: &'static str,
    /// Lines of the pipeline's table in Weir's config.
    extra: &'static str,
    /// Kafka Streams does the same job in each round too.
    kstreams: Option<Job>,
}

const ROUND_CASES: [RoundCase; 4] = [
    RoundCase {
        name: "stateless",
        what: "weir stateless (byte map, EOS; target 70%)",
        example: "byte-map",
        input: "in",
        extra: "",
        kstreams: None,
    },
    RoundCase {
        name: "stateful",
        what: "weir stateful (word count, EOS; target 50%)",
        example: "word-count",
        input: "words",
        extra: "",
        kstreams: Some(Job::WordCount),
    },
    RoundCase {
        name: "windowed",
        what: "weir windowed count (1 min tumbling, EOS)",
        example: "tumbling-count",
        input: "clicks",
        extra: "max_out_of_orderness_ms = 0\nconfig = { window_ms = \"60000\", grace_ms = \"10000\" }\n",
        kstreams: Some(Job::WindowedCount),
    },
    RoundCase {
        name: "enrich",
        what: "weir enrichment join (100k-row table, EOS)",
        example: "enrich",
        input: "orders",
        extra: "tables = { customers = { topic = \"customers\" } }\n",
        kstreams: Some(Job::EnrichJoin {
            table: CUSTOMERS_TOPIC,
        }),
    },
];

impl RoundCase {
    fn pass_through_output(&self, round: u64) -> String {
        format!("pass-{}-{round}", self.name)
    }

    fn weir_output(&self, round: u64) -> String {
        format!("out-{}-{round}", self.name)
    }

    fn kstreams_output(&self, round: u64) -> String {
        format!("kstreams-{}-{round}", self.name)
    }
}

/// Kafka Streams doing `job` over `input`: from its first committed offsets to the
/// commit that covers every input record, as Weir's runs are measured.
fn kstreams_throughput(job: Job, bootstrap: &str, records: u64, input: &str, output: &str) -> Run {
    let application_id = format!("bench-{output}");
    let started = Instant::now();
    let mut app = StreamsApp::start(job, bootstrap, &application_id, input, output, 2, 100);
    let progress = CommittedReader::new(bootstrap, &app.application_id, input, PARTITIONS);
    let mut first = None;
    loop {
        app.assert_running();
        let (now, done) = (Instant::now(), progress.committed());
        if done > 0 {
            first.get_or_insert((now, done));
        }
        if done >= records {
            return Run::new(started, first.expect("progress"), (now, done));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `rounds` rounds of a pass-through and a Weir pipeline over the case's input (which
/// goes first alternates), printing each and the median of the rounds' ratios. The
/// broker's speed drifts by tens of percent within minutes on a shared machine, so
/// each Weir run is held to the pass-through next to it, never to the best of several.
fn compare_rounds(case: &RoundCase, rounds: u64, bootstrap: &str, records: u64) {
    let module = guest(case.example);
    let native = |n| pass_through(bootstrap, records, case.input, &case.pass_through_output(n));
    let weir = |n| {
        let pipeline = format!("{}{n}", case.name);
        let output = case.weir_output(n);
        let pipeline = (pipeline.as_str(), module.as_path(), case.extra);
        weir_throughput(bootstrap, records, pipeline, case.input, &output)
    };
    let kstreams = |job, n| {
        kstreams_throughput(
            job,
            bootstrap,
            records,
            case.input,
            &case.kstreams_output(n),
        )
    };
    let what = case.what;
    let mut shares = Vec::new();
    let mut over_kstreams = Vec::new();
    for n in 1..=rounds {
        let (native, weir) = if n % 2 == 1 {
            let native = native(n);
            (native, weir(n))
        } else {
            let weir = weir(n);
            (native(n), weir)
        };
        native.print(&format!("  round {n}: native pass-through"), None);
        weir.print(&format!("  round {n}: {what}"), Some(&native));
        shares.push(weir.records_per_s / native.records_per_s);
        if let Some(job) = case.kstreams {
            let streams = kstreams(job, n);
            streams.print(
                &format!("  round {n}: kafka streams (same job, EOS v2)"),
                Some(&native),
            );
            over_kstreams.push(weir.records_per_s / streams.records_per_s);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "{what}: median {:.1}% of pass-through over {rounds} rounds",
        100.0 * median(&mut shares)
    );
    if !over_kstreams.is_empty() {
        println!(
            "{what}: median {:.2}x kafka streams' records/s over {rounds} rounds (target 1.5x)",
            median(&mut over_kstreams)
        );
    }
}

/// Whether WEIR_BENCH_CASES (a comma-separated list; every case when unset) names `case`.
fn wanted(case: &str) -> bool {
    std::env::var("WEIR_BENCH_CASES")
        .map_or(true, |cases| cases.split(',').any(|c| c.trim() == case))
}
