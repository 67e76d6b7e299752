//! A healthy pipeline beside a hostile one, in one daemon on Apache Kafka (a single
//! node on loopback, started by scripts/kafka.sh for this run): `weir serve` (a
//! release build, as a child process) runs a word count under exactly-once over two
//! partitions, and the `misbehave` guest over one, on the same processing threads.
//!
//! The word count's throughput is measured twice, with the same number of lines (after
//! a phase of the same size to warm up): while the hostile pipeline is idle, then while it is fed every kind of misbehaviour in
//! turn (endless loops, memory bombs, panics, deep recursion, sleeps, state bombs,
//! 5 MB outputs, log floods, writes to a changelog) as fast as it fails them. It
//! prints both side by side with the daemon's peak memory in each, and what the
//! hostile records became (dead letters by kind); the word count's outputs are checked
//! exact at the end.
//!
//! `cargo bench -p weir-benches --bench neighbour`. WEIR_NEIGHBOUR_LINES sets the lines
//! of each phase (default 400,000); WEIR_SCALE_LOG sets the daemon's WEIR_LOG.

mod serve;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use serve::{Progress, Sample, Serve};
use weir_tests::broker::{Kafka, unique};
use weir_tests::daemon::{PipelineSpec, write_config};
use weir_tests::guest;
use weir_tests::kafka_raw;
use weir_tests::wordcount::{Input, assert_outputs_exact};

const PARTITIONS: i32 = 2;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let lines: usize = std::env::var("WEIR_NEIGHBOUR_LINES")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(400_000);
    let broker = Kafka::start(1);
    let dir = tempfile::Builder::new()
        .prefix("weir-neighbour-")
        .tempdir()
        .expect("a directory");
    let ns = unique("neighbour");
    let topic = |name: &str| format!("{ns}.{name}");
    let (text, counts) = (topic("text"), topic("counts"));
    let (hostile, hostile_out, dead) = (topic("hostile"), topic("hostile-out"), topic("dead"));
    broker.create_topic(&text, PARTITIONS);
    broker.create_topic(&counts, PARTITIONS);
    for t in [&hostile, &hostile_out, &dead] {
        broker.create_topic(t, 1);
    }
    let group = format!("weir.{ns}.wc");
    let changelog = format!("{group}-{text}-changelog");

    let word_count = guest("word-count");
    let misbehave = guest("misbehave");
    let wc_extra = format!("group_id = {group:?}\n");
    let bad_extra = format!(
        "group_id = \"weir.{ns}.bad\"\non_error = \"dead-letter\"\ndead_letter_topic = {dead:?}\n\
         batch_size = 1\n[pipelines.bad.limits]\ncall_timeout_ms = 1000\n\
         max_pending_state_bytes = 8388608\n"
    );
    let config = write_config(
        dir.path(),
        &broker.bootstrap,
        &dir.path().join("data"),
        &[
            PipelineSpec {
                name: "wc",
                module: &word_count,
                inputs: &[&text],
                output: &counts,
                extra: &wc_extra,
            },
            PipelineSpec {
                name: "bad",
                module: &misbehave,
                inputs: &[&hostile],
                output: &hostile_out,
                extra: &bad_extra,
            },
        ],
    );
    let daemon = Serve::start(&config, &dir.path().join("serve.log"));
    while daemon.count("partition running") < PARTITIONS as usize + 1 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let started = daemon.uptime();
    let progress = Progress::new(&broker.bootstrap, &[(group, text.clone(), PARTITIONS)]);
    let mut input = Input::new(&broker.bootstrap, &text);

    // A first phase warms the broker and the daemon up, unmeasured.
    phase(&daemon, &progress, &mut input, lines);
    let alone = phase(&daemon, &progress, &mut input, lines);

    let attacks = weir_tests::hostile_commands(&changelog);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let attacker = {
        let (stop, sent) = (stop.clone(), sent.clone());
        let (bootstrap, hostile) = (broker.bootstrap.clone(), hostile.clone());
        let dead = dead.clone();
        std::thread::spawn(move || {
            let attacker = Input::new(&bootstrap, &hostile);
            // Keep a few attacks queued: the hostile pipeline always has one to fail.
            for attack in attacks.iter().cycle() {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                attacker.send(0, attack.as_bytes());
                let n = sent.fetch_add(1, Ordering::AcqRel) + 1;
                while !stop.load(Ordering::Acquire)
                    && n > weir_tests::wordcount::committed_count(&bootstrap, &dead) + 3
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
        })
    };
    let beside = phase(&daemon, &progress, &mut input, lines);
    stop.store(true, Ordering::Release);
    attacker.join().expect("the attacker");
    daemon.stop();
    assert_outputs_exact(&broker.bootstrap, &counts, &input.expected);

    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for log in kafka_raw::read_topic(&broker.bootstrap, &dead).expect("the dead letters") {
        for record in log.committed {
            let kind = record
                .headers
                .iter()
                .find(|(k, _)| k == "weir.dlq.kind")
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            *kinds.entry(kind).or_default() += 1;
        }
    }

    println!();
    println!(
        "neighbour: word count, exactly-once, {PARTITIONS} partitions, {lines} lines per phase, \
         beside a hostile pipeline on the same threads; Kafka at {}; daemon running in {:.1} s",
        broker.bootstrap,
        started.as_secs_f64()
    );
    println!("{:<34} {:>10} {:>14}", "phase", "lines/s", "peak RSS MiB");
    for (name, run) in [
        ("alone (hostile pipeline idle)", &alone),
        ("beside the hostile pipeline", &beside),
    ] {
        println!(
            "{name:<34} {:>10.0} {:>14}",
            run.throughput,
            run.peak.rss_bytes >> 20
        );
    }
    println!(
        "throughput beside/alone: {:.0}%; word count outputs exact",
        100.0 * beside.throughput / alone.throughput
    );
    println!(
        "hostile records sent: {}; dead-lettered by kind: {kinds:?}",
        sent.load(Ordering::Acquire)
    );
}

/// What one phase measured.
struct Phase {
    throughput: f64,
    peak: Sample,
}

/// Produce `lines` lines to the word count and wait until they are committed: lines
/// per second from the first sent to the last committed, and the daemon's peaks.
fn phase(daemon: &Serve, progress: &Progress, input: &mut Input, lines: usize) -> Phase {
    let before = progress.committed();
    let began = Instant::now();
    input.produce(PARTITIONS, lines / PARTITIONS as usize);
    let total: i64 = input.next.values().sum::<usize>() as i64;
    let mut peak = daemon.sample();
    progress.wait_for(total, || peak = peak.max(daemon.sample()));
    Phase {
        throughput: (total - before) as f64 / began.elapsed().as_secs_f64(),
        peak,
    }
}
