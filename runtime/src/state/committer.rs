//! [`Committer`]: applies checkpoints to the store off the processing thread, on a
//! small pool of commit threads the daemon's stores share.
//!
//! In a stateful count over 100k keys, RocksDB's memtable inserts were about 40% of the
//! processing thread's time, spent at every checkpoint. They need not be on that
//! thread: once a checkpoint is handed over, the buffer's slots hold every value it
//! carries, so the transform reads them from memory while RocksDB works. Anything that
//! reads the store itself (a key the buffer does not know, a scan, metadata) waits for
//! the commit in flight first, and so does the next checkpoint: one commit at a time, in
//! order, and a reader never sees the store behind the buffer.
//!
//! The pool has a thread per core, whatever the number of stores: a thread per store
//! made a daemon of a thousand partitions a thousand threads. Each store has at most
//! one commit in flight, so its commits stay in order on any pool thread.
//!
//! The durability argument is unchanged. A commit still applies the writes and the
//! metadata in one atomic write; a crash before it lands leaves the store behind Kafka,
//! which the changelog restore repairs, as for a crash just before a synchronous commit.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, OnceLock};

use super::{StateError, StateStore, WriteSet};

/// The partition's store, and the commit that may be using it.
pub(super) struct Committer {
    /// `None` while a commit has it.
    store: Option<Box<dyn StateStore>>,
    /// Where this store's commits come back from the pool.
    reply: Sender<Answer>,
    done: Receiver<Answer>,
    in_flight: bool,
    /// Why a commit failed: the buffer already treats those writes as committed, so
    /// nothing may use the store again (the partition restarts from its checkpoint).
    failed: Option<String>,
    /// The write log of the last commit, emptied, so its allocation is reused.
    spare: WriteSet,
}

/// A commit's outcome, or the panic that ended it.
type Answer = std::thread::Result<Done>;

/// Where commits go to the pool, each with where its answer goes.
type Jobs = Mutex<Sender<(Job, Sender<Answer>)>>;

/// The commit threads, started on first use; `None` when the system had no thread to
/// give (commits then run on the caller's thread).
fn pool() -> Option<&'static Jobs> {
    static POOL: OnceLock<Option<Jobs>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (jobs, inbox) = mpsc::channel::<(Job, Sender<Answer>)>();
        let inbox = std::sync::Arc::new(Mutex::new(inbox));
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let mut started = 0;
        for _ in 0..threads {
            let inbox = inbox.clone();
            let spawned = std::thread::Builder::new()
                .name("weir-state".into())
                .spawn(move || {
                    loop {
                        let next = inbox.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok((job, reply)) = next else { return };
                        let done =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run()));
                        let _ = reply.send(done);
                    }
                });
            match spawned {
                Ok(_) => started += 1,
                Err(error) => {
                    tracing::warn!(%error, "cannot start a state commit thread");
                }
            }
        }
        (started > 0).then(|| Mutex::new(jobs))
    })
    .as_ref()
}

struct Job {
    store: Box<dyn StateStore>,
    writes: WriteSet,
    metadata: Vec<(String, Vec<u8>)>,
}

struct Done {
    store: Box<dyn StateStore>,
    writes: WriteSet,
    result: Result<(), StateError>,
}

impl Job {
    fn run(mut self) -> Done {
        let metadata: Vec<(&str, &[u8])> = self
            .metadata
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_slice()))
            .collect();
        let result = self.store.commit(&self.writes, &metadata);
        if result.is_ok() {
            self.writes.clear();
        }
        Done {
            store: self.store,
            writes: self.writes,
            result,
        }
    }
}

impl Committer {
    pub(super) fn new(store: Box<dyn StateStore>) -> Self {
        let (reply, done) = mpsc::channel();
        Self {
            store: Some(store),
            reply,
            done,
            in_flight: false,
            failed: None,
            spare: WriteSet::default(),
        }
    }

    /// The store, once the commit in flight (if any) has landed.
    pub(super) fn store(&mut self) -> Result<&mut dyn StateStore, StateError> {
        self.finish()?;
        Ok(self
            .store
            .as_deref_mut()
            .expect("the store is back once no commit is in flight"))
    }

    /// Start committing `writes` with `metadata`, after the previous commit. Returns an
    /// empty log for the writes that come next. On error `writes` comes back with it:
    /// nothing of them was handed over (boxed: the failure path need not make every
    /// result as large as a write log).
    pub(super) fn commit(
        &mut self,
        writes: WriteSet,
        metadata: &[(&str, &[u8])],
    ) -> Result<WriteSet, Box<(StateError, WriteSet)>> {
        if let Err(error) = self.finish() {
            return Err(Box::new((error, writes)));
        }
        let store = self.store.take().expect("no commit is in flight");
        let job = Job {
            store,
            writes,
            metadata: metadata
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.to_vec()))
                .collect(),
        };
        let Some(pool) = pool() else {
            // No thread to be had: commit here.
            let Done {
                store,
                writes,
                result,
            } = job.run();
            self.store = Some(store);
            return match result {
                Ok(()) => Ok(writes),
                Err(error) => Err(Box::new((error, writes))),
            };
        };
        pool.lock()
            .unwrap_or_else(|p| p.into_inner())
            .send((job, self.reply.clone()))
            .expect("the commit threads run for the life of the process");
        self.in_flight = true;
        Ok(std::mem::take(&mut self.spare))
    }

    /// Wait for the commit in flight and take the store back.
    fn finish(&mut self) -> Result<(), StateError> {
        if self.in_flight {
            self.in_flight = false;
            let done = match self.done.recv() {
                Ok(Ok(done)) => done,
                Ok(Err(panic)) => std::panic::resume_unwind(panic),
                Err(mpsc::RecvError) => unreachable!("a commit thread answers every job"),
            };
            self.store = Some(done.store);
            if let Err(error) = done.result {
                self.failed = Some(error.to_string());
                return Err(error);
            }
            self.spare = done.writes;
        }
        match &self.failed {
            Some(reason) => Err(StateError::EarlierCommitFailed(reason.clone())),
            None => Ok(()),
        }
    }
}

impl Drop for Committer {
    /// Let the last commit land before the store closes: a partition handed back or a
    /// `weir test --state-dir` run leaves a complete store behind.
    fn drop(&mut self) {
        // Unwinding already: a second panic from the commit thread would abort.
        if !std::thread::panicking()
            && let Err(error) = self.finish()
            && !matches!(error, StateError::EarlierCommitFailed(_))
        {
            tracing::error!(%error, "the last checkpoint did not reach the state store; the changelog restore will replay it");
        }
    }
}
