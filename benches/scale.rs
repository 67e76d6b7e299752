//! Scale in one daemon, against Apache Kafka (a single node on loopback, started by
//! scripts/kafka.sh for this run): `weir serve` (a release build, as a child process)
//! running word count under exactly-once in three shapes over the same number of input
//! lines:
//!
//! - A: 1 pipeline over 8 partitions;
//! - B: 10 pipelines over 8 partitions each;
//! - C: 10 pipelines over 100 partitions each (1,000 partitions).
//!
//! For each it prints the time from start until every partition runs, the throughput
//! of input produced once they all run (lines per second, from the first line sent to
//! the last committed, production overlapping processing), and the
//! daemon's threads, TCP connections to the broker and resident memory sampled from
//! /proc: their peaks once every partition runs (processing, checkpointing) and while
//! partitions were starting (restore consumers and all). Then, on C, a second daemon joins with the same
//! config while the first is busy: how long until it runs its half of the partitions
//! (500). Finally the outputs of every pipeline of C are checked exact (every word
//! counted once, in the raw log and through a read_committed consumer).
//!
//! `cargo bench -p weir-benches --bench scale`. WEIR_SCALE_LINES sets the input lines
//! of each shape (default 200,000; C gets half as many again during the rebalance),
//! WEIR_SCALE_PIPELINES and WEIR_SCALE_PARTITIONS shape C (default 10 and 100);
//! WEIR_SCALE_KEEP=1 keeps the daemons' configs, logs and state, and WEIR_SCALE_LOG
//! sets their WEIR_LOG.

mod serve;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serve::{PATIENCE, Progress, Sample, Serve};
use weir_tests::broker::{Kafka, unique};
use weir_tests::daemon::{PipelineSpec, write_config};
use weir_tests::guest;
use weir_tests::wordcount::{Input, assert_outputs_exact};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let lines = env_or("WEIR_SCALE_LINES", 200_000);
    let pipelines = env_or("WEIR_SCALE_PIPELINES", 10);
    let partitions = env_or("WEIR_SCALE_PARTITIONS", 100) as i32;
    let broker = Kafka::start(1);
    let dir = tempfile::Builder::new()
        .prefix("weir-scale-")
        .disable_cleanup(std::env::var_os("WEIR_SCALE_KEEP").is_some())
        .tempdir()
        .expect("a directory");
    eprintln!(
        "broker {}; daemons in {}",
        broker.bootstrap,
        dir.path().display()
    );

    let a = Shape::new(&broker, dir.path(), "a", 1, 8);
    let a_run = a.run(lines);
    let b = Shape::new(&broker, dir.path(), "b", pipelines, 8);
    let b_run = b.run(lines);
    let c = Shape::new(&broker, dir.path(), "c", pipelines, partitions);
    let (c_run, rebalance) = c.run_and_rebalance(lines);

    println!();
    println!(
        "scale: word count, exactly-once, {lines} lines (4 words each) per shape, Kafka at {}",
        broker.bootstrap
    );
    println!(
        "{:<26} {:>9} {:>8} {:>18} {:>18} {:>16}",
        "shape", "lines/s", "start s", "threads run/start", "connections r/s", "RSS MiB r/s"
    );
    for (name, run) in [
        ("A: 1 x 8 partitions".to_owned(), &a_run),
        (format!("B: {pipelines} x 8 partitions"), &b_run),
        (format!("C: {pipelines} x {partitions} partitions"), &c_run),
    ] {
        let pair = |steady: usize, starting: usize| format!("{steady} / {starting}");
        println!(
            "{name:<26} {:>9.0} {:>8.1} {:>18} {:>18} {:>16}",
            run.throughput,
            run.start.as_secs_f64(),
            pair(run.steady.threads, run.starting.threads),
            pair(run.steady.connections, run.starting.connections),
            pair(run.steady.rss_bytes >> 20, run.starting.rss_bytes >> 20),
        );
    }
    println!(
        "throughput C/A: {:.0}% (target: at least 80%)",
        100.0 * c_run.throughput / a_run.throughput
    );
    println!(
        "rebalance: the second daemon ran {} partitions {:.1} s after its first assignment \
         ({:.1} s after it started; target: at most 10 s); outputs exact after it",
        rebalance.moved,
        rebalance.after_assignment.as_secs_f64(),
        rebalance.after_start.as_secs_f64()
    );
}

/// One shape: its pipelines, topics and config.
struct Shape {
    bootstrap: String,
    dir: PathBuf,
    ns: String,
    pipelines: usize,
    partitions: i32,
}

/// What a run of a shape measured.
struct Run {
    throughput: f64,
    start: Duration,
    /// Peaks while partitions start, and after.
    starting: Sample,
    steady: Sample,
}

struct Rebalance {
    moved: usize,
    after_start: Duration,
    after_assignment: Duration,
}

impl Shape {
    fn new(broker: &Kafka, dir: &Path, name: &str, pipelines: usize, partitions: i32) -> Self {
        let ns = unique(&format!("scale-{name}"));
        let shape = Self {
            bootstrap: broker.bootstrap.clone(),
            dir: dir.join(name),
            ns,
            pipelines,
            partitions,
        };
        std::fs::create_dir_all(&shape.dir).expect("the shape's directory");
        for p in 0..pipelines {
            broker.create_topic(&shape.topic("in", p), partitions);
            broker.create_topic(&shape.topic("out", p), partitions);
        }
        shape
    }

