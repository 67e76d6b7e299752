//! The daemon's processing threads, shared by all its pipelines: a fixed number (the
//! `threads` setting, by default the number of cores), each with one producer per
//! guarantee. Partitions come and go (assigned to a pipeline's group member, started,
//! handed to the thread owning the fewest); the threads, producers and their broker
//! connections stay, however many partitions and pipelines the daemon runs.

use std::path::Path;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rdkafka::consumer::ConsumerContext;

use crate::kafka::ClientSettings;

use super::control::{Command, Mailbox, Wake};
use super::starter::Starter;
use super::task::Task;
use super::thread::{PendingBudget, ProcessingThread};

/// A processing thread as the pipelines see it.
pub(super) struct ThreadHandle<C: ConsumerContext + 'static> {
    pub mailbox: Mailbox,
    pub adopt: Sender<Task<C>>,
    pub wake: Arc<Wake>,
    join: Mutex<Option<JoinHandle<()>>>,
}

/// The processing threads of a daemon.
pub struct ProcessingPool<C: ConsumerContext + 'static> {
    threads: Vec<ThreadHandle<C>>,
    /// Partitions assigned to each thread and not yet let go.
    load: Mutex<Vec<usize>>,
    /// Brings assigned partitions up to their committed offsets for their threads.
    starter: Arc<Starter<C>>,
}

impl<C: ConsumerContext + 'static> std::fmt::Debug for ProcessingPool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessingPool")
            .field("threads", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl<C: ConsumerContext + 'static> ProcessingPool<C> {
    /// Start `count` threads (at least one) for the daemon whose data lives in
    /// `data_dir`, their uncommitted state writes bounded by `pending_state_bytes`
    /// together.
    pub fn start(
        settings: &ClientSettings,
        data_dir: &Path,
        count: usize,
        pending_state_bytes: u64,
    ) -> Result<Self, InstanceIdError> {
        let instance = instance_id(data_dir)?;
        let pending = Arc::new(PendingBudget::new(pending_state_bytes, count.max(1)));
        let threads = (0..count.max(1))
            .map(|index| {
                let (commands_tx, commands) = mpsc::channel();
                let (adopt, adopted) = mpsc::channel();
                let wake = Arc::new(Wake::default());
                let thread = ProcessingThread::new(
                    settings.clone(),
                    index,
                    &instance,
                    adopted,
                    commands,
                    wake.clone(),
                    pending.clone(),
                );
                let join = std::thread::Builder::new()
                    .name(format!("weir-proc-{index}"))
                    .spawn(move || thread.run())
                    .expect("spawning a processing thread");
                ThreadHandle {
                    mailbox: Mailbox::new(commands_tx, wake.clone()),
                    adopt,
                    wake,
                    join: Mutex::new(Some(join)),
                }
            })
            .collect::<Vec<_>>();
        tracing::info!(threads = threads.len(), %instance, "processing threads started");
        Ok(Self {
            load: Mutex::new(vec![0; threads.len()]),
            threads,
            starter: Arc::default(),
        })
    }

    /// The thread owning the fewest partitions, which now owns one more.
    pub(super) fn pick(&self) -> usize {
        let mut load = self.load.lock().unwrap_or_else(|p| p.into_inner());
        let thread = (0..load.len()).min_by_key(|&t| load[t]).unwrap_or(0);
        load[thread] += 1;
        thread
    }

    /// A partition of `thread` was let go.
    pub(super) fn unload(&self, thread: usize) {
        let mut load = self.load.lock().unwrap_or_else(|p| p.into_inner());
        load[thread] = load[thread].saturating_sub(1);
    }

    pub(super) fn starter(&self) -> &Arc<Starter<C>> {
        &self.starter
    }

    pub(super) fn thread(&self, index: usize) -> &ThreadHandle<C> {
        &self.threads[index]
    }

    /// Stop every thread (after a last checkpoint of what they still run) and wait
    /// for them.
    pub fn shutdown(&self) {
        for handle in &self.threads {
            handle.mailbox.send(Command::Shutdown);
        }
        for handle in &self.threads {
            let join = handle.join.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(join) = join {
                let _ = join.join();
            }
        }
    }
}

impl<C: ConsumerContext + 'static> Drop for ProcessingPool<C> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The daemon's id could not be kept.
#[derive(Debug, thiserror::Error)]
#[error("cannot keep the instance id in {path}: {source}. Weir needs to write its data directory")]
pub struct InstanceIdError {
    path: String,
    #[source]
    source: std::io::Error,
}

/// This daemon's id in its transactional ids (`weir:<instance>:<thread>`): random,
/// kept in the data directory so that a restarted daemon takes its predecessor's ids
/// (and fences its producers at once) while two daemons never share one.
fn instance_id(data_dir: &Path) -> Result<String, InstanceIdError> {
    let path = data_dir.join("instance-id");
    let failed = |source| InstanceIdError {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(failed(error)),
    }
    use std::hash::BuildHasher;
    let id = format!(
        "{:016x}",
        std::hash::RandomState::new().hash_one(std::time::SystemTime::now())
    );
    std::fs::create_dir_all(data_dir).map_err(failed)?;
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, &id).map_err(failed)?;
    std::fs::rename(&temporary, &path).map_err(failed)?;
    Ok(id)
}
