//! `weir test`: run a module over JSONL records through the same engine, state buffer
//! and batch path as a pipeline, with the whole run as one checkpoint.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::engine::{
    Engine, EngineConfig, EngineError, InputRecord, Instance, InstanceLabels, Limits, OutputRecord,
};
use crate::jsonl::{self, Step};
use crate::pipeline::{BatchError, ErrorPolicy, Processor as _, outputs, run_batch};
use crate::state::{MemoryStore, PartitionState, RocksStore, StateStore};
use crate::time::ManualClock;

use super::Exit;

#[derive(Debug, clap::Args)]
pub(super) struct TestArgs {
    /// The transform: a WebAssembly component (.wasm).
    module: PathBuf,

    /// Input records, one JSON object per line.
    #[arg(long)]
    input: PathBuf,

    /// Expected outputs, one JSON object per line; a difference exits with 1.
    #[arg(long)]
    expect: Option<PathBuf>,

    /// Keep state in RocksDB here, so it carries over to the next run.
    #[arg(long)]
    state_dir: Option<PathBuf>,

    /// Transform configuration, passed to its `init` (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    config: Vec<(String, String)>,

    /// What to do with a record the transform fails on.
    #[arg(long, value_enum, default_value_t = ErrorPolicy::Fail)]
    on_error: ErrorPolicy,

    /// Records per call into the transform.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
    batch_size: u32,

    /// Topic name given to input records that do not name one.
    #[arg(long, default_value = "input")]
    topic: String,

    /// Memory limit of the transform instance, in MiB.
    #[arg(long, value_name = "MIB")]
    memory_limit_mb: Option<u64>,

    /// Time limit of one call into the transform, in milliseconds.
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,

    /// How far behind the newest record timestamp a record may be and still be on
    /// time (the pipeline's `max_out_of_orderness_ms`), in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    max_out_of_orderness_ms: u64,

    /// Where the processing-time clock starts, in milliseconds since the Unix epoch.
    /// It moves only with the input's `{"processing_time": ms}` lines, and the
    /// transform's wall clock reads it too, so runs are reproducible. It is not kept
    /// in `--state-dir`: a run that continues another starts it here again.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    processing_time: i64,

    /// A table the transform may read (repeatable). Tables the input's `{"table": ...}`
    /// lines set rows of are declared already; this declares one that starts empty.
    #[arg(long = "table", value_name = "NAME")]
    tables: Vec<String>,

    /// Where compiled modules are cached [default: ~/.cache/weir/compiled].
    #[arg(long, env = "WEIR_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
}

fn parse_key_value(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {raw:?}")),
    }
}

/// A failed run: what to print and how to exit.
struct Failure(Exit, String);

pub(super) fn run(args: TestArgs) -> Exit {
    match execute(&args) {
        Ok(exit) => exit,
        Err(Failure(exit, message)) => {
            eprintln!("error: {message}");
            exit
        }
    }
}

fn read(path: &Path, what: &str) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| {
        Failure(
            Exit::Usage,
            format!("cannot read the {what} file {}: {e}", path.display()),
        )
    })
}

fn line_errors(path: &Path, errors: Vec<jsonl::LineError>) -> Failure {
    let lines: Vec<String> = errors
        .iter()
        .map(|e| format!("  {}:{e}", path.display()))
        .collect();
    Failure(
        Exit::Usage,
        format!(
            "{} has lines that are not records:\n{}",
            path.display(),
            lines.join("\n")
        ),
    )
}

fn execute(args: &TestArgs) -> Result<Exit, Failure> {
    let steps = jsonl::parse_steps(&read(&args.input, "input")?, &args.topic)
        .map_err(|errors| line_errors(&args.input, errors))?;
    let expected = match &args.expect {
        Some(path) => Some((
            path,
            jsonl::parse_outputs(&read(path, "expect")?)
                .map_err(|errors| line_errors(path, errors))?,
        )),
        None => None,
    };
    let clock = ManualClock::starting_at(args.processing_time);
    let mut tables: Vec<String> = args.tables.clone();
    for (_, step) in &steps {
        if let Step::TableRow { table, .. } = step
            && !tables.contains(table)
        {
            tables.push(table.clone());
        }
    }
    let engine = engine(args, clock.clone(), tables)?;
    let mut instance = start(&engine, args)?;

    let mut run = TestRun {
        instance: &mut instance,
        args,
        clock,
        outputs: Vec::new(),
        kept_bytes: 0,
        failed: 0,
        records: 0,
    };
    run.steps(steps)?;
    let TestRun {
        outputs,
        failed,
        records,
        ..
    } = run;

    let module_id = instance.module().id().to_string();
    instance
        .state()
        .checkpoint(&[("weir.test.module", module_id.as_bytes())])
        .map_err(|e| Failure(Exit::Failed, e.to_string()))?;

    print_outputs(&outputs);
    let summary = format!(
        "{records} records in, {} outputs, {failed} failed",
        outputs.len()
    );
    Ok(match expected {
        None => {
            eprintln!("ok: {summary}");
            Exit::Success
        }
        Some((path, expected)) => match jsonl::diff(&expected, &outputs) {
            None => {
                eprintln!("ok: {summary}; outputs match {}", path.display());
                Exit::Success
            }
            Some(diff) => {
                eprintln!(
                    "outputs differ from {} ({summary}):\n{diff}",
                    path.display()
                );
                Exit::Mismatch
            }
        },
    })
}