    fn topic(&self, kind: &str, pipeline: usize) -> String {
        format!("{}.{kind}-{pipeline}", self.ns)
    }

    fn group(&self, pipeline: usize) -> String {
        format!("weir.{}.p{pipeline}", self.ns)
    }

    /// The committed progress of every pipeline's group.
    fn progress(&self) -> Progress {
        let groups: Vec<_> = (0..self.pipelines)
            .map(|p| (self.group(p), self.topic("in", p), self.partitions))
            .collect();
        Progress::new(&self.bootstrap, &groups)
    }

    fn total_partitions(&self) -> usize {
        self.pipelines * self.partitions as usize
    }

    /// The config of daemon `data` (its data directory): every pipeline, threads as
    /// many as cores (the default).
    fn config(&self, data: &str) -> PathBuf {
        let names: Vec<String> = (0..self.pipelines).map(|p| format!("p{p}")).collect();
        let inputs: Vec<[String; 1]> = (0..self.pipelines).map(|p| [self.topic("in", p)]).collect();
        let input_refs: Vec<[&str; 1]> = inputs.iter().map(|[t]| [t.as_str()]).collect();
        let outputs: Vec<String> = (0..self.pipelines).map(|p| self.topic("out", p)).collect();
        let extras: Vec<String> = (0..self.pipelines)
            .map(|p| format!("group_id = {:?}\n", self.group(p)))
            .collect();
        let module = guest("word-count");
        let specs: Vec<PipelineSpec<'_>> = (0..self.pipelines)
            .map(|p| PipelineSpec {
                name: &names[p],
                module: &module,
                inputs: &input_refs[p],
                output: &outputs[p],
                extra: &extras[p],
            })
            .collect();
        let path = write_config(&self.dir, &self.bootstrap, &self.dir.join(data), &specs);
        let text = std::fs::read_to_string(&path).expect("the config");
        let text = text.replace("threads = 2\n", "");
        let own = self.dir.join(format!("{data}.toml"));
        std::fs::write(&own, text).expect("the config");
        own
    }

    /// Inputs of every pipeline, `lines` lines in all.
    fn inputs(&self) -> Vec<Input> {
        (0..self.pipelines)
            .map(|p| Input::new(&self.bootstrap, &self.topic("in", p)))
            .collect()
    }

    fn produce(&self, inputs: &mut [Input], lines: usize) {
        let per_partition = lines.div_ceil(self.total_partitions()).max(1);
        for input in inputs {
            input.produce(self.partitions, per_partition);
        }
    }

    /// Start a daemon, let it process `lines` lines, stop it.
    fn run(&self, lines: usize) -> Run {
        let mut inputs = self.inputs();
        let daemon = Serve::start(&self.config("a"), &self.dir.join("a.log"));
        let run = daemon.measure(self, &mut inputs, lines);
        daemon.stop();
        run
    }

    /// [`run`](Self::run), then half as many lines again while a second daemon joins;
    /// both stop, and every pipeline's outputs must be exact.
    fn run_and_rebalance(&self, lines: usize) -> (Run, Rebalance) {
        let mut inputs = self.inputs();
        let first = Serve::start(&self.config("a"), &self.dir.join("a.log"));
        let run = first.measure(self, &mut inputs, lines);
        let progress = self.progress();

        self.produce(&mut inputs, lines / 2);
        let total = inputs_total(&inputs);
        let started = Instant::now();
        let second = Serve::start(&self.config("b"), &self.dir.join("b.log"));
        let half = self.total_partitions() / 2;
        let mut assigned = None;
        let deadline = started + PATIENCE;
        while second.count("partition running") < half {
            assert!(
                Instant::now() < deadline,
                "the second daemon did not take half"
            );
            if assigned.is_none() && second.count("partition assigned") > 0 {
                assigned = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let rebalance = Rebalance {
            moved: second.count("partition running"),
            after_start: started.elapsed(),
            after_assignment: assigned.map_or(Duration::ZERO, |t| t.elapsed()),
        };
        progress.wait_for(total, || {});
        first.stop();
        second.stop();
        for (p, input) in inputs.iter().enumerate() {
            assert_outputs_exact(&self.bootstrap, &self.topic("out", p), &input.expected);
        }
        (run, rebalance)
    }
}

fn inputs_total(inputs: &[Input]) -> i64 {
    inputs
        .iter()
        .map(|i| i.next.values().sum::<usize>() as i64)
        .sum()
}

impl Serve {
    /// Time until every partition of `shape` runs (sampling resources meanwhile), then
    /// the throughput of `lines` lines produced to the running daemon: from the first
    /// line sent to the last committed, producing and processing overlapping (as for
    /// every shape), resources sampled until the end.
    fn measure(&self, shape: &Shape, inputs: &mut [Input], lines: usize) -> Run {
        let everything = shape.total_partitions();
        let deadline = Instant::now() + PATIENCE;
        let mut starting = Sample::default();
        while self.count("partition running") < everything {
            assert!(Instant::now() < deadline, "not every partition started");
            starting = starting.max(self.sample());
            std::thread::sleep(Duration::from_millis(100));
        }
        let start = self.uptime();
        let progress = shape.progress();
        let began = Instant::now();
        shape.produce(inputs, lines);
        let total = inputs_total(inputs);
        let mut steady = self.sample();
        progress.wait_for(total, || steady = steady.max(self.sample()));
        Run {
            throughput: total as f64 / began.elapsed().as_secs_f64(),
            start,
            starting,
            steady,
        }
    }
}
