//! `weir serve -c weir.toml`: run every pipeline of a config until SIGTERM or SIGINT,
//! then checkpoint every partition, leave the groups, and exit 0.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::Config;
use crate::daemon::{Daemon, RunError, StartError};

use super::Exit;

#[derive(Debug, clap::Args)]
pub(super) struct ServeArgs {
    /// The config file.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,

    /// Where compiled modules are cached [default: ~/.cache/weir/compiled].
    #[arg(long, env = "WEIR_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
}

fn report(exit: Exit, message: impl std::fmt::Display) -> Exit {
    tracing::error!("{message}");
    eprintln!("error: {message}");
    exit
}

pub(super) fn run(args: ServeArgs) -> Exit {
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(e) => return report(Exit::Usage, e),
    };
    let cache_dir = args.cache_dir.or_else(super::default_cache_dir);
    let daemon = match Daemon::prepare(&config, cache_dir) {
        Ok(daemon) => daemon,
        Err(e @ StartError::Module { .. }) => return report(Exit::Module, e),
        Err(e) => return report(Exit::Failed, e),
    };

    let shutdown = Arc::new(AtomicBool::new(false));
    let stop = shutdown.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a signal-handling runtime");
        if let Some(signal) = runtime.block_on(wait_for_signal()) {
            tracing::info!(signal, "stopping: checkpointing every partition");
            stop.store(true, Ordering::Release);
        }
    });

    match daemon.run(&shutdown) {
        Ok(()) => Exit::Success,
        Err(e @ (RunError::Pipeline(_) | RunError::StopTimeout(_))) => report(Exit::Failed, e),
    }
}

async fn wait_for_signal() -> Option<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).ok()?;
    let mut interrupt = signal(SignalKind::interrupt()).ok()?;
    tokio::select! {
        _ = terminate.recv() => Some("SIGTERM"),
        _ = interrupt.recv() => Some("SIGINT"),
    }
}