fn engine(args: &TestArgs, clock: ManualClock, tables: Vec<String>) -> Result<Engine, Failure> {
    let defaults = Limits::default();
    let limits = Limits {
        memory_limit_bytes: args
            .memory_limit_mb
            .map_or(defaults.memory_limit_bytes, |mb| mb << 20),
        call_timeout_ms: args.timeout_ms.unwrap_or(defaults.call_timeout_ms),
        max_out_of_orderness_ms: args.max_out_of_orderness_ms,
        manual_clock: Some(clock),
        tables: tables.into(),
        ..defaults
    };
    let cache_dir = args.cache_dir.clone().or_else(super::default_cache_dir);
    Engine::new(EngineConfig { limits, cache_dir })
        .map_err(|e| Failure(Exit::Module, e.to_string()))
}

/// Load the module, open the state and start an instance (running `init`).
fn start(engine: &Engine, args: &TestArgs) -> Result<Instance, Failure> {
    let module = engine.load_file(&args.module).map_err(|e| match e {
        EngineError::ReadModule { .. } => Failure(Exit::Usage, e.to_string()),
        other => Failure(Exit::Module, other.to_string()),
    })?;
    tracing::debug!(module = module.id().short(), source = ?module.source(), load_time = ?module.load_time(), "module ready");

    let store: Box<dyn StateStore> = match &args.state_dir {
        Some(dir) => {
            Box::new(RocksStore::open(dir).map_err(|e| Failure(Exit::Failed, e.to_string()))?)
        }
        None => Box::new(MemoryStore::new()),
    };
    let labels = InstanceLabels {
        pipeline: "test".into(),
        partition: 0,
        module: module.id().short().to_owned(),
    };
    let config: Arc<[(String, String)]> = args.config.clone().into();
    engine
        .instantiate(&module, labels, config, PartitionState::new(store))
        .map_err(|e| Failure(Exit::Module, e.to_string()))
}

/// The most output bytes (as Kafka counts them) `weir test` keeps.
const MAX_KEPT_OUTPUT_BYTES: u64 = 256 << 20;

/// A run through the input file: its outputs so far, and what failed.
struct TestRun<'a> {
    instance: &'a mut Instance,
    args: &'a TestArgs,
    clock: ManualClock,
    outputs: Vec<OutputRecord>,
    /// Bytes of the outputs kept, as Kafka counts them.
    kept_bytes: u64,
    failed: usize,
    records: usize,
}

