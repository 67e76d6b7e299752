//! End-to-end throughput and latency against a real broker (Tansu on loopback):
//!
//! 1. a native rdkafka consume -> produce pass-through (the limit of this machine and
//!    broker: no transform, no state, no transactions);
//! 2. Weir stateless (the byte-map example) under exactly-once;
//! 3. Weir stateful word count under exactly-once, over one-word records (one state
//!    update and one output per input, the same traffic as the pass-through) and over
//!    ~100-byte lines of ~15 words (15 updates and 15 outputs per input);
//! 4. end-to-end latency of (2) at a fixed moderate rate.
//!
//! Throughput is the steady state: input records per second from the first progress to
//! the end (for the pass-through, the first record received to the last output
//! acknowledged; for Weir, the first committed checkpoint to the one that commits the
//! last input). Group join and startup are reported apart, as the time to first progress.
//!
//! `cargo bench -p weir-benches --bench e2e` (a release build). Records and rate can be
//! set with WEIR_BENCH_RECORDS (default 1,000,000) and WEIR_BENCH_RATE (default 5,000/s);
//! WEIR_BENCH_COMMIT_MS sets the pipelines' commit interval (default: Weir's default),
//! WEIR_BENCH_PRODUCER adds producer properties (`linger.ms=20,batch.size=1000000`), and
//! WEIR_BENCH_CASES picks cases: stateless,stateful,lines,latency (default: all), and
//! WEIR_BENCH_ROUNDS how many rounds of pass-through and Weir each case runs (default 3;
//! with an even count the upper of the two middle ratios is reported).
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

/// Distinct words of the one-word input, as in the engine bench's stateful count.
const DISTINCT_WORDS: u64 = 100_000;

/// A one-word value, cycling through `DISTINCT_WORDS` words in a scattered order.
fn word(i: u64) -> String {
    format!("w{:06}", (i * 7919) % DISTINCT_WORDS)
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

fn weir_config(
    dir: &Path,
    bootstrap: &str,
    name: &str,
    module: &Path,
    input: &str,
    output: &str,
) -> Config {
    let commit = std::env::var("WEIR_BENCH_COMMIT_MS")
        .map(|ms| format!("commit_interval_ms = {ms}\n"))
        .unwrap_or_default();
    let producer: String = std::env::var("WEIR_BENCH_PRODUCER")
        .unwrap_or_default()
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| format!("{key:?} = {value:?}\n"))
        .collect();
    let text = format!(
        "data_dir = {:?}\n[kafka]\nbrokers = {bootstrap:?}\n[kafka.consumer_properties]\n\
         \"session.timeout.ms\" = 6000\n[kafka.producer_properties]\n{producer}\
         [pipelines.{name}]\nmodule = {:?}\ninputs = [{input:?}]\noutput = {output:?}\n{commit}",
        dir.display().to_string(),
        module.display().to_string()
    );
    Config::parse(&text, dir).expect("a valid bench config")
}

/// Run `pipeline` over the whole of `input`: from its first committed checkpoint to
/// the one that commits the last input record. Progress is the daemon's own committed
/// positions (what `weir status` shows): Tansu's end offsets lag far behind while
/// transactions are open, and it applies transactional offset commits late.
fn weir_throughput(
    bootstrap: &str,
    records: u64,
    name: &str,
    module: &Path,
    input: &str,
    output: &str,
) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let config = weir_config(dir.path(), bootstrap, name, module, input, output);
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
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let rounds = env_number("WEIR_BENCH_ROUNDS", 3).max(1);
    let broker = Tansu::start();
    let mut topics = vec![
        "in".to_owned(),
        "words".to_owned(),
        "out-lines".to_owned(),
        "in-latency".to_owned(),
        "out-latency".to_owned(),
    ];
    for case in &ROUND_CASES {
        for round in 1..=rounds {
            topics.extend([case.pass_through_output(round), case.weir_output(round)]);
        }
    }
    for topic in &topics {
        broker.create_topic(topic, PARTITIONS);
    }
    let bootstrap = broker.bootstrap.clone();
    fill_input(&bootstrap, "in", records, line);
    fill_input(&bootstrap, "words", records, word);

    for case in &ROUND_CASES {
        if wanted(case.name) {
            compare_rounds(case, rounds, &bootstrap, records);
        }
    }
    if wanted("lines") {
        let lines = weir_throughput(
            &bootstrap,
            records,
            "linecount",
            &guest("word-count"),
            "in",
            "out-lines",
        );
        lines.print("weir word count over 15-word lines (EOS)", None);
    }
    if wanted("latency") {
        let (p50, p99, n) = latency(&bootstrap, &guest("byte-map"), rate, 10);
        println!(
            "latency, byte map EOS at {rate}/s:    p50 {p50:.1?}  p99 {p99:.1?}  ({n} records)"
        );
    }
}

/// A case measured in rounds against the pass-through of its input.
struct RoundCase {
    /// Its name in WEIR_BENCH_CASES, and the prefix of its pipelines and topics.
    name: &'static str,
    what: &'static str,
    example: &'static str,
    input: &'static str,
}

const ROUND_CASES: [RoundCase; 2] = [
    RoundCase {
        name: "stateless",
        what: "weir stateless (byte map, EOS; target 70%)",
        example: "byte-map",
        input: "in",
    },
    RoundCase {
        name: "stateful",
        what: "weir stateful (word count, EOS; target 50%)",
        example: "word-count",
        input: "words",
    },
];

impl RoundCase {
    fn pass_through_output(&self, round: u64) -> String {
        format!("pass-{}-{round}", self.name)
    }

    fn weir_output(&self, round: u64) -> String {
        format!("out-{}-{round}", self.name)
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
        weir_throughput(bootstrap, records, &pipeline, &module, case.input, &output)
    };
    let what = case.what;
    let mut shares = Vec::new();
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
    }
    shares.sort_by(f64::total_cmp);
    println!(
        "{what}: median {:.1}% of pass-through over {rounds} rounds",
        100.0 * shares[shares.len() / 2]
    );
}

/// Whether WEIR_BENCH_CASES (a comma-separated list; every case when unset) names `case`.
fn wanted(case: &str) -> bool {
    std::env::var("WEIR_BENCH_CASES")
        .map_or(true, |cases| cases.split(',').any(|c| c.trim() == case))
}
