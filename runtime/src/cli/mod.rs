//! The `weir` command line. `main` is the only place that decides an exit code.

mod admin;
mod new;
mod serve;
mod test;
mod tools;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

/// Weir: Kafka stream transforms as WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a transform over records from a JSONL file and print its outputs as JSONL.
    Test(test::TestArgs),
    /// Run the pipelines of a config file against Kafka until SIGTERM or SIGINT.
    Serve(serve::ServeArgs),
    /// Produce lines from stdin to a topic, one record per line.
    Produce(tools::ProduceArgs),
    /// Print a topic's records as JSON lines (read_committed).
    Consume(tools::ConsumeArgs),
    /// Read state: a key through a running daemon, or a whole store on disk.
    State(tools::StateArgs),
    /// Check a config file (and, with --modules, its modules) without running it.
    Validate(admin::ValidateArgs),
    /// Deploy a new module version to a running pipeline (hot swap).
    Deploy(admin::DeployArgs),
    /// Roll a running pipeline back to its previous module version.
    Rollback(admin::PipelineArgs),
    /// Show the pipelines of a running daemon.
    Status(admin::StatusArgs),
    /// Show a pipeline's module version history.
    History(admin::PipelineArgs),
    /// Stop a pipeline's processing (after a checkpoint) until `weir resume`.
    Pause(admin::PipelineArgs),
    /// Resume a paused pipeline, or restart a failed one now.
    Resume(admin::PipelineArgs),
    /// Create a transform project (Rust, Python, JavaScript or C) that builds and passes
    /// its own sample fixture.
    New(new::NewArgs),
}

/// What a `weir` process exit code means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Success = 0,
    /// The outputs differ from `--expect`; or what was asked for does not exist (a
    /// pipeline, a state key).
    Mismatch = 1,
    /// Bad arguments or input files.
    Usage = 2,
    /// The module cannot be loaded, linked or initialised.
    Module = 3,
    /// Processing failed: a record under the `fail` policy, or the state store.
    Failed = 4,
    /// The daemon cannot be reached, or failed to answer.
    Unavailable = 5,
    /// The daemon refused the call: no token, or a wrong one.
    Unauthorized = 6,
    /// The daemon refused the call as asked (no earlier version, partition owned
    /// elsewhere, upload too large, bad parameters).
    Refused = 7,
}

impl Exit {
    /// Nothing found: the same code as a mismatch, "not what you hoped for".
    pub const NOT_FOUND: Exit = Exit::Mismatch;
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// Default place for compiled modules: `$XDG_CACHE_HOME/weir` or `~/.cache/weir`.
fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("weir").join("compiled"))
}

/// Whether stderr carries JSON log events (`--log-format json`).
static JSON_LOGS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Say why a command fails, once: as a log event where stderr is JSON (so collectors
/// keep it), as a plain `error:` message otherwise.
fn report_error(message: impl std::fmt::Display) {
    if JSON_LOGS.get().copied().unwrap_or(false) {
        tracing::error!("{message}");
    } else {
        eprintln!("error: {message}");
    }
}

fn init_logging(format: LogFormat) {
    let _ = JSON_LOGS.set(matches!(format, LogFormat::Json));
    let filter = EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Test(args) => test::run(args).into(),
        Command::Serve(args) => serve::run(args).into(),
        Command::Produce(args) => tools::produce(args).into(),
        Command::Consume(args) => tools::consume(args).into(),
        Command::State(args) => tools::state(args).into(),
        Command::Validate(args) => admin::validate(args).into(),
        Command::Deploy(args) => admin::deploy(args).into(),
        Command::Rollback(args) => admin::rollback(args).into(),
        Command::Status(args) => admin::status(args).into(),
        Command::History(args) => admin::history(args).into(),
        Command::Pause(args) => admin::pause(args, true).into(),
        Command::Resume(args) => admin::pause(args, false).into(),
        Command::New(args) => new::run(args).into(),
    }
}