impl TestRun<'_> {
    /// Run the records in batches of `--batch-size`, a batch ending early where a line
    /// moves time; after a time move, the timers it made due fire.
    fn steps(&mut self, steps: Vec<(usize, Step)>) -> Result<(), Failure> {
        let batch_size = self.args.batch_size as usize;
        let mut lines = Vec::with_capacity(batch_size);
        let mut batch = Vec::with_capacity(batch_size);
        for (line, step) in steps {
            let time = match step {
                Step::Record(record) => {
                    lines.push(line);
                    batch.push(record);
                    if batch.len() == batch_size {
                        self.batch(&std::mem::take(&mut batch), &std::mem::take(&mut lines))?;
                    }
                    continue;
                }
                time => time,
            };
            if !batch.is_empty() {
                self.batch(&std::mem::take(&mut batch), &std::mem::take(&mut lines))?;
            }
            if let Step::TableRow { table, key, value } = time {
                self.set_row(&table, key, value);
                continue;
            }
            self.move_time(line, time)?;
            self.batch(&[], &[])?;
        }
        if !batch.is_empty() {
            self.batch(&batch, &lines)?;
        }
        Ok(())
    }

    fn move_time(&mut self, line: usize, step: Step) -> Result<(), Failure> {
        let input = self.args.input.display();
        match step {
            Step::Watermark(to) => {
                let now = self
                    .instance
                    .watermark()
                    .map_err(|e| Failure(Exit::Failed, e.to_string()))?;
                if let Some(now) = now.filter(|now| to < *now) {
                    return Err(Failure(
                        Exit::Usage,
                        format!(
                            "{input}:{line} moves the watermark back, to {to} from {now}: \
                             the watermark only goes forward"
                        ),
                    ));
                }
                let moved = self
                    .instance
                    .advance_watermark(to)
                    .map_err(|e| Failure(Exit::Failed, e.to_string()))?;
                if !moved {
                    return Err(Failure(
                        Exit::Usage,
                        format!(
                            "{input}:{line} moves the watermark, but the module is built for a \
                             contract without event time (0.2): rebuild it against contract 0.3"
                        ),
                    ));
                }
            }
            Step::ProcessingTime(to) => {
                self.clock.advance_to(to).map_err(|now| {
                    Failure(
                        Exit::Usage,
                        format!(
                            "{input}:{line} moves processing time back, to {to} from {now}: \
                             processing time only goes forward"
                        ),
                    )
                })?;
            }
            Step::Record(_) | Step::TableRow { .. } => {
                unreachable!("records are batched, rows set, not time moves")
            }
        }
        Ok(())
    }

    /// Set a row of a table as the host does when it applies a table record between
    /// records (`crate::table`).
    fn set_row(&mut self, table: &str, key: Vec<u8>, value: Option<Vec<u8>>) {
        let row = crate::table::keys::row_key(table, &key);
        let state = self.instance.state();
        match value {
            Some(value) => state.put(row, value),
            None => state.delete(row),
        }
    }

    /// Run one batch (`lines` are the input lines of `chunk`); an empty one fires the
    /// timers due.
    fn batch(&mut self, chunk: &[InputRecord], lines: &[usize]) -> Result<(), Failure> {
        let args = self.args;
        let at = |index: usize| {
            format!(
                "the record on line {} (offset {})",
                lines[index], chunk[index].offset
            )
        };
        let outcome =
            run_batch(self.instance, chunk, args.on_error).map_err(|error| match error {
                BatchError::RecordFailed { index, reason } => Failure(
                    Exit::Failed,
                    format!(
                        "{} failed, and --on-error is `fail`: {reason}. No state was written.",
                        at(index)
                    ),
                ),
                other => Failure(Exit::Failed, format!("{other}. No state was written.")),
            })?;
        self.records += chunk.len();
        let action = match args.on_error {
            ErrorPolicy::DeadLetter => "dead-lettered",
            _ => "skipped",
        };
        for failure in &outcome.timer_failures {
            self.failed += 1;
            eprintln!(
                "warning: the {} timer at {} {action}: {}",
                failure.timer.domain, failure.timer.at, failure.reason
            );
        }
        for failure in &outcome.failures {
            self.failed += 1;
            eprintln!(
                "warning: {} {action}: {}",
                at(failure.index),
                failure.reason
            );
        }
        self.kept_bytes += outcome.outputs.iter().map(outputs::size).sum::<u64>();
        if self.kept_bytes > MAX_KEPT_OUTPUT_BYTES {
            let upto = chunk
                .len()
                .checked_sub(1)
                .map_or_else(|| "a time line".to_owned(), at);
            return Err(Failure(
                Exit::Failed,
                format!(
                    "the outputs up to {upto} passed {} MiB: weir test keeps every output in \
                     memory to print and compare it, so it stops here. Test fewer records \
                     at a time",
                    MAX_KEPT_OUTPUT_BYTES >> 20
                ),
            ));
        }
        self.outputs.extend(outcome.outputs);
        // In memory, as a daemon's partition does: a checkpoint before the buffered
        // state writes reach their bound, so a long fixture does not fail on it. A
        // --state-dir run stays one checkpoint, all or nothing.
        let pending_bound = Limits::default().max_pending_state_bytes / 2;
        if args.state_dir.is_none() && self.instance.state().pending_memory() as u64 > pending_bound
        {
            self.instance
                .state()
                .checkpoint(&[])
                .map_err(|e| Failure(Exit::Failed, e.to_string()))?;
        }
        Ok(())
    }
}

fn print_outputs(outputs: &[OutputRecord]) {
    let mut stdout = BufWriter::new(std::io::stdout().lock());
    for output in outputs {
        // A closed stdout (`| head`) is not an error worth reporting.
        if writeln!(stdout, "{}", jsonl::render_output(output)).is_err() {
            break;
        }
    }
    let _ = stdout.flush();
}
