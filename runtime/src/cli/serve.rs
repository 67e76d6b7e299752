//! `weir serve -c weir.toml`: run every pipeline of a config, with the admin API,
//! until SIGTERM or SIGINT; then checkpoint every partition, leave the groups, and exit
//! 0. SIGHUP, or a change to the config file, reloads the config.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::admin;
use crate::config::Config;
use crate::daemon::{Daemon, RunError, StartError};

use super::Exit;

/// How often the config file is checked for changes.
const WATCH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, clap::Args)]
pub(super) struct ServeArgs {
    /// The config file.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,

    /// Where compiled modules are cached [default: the registry in the data directory].
    #[arg(long, env = "WEIR_CACHE_DIR")]
    cache_dir: Option<PathBuf>,

    /// Do not reload the config when its file changes (SIGHUP still reloads).
    #[arg(long)]
    no_watch: bool,
}

fn report(exit: Exit, message: impl std::fmt::Display) -> Exit {
    super::report_error(message);
    exit
}

pub(super) fn run(args: ServeArgs) -> Exit {
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(e) => return report(Exit::Usage, e),
    };
    raise_open_files_limit();
    let daemon = match Daemon::prepare(&config, args.cache_dir) {
        Ok(daemon) => Arc::new(daemon),
        Err(e @ StartError::Module { .. }) => return report(Exit::Module, e),
        Err(e) => return report(Exit::Failed, e),
    };
    let _admin = if config.admin.disabled() {
        None
    } else {
        match admin::start(daemon.clone(), &config.admin) {
            Ok(server) => Some(server),
            Err(e) => return report(Exit::Usage, e),
        }
    };

    let shutdown = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    spawn_signal_handler(shutdown.clone(), reload.clone());
    spawn_reloader(
        daemon.clone(),
        args.config.clone(),
        !args.no_watch,
        shutdown.clone(),
        reload,
    );

    match daemon.run(&shutdown) {
        Ok(()) => Exit::Success,
        Err(e @ RunError::StopTimeout(_)) => report(Exit::Failed, e),
    }
}

/// Raise the soft limit on open files to the hard one, as long-running servers do: each
/// partition keeps RocksDB files and Kafka connections open (3,434 descriptors at 200
/// partitions, measured), and the soft limit is often 1,024. The hard limit is the
/// administrator's word and stays; the daemon says what it got.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed by pointer,
    // which lives on this stack frame for both calls.
    let raised = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        let soft = limit.rlim_cur;
        limit.rlim_cur = limit.rlim_max;
        (soft < limit.rlim_max && libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0).then_some(soft)
    };
    match raised {
        Some(from) => {
            tracing::info!(from, to = limit.rlim_max, "raised the open-files limit");
        }
        None => tracing::debug!(limit = limit.rlim_cur, "open-files limit"),
    }
}

fn spawn_signal_handler(shutdown: Arc<AtomicBool>, reload: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a signal-handling runtime");
        runtime.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut terminate), Ok(mut interrupt), Ok(mut hangup)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
                signal(SignalKind::hangup()),
            ) else {
                tracing::error!("cannot install signal handlers");
                return;
            };
            loop {
                let stop = tokio::select! {
                    _ = terminate.recv() => Some("SIGTERM"),
                    _ = interrupt.recv() => Some("SIGINT"),
                    _ = hangup.recv() => None,
                };
                match stop {
                    Some(signal) => {
                        tracing::info!(signal, "stopping: checkpointing every partition");
                        shutdown.store(true, Ordering::Release);
                        return;
                    }
                    None => {
                        tracing::info!("SIGHUP: reloading the config");
                        reload.store(true, Ordering::Release);
                    }
                }
            }
        });
    });
}

/// Reload on request (SIGHUP) or, with `watch`, when the config file's content
/// changes. A config that does not load is refused with every problem listed; the
/// running pipelines keep running.
fn spawn_reloader(
    daemon: Arc<Daemon>,
    path: PathBuf,
    watch: bool,
    shutdown: Arc<AtomicBool>,
    requested: Arc<AtomicBool>,
) {
    std::thread::spawn(move || {
        let mut seen = file_hash(&path);
        while !shutdown.load(Ordering::Acquire) {
            std::thread::sleep(WATCH_EVERY);
            let now = if watch {
                file_hash(&path)
            } else {
                seen.clone()
            };
            let changed = now != seen && now.is_some();
            if !(requested.swap(false, Ordering::AcqRel) || changed) {
                continue;
            }
            seen = now;
            match Config::load(&path) {
                Err(error) => {
                    tracing::error!(
                        "config reload refused, the running pipelines keep running: {error}"
                    );
                }
                Ok(config) => match daemon.reload(config) {
                    Ok(plan) => tracing::info!(
                        added = ?plan.add,
                        removed = ?plan.remove,
                        restarted = ?plan.restart,
                        redeployed = ?plan.redeploy,
                        "config reload applied"
                    ),
                    Err(problems) => {
                        let list: Vec<String> =
                            problems.iter().map(|p| format!("  - {p}")).collect();
                        tracing::error!(
                            "config reload refused in part or whole, the running pipelines keep running:\n{}",
                            list.join("\n")
                        );
                    }
                },
            }
        }
    });
}

fn file_hash(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path)
        .ok()
        .map(|bytes| Sha256::digest(bytes).to_vec())
}
