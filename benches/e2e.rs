//! End-to-end throughput and latency against a real broker (Tansu on loopback):
//!
//! 1. a native rdkafka consume -> produce pass-through (the limit of this machine and
//!    broker: no transform, no state, no transactions);
//! 2. Weir stateless (the byte-map example) under exactly-once;
//! 3. Weir stateful word count under exactly-once;
//! 4. end-to-end latency of (2) at a fixed moderate rate.
//!
//! `cargo bench -p weir-benches --bench e2e` (a release build). Records and rate can be
//! set with WEIR_BENCH_RECORDS (default 1,000,000) and WEIR_BENCH_RATE (default 5,000/s).
//! Weir runs in this process through `weir_runtime::daemon`, the code `weir serve` runs.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message};
use weir_runtime::config::Config;
use weir_runtime::daemon::Daemon;
use weir_tests::broker::Tansu;
use weir_tests::guest;

const PARTITIONS: i32 = 8;
const VALUE_BYTES: usize = 100;
/// Tansu answers a long-polling fetch only when its wait runs out, not when data
/// arrives (librdkafka's default wait is 500 ms), so every consumer here polls briskly.
const FETCH_WAIT_MS: u32 = 10;
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

fn fill_input(bootstrap: &str, topic: &str, records: u64) {
    let producer = producer(bootstrap);
    let started = Instant::now();
    for i in 0..records {
        send(
            &producer,
            topic,
            Some((i % PARTITIONS as u64) as i32),
            line(i).as_bytes(),
        );
        if i % 1000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .expect("inputs acknowledged");
    println!(
        "input: {records} records of {VALUE_BYTES} bytes in {PARTITIONS} partitions, produced in {:.1?}",
        started.elapsed()
    );
}

/// Native consume -> produce, no transform: records/s from subscribing (group join
/// included, as for Weir) to the last record acknowledged.
fn pass_through(bootstrap: &str, records: u64) -> f64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-pass-through")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("fetch.wait.max.ms", FETCH_WAIT_MS.to_string())
        .create()
        .expect("a consumer");
    consumer.subscribe(&["in"]).expect("subscribe");
    let producer = producer(bootstrap);
    let mut seen = 0;
    let started = Instant::now();
    while seen < records {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            send(
                &producer,
                "pass",
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
    records as f64 / started.elapsed().as_secs_f64()
}

/// Sum of the high watermarks of `topic`'s partitions (records plus transaction
/// markers): it stops moving when a pipeline has drained its input.
fn end_offsets(consumer: &BaseConsumer, topic: &str) -> i64 {
    (0..PARTITIONS)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .map_or(0, |(_, high)| high)
        })
        .sum()
}

fn weir_config(
    dir: &Path,
    bootstrap: &str,
    name: &str,
    module: &Path,
    input: &str,
    output: &str,
) -> Config {
    let text = format!(
        "data_dir = {:?}\n[kafka]\nbrokers = {bootstrap:?}\n[kafka.consumer_properties]\n\
         \"session.timeout.ms\" = 6000\n[pipelines.{name}]\nmodule = {:?}\ninputs = [{input:?}]\n\
         output = {output:?}\n",
        dir.display().to_string(),
        module.display().to_string()
    );
    Config::parse(&text, dir).expect("a valid bench config")
}

/// Run `pipeline` over the whole input: input records/s from the start of the daemon
/// (group join included, as for the pass-through) to its last output. The output
/// topic's end offsets show progress: Tansu applies transactional offset commits late,
/// so the group's committed offsets cannot.
fn weir_throughput(bootstrap: &str, records: u64, name: &str, module: &Path, output: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let config = weir_config(dir.path(), bootstrap, name, module, "in", output);
    let daemon = Daemon::prepare(&config, None).expect("weir starts");
    let shutdown = Arc::new(AtomicBool::new(false));
    let stop = shutdown.clone();
    let (bootstrap, output) = (bootstrap.to_owned(), output.to_owned());
    // The daemon runs on this thread (the embedded broker it may own is not Send);
    // the watcher stops it once the output stops growing.
    let started = Instant::now();
    let watcher = std::thread::spawn(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .expect("a watcher");
        let mut first: Option<Instant> = None;
        let (mut last_end, mut last_change) = (0, Instant::now());
        loop {
            let end = end_offsets(&consumer, &output);
            if end > last_end {
                first.get_or_insert_with(Instant::now);
                (last_end, last_change) = (end, Instant::now());
            } else if first.is_some() && last_change.elapsed() > Duration::from_secs(3) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Release);
        assert!(first.is_some(), "no outputs");
        records as f64 / (last_change - started).as_secs_f64()
    });
    daemon.run(&shutdown).expect("weir stops cleanly");
    watcher.join().unwrap()
}

