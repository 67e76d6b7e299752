//! How long a partition stops processing during a hot swap, under load.
//!
//! Word count runs over 4 partitions of the embedded broker while a producer keeps
//! records flowing; a new version (the same transform with another content hash) is
//! deployed every half second. Each partition switches at its next checkpoint; the
//! pause is the time it spends switching (new instance, `init`), which the worker
//! logs as `pause_us`. The checkpoint itself is not counted: it happens every commit
//! interval with or without a swap.
//!
//! Run: `cargo bench -p weir-benches --bench swap` (SWAPS=30 by default).

#[global_allocator]
static ALLOCATOR: weir_runtime::HostAllocator = weir_runtime::HostAllocator;

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use weir_runtime::config::Config;
use weir_runtime::daemon::Daemon;
use weir_tests::guest;

const PARTITIONS: i32 = 4;

/// Collects the `pause_us` field of "switched module version" events.
struct Pauses(Arc<Mutex<Vec<u64>>>);

impl<S: tracing::Subscriber> Layer<S> for Pauses {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct Find(Option<u64>);
        impl Visit for Find {
            fn record_u64(&mut self, field: &Field, value: u64) {
                if field.name() == "pause_us" {
                    self.0 = Some(value);
                }
            }
            fn record_debug(&mut self, _: &Field, _: &dyn Debug) {}
        }
        let mut find = Find(None);
        event.record(&mut find);
        if let Some(pause) = find.0 {
            self.0.lock().unwrap().push(pause);
        }
    }
}

/// The module with a custom section appended: same behaviour, new content hash.
fn variant(wasm: &[u8], n: u32) -> Vec<u8> {
    let name = format!("swap-{n}");
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0);
    out.push(payload.len() as u8);
    out.extend_from_slice(&payload);
    out
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    let swaps: u32 = std::env::var("SWAPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let pauses = Arc::new(Mutex::new(Vec::new()));
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(Pauses(pauses.clone())),
    )
    .expect("the pause recorder");

    let module = guest("word-count");
    let wasm = std::fs::read(&module).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "data_dir = {:?}\n[kafka]\nbrokers = \"embedded\"\nembedded.partitions = {PARTITIONS}\n\
         [pipelines.wc]\nmodule = {:?}\ninputs = [\"text\"]\noutput = \"counts\"\n\
         rollback = {{ trial_records = 0 }}\n",
        dir.path().display().to_string(),
        module.display().to_string()
    );
    let config = Config::parse(&text, dir.path()).expect("a valid bench config");
    let daemon = Arc::new(Daemon::prepare(&config, None).expect("weir starts"));
    let shutdown = Arc::new(AtomicBool::new(false));

    let bootstrap = daemon.bootstrap().to_owned();
    let producing = shutdown.clone();
    let producer_thread = std::thread::spawn(move || {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("linger.ms", "5")
            .create()
            .expect("a producer");
        let mut sent = 0u64;
        let started = Instant::now();
        while !producing.load(Ordering::Acquire) {
            for _ in 0..100 {
                let value = format!("oak pine birch {sent}");
                let record = BaseRecord::<(), str>::to("text")
                    .partition((sent % PARTITIONS as u64) as i32)
                    .payload(&value);
                if producer.send(record).is_ok() {
                    sent += 1;
                }
            }
            producer.poll(Duration::from_millis(5));
        }
        let _ = producer.flush(Duration::from_secs(10));
        (sent, started.elapsed())
    });

    let deployer = {
        let daemon = daemon.clone();
        let stop = shutdown.clone();
        std::thread::spawn(move || {
            // Let every partition start and the stream settle.
            std::thread::sleep(Duration::from_secs(5));
            let mut deploys = Vec::new();
            for n in 0..swaps {
                let started = Instant::now();
                daemon
                    .deploy("wc", &variant(&wasm, n), "bench")
                    .expect("the variant deploys");
                deploys.push(started.elapsed());
                std::thread::sleep(Duration::from_millis(500));
            }
            std::thread::sleep(Duration::from_secs(2));
            stop.store(true, Ordering::Release);
            deploys
        })
    };
    daemon.run(&shutdown).expect("weir stops cleanly");
    let deploys = deployer.join().unwrap();
    let (sent, elapsed) = producer_thread.join().unwrap();

    let mut pauses = pauses.lock().unwrap().clone();
    pauses.sort_unstable();
    assert!(!pauses.is_empty(), "no swaps were recorded");
    let mut deploy_ms: Vec<u64> = deploys.iter().map(|d| d.as_millis() as u64).collect();
    deploy_ms.sort_unstable();
    println!(
        "load: {sent} records in {:.1?} ({:.0} records/s) over {PARTITIONS} partitions",
        elapsed,
        sent as f64 / elapsed.as_secs_f64()
    );
    println!(
        "swaps: {swaps} deploys, {} partition switches",
        pauses.len()
    );
    println!(
        "pause per partition switch: p50 {} µs, p99 {} µs, max {} µs (target: p99 < 5000 µs)",
        percentile(&pauses, 0.50),
        percentile(&pauses, 0.99),
        pauses.last().unwrap()
    );
    println!(
        "deploy call (compile, check, trial init, publish; off the processing path): p50 {} ms, max {} ms",
        percentile(&deploy_ms, 0.50),
        deploy_ms.last().unwrap()
    );
}