/// End-to-end latency of the stateless pipeline at `rate` records/s for `seconds`.
fn latency(bootstrap: &str, module: &Path, rate: u64, seconds: u64) -> (Duration, Duration, usize) {
    let dir = tempfile::tempdir().unwrap();
    let config = weir_config(
        dir.path(),
        bootstrap,
        "latency",
        module,
        "in-latency",
        "out-latency",
    );
    let daemon = Daemon::prepare(&config, None).expect("weir starts");
    let shutdown = Arc::new(AtomicBool::new(false));
    let stop = shutdown.clone();
    let bootstrap = bootstrap.to_owned();
    let driver = std::thread::spawn(move || {
        let result = drive_latency(&bootstrap, rate, seconds);
        stop.store(true, Ordering::Release);
        result
    });
    daemon.run(&shutdown).expect("weir stops cleanly");
    driver.join().unwrap()
}

/// Produce at `rate` with the send time in each value; read the outputs and measure.
fn drive_latency(bootstrap: &str, rate: u64, seconds: u64) -> (Duration, Duration, usize) {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-latency-reader")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("fetch.wait.max.ms", FETCH_WAIT_MS.to_string())
        .create()
        .expect("a reader");
    reader.subscribe(&["out-latency"]).unwrap();
    // Give the pipeline and the reader time to join their groups.
    let warmup = Instant::now();
    while warmup.elapsed() < Duration::from_secs(8) {
        reader.poll(Duration::from_millis(100));
    }

    let now_micros = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64
    };
    let producer = producer(bootstrap);
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(total as usize);
    let mut sent = 0;
    let deadline = started + Duration::from_secs(seconds + 30);
    while (latencies.len() as u64) < total && Instant::now() < deadline {
        while sent < total && started + interval * sent as u32 <= Instant::now() {
            let mut value = format!("{:020} ", now_micros()).into_bytes();
            value.resize(VALUE_BYTES, b'x');
            send(&producer, "in-latency", None, &value);
            sent += 1;
        }
        producer.poll(Duration::ZERO);
        if let Some(Ok(message)) = reader.poll(Duration::from_millis(1)) {
            let sent_at: Option<u64> = message
                .payload()
                .and_then(|v| std::str::from_utf8(&v[..20.min(v.len())]).ok())
                .and_then(|s| s.parse().ok());
            if let Some(at) = sent_at {
                latencies.push(Duration::from_micros(now_micros().saturating_sub(at)));
            }
        }
    }
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    (pick(0.50), pick(0.99), latencies.len())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and test discovery
    }
    let records = env_number("WEIR_BENCH_RECORDS", 1_000_000);
    let rate = env_number("WEIR_BENCH_RATE", 5_000);
    let broker = Tansu::start();
    for topic in [
        "in",
        "pass",
        "out-stateless",
        "out-stateful",
        "in-latency",
        "out-latency",
    ] {
        broker.create_topic(topic, PARTITIONS);
    }
    let bootstrap = broker.bootstrap.clone();
    fill_input(&bootstrap, "in", records);

    let native = pass_through(&bootstrap, records);
    println!("native pass-through:                {native:>10.0} records/s");
    let stateless = weir_throughput(
        &bootstrap,
        records,
        "bytemap",
        &guest("byte-map"),
        "out-stateless",
    );
    println!(
        "weir stateless (byte map, EOS):     {stateless:>10.0} records/s  {:>5.1}% of pass-through (target >= 70%)",
        100.0 * stateless / native
    );
    let stateful = weir_throughput(
        &bootstrap,
        records,
        "wordcount",
        &guest("word-count"),
        "out-stateful",
    );
    println!(
        "weir stateful (word count, EOS):    {stateful:>10.0} records/s  {:>5.1}% of pass-through (target >= 50%)",
        100.0 * stateful / native
    );
    let (p50, p99, n) = latency(&bootstrap, &guest("byte-map"), rate, 10);
    println!("latency, byte map EOS at {rate}/s:    p50 {p50:.1?}  p99 {p99:.1?}  ({n} records)");
}
