//! Starting partitions: a newly assigned partition is brought up to its group's
//! committed offset (its state restored from the changelog when local state is behind)
//! and instantiated before its processing thread runs it. Restoring is slow and must not
//! hold up the threads' other partitions, so it happens on up to [`STARTERS`]
//! short-lived starter threads of the daemon, shared by every pipeline: however many
//! pipelines rebalance at once, starting costs that many threads and restore consumers
//! (each starter reuses its consumer from one partition to the next).

use std::collections::VecDeque;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use rdkafka::consumer::ConsumerContext;

use super::context::TaskError;
use super::control::{ThreadFailure, Wake};
use super::task::{Assigned, Task};

/// How many partitions of the daemon start (restore) at once.
pub(super) const STARTERS: usize = 8;

/// A partition to start, and the thread that runs it once started.
pub(super) struct Job<C: ConsumerContext + 'static> {
    pub assigned: Assigned<C>,
    pub thread: usize,
    pub adopt: Sender<Task<C>>,
    pub wake: Arc<Wake>,
}

/// Starts partitions on up to [`STARTERS`] short-lived threads, in the order they
/// were assigned.
pub(super) struct Starter<C: ConsumerContext + 'static> {
    /// Jobs waiting, and how many starter threads run.
    queue: Mutex<(VecDeque<Job<C>>, usize)>,
}

impl<C: ConsumerContext + 'static> Default for Starter<C> {
    fn default() -> Self {
        Self {
            queue: Mutex::new((VecDeque::new(), 0)),
        }
    }
}

impl<C: ConsumerContext + 'static> Starter<C> {
    pub(super) fn submit(self: &Arc<Self>, job: Job<C>) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.0.push_back(job);
        if queue.1 >= STARTERS {
            return;
        }
        queue.1 += 1;
        let this = self.clone();
        std::thread::Builder::new()
            .name("weir-starter".into())
            .spawn(move || this.work())
            .expect("spawning a partition starter");
    }

    /// Drop the waiting jobs whose partitions were let go.
    pub(super) fn drop_cancelled(&self) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.0.retain(|job| !job.assigned.is_cancelled());
    }

    fn work(&self) {
        loop {
            let job = {
                let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                match queue.0.pop_front() {
                    Some(job) => job,
                    None => {
                        queue.1 -= 1;
                        return;
                    }
                }
            };
            self.start(job);
        }
    }

    fn start(&self, job: Job<C>) {
        let pipeline = job.assigned.ctx.name.clone();
        let failure = job.assigned.failure.clone();
        let key = (job.assigned.topic.clone(), job.assigned.partition);
        let run = job.assigned.run;
        if job.assigned.is_cancelled() {
            return;
        }
        let started = std::time::Instant::now();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.assigned.start()));
        let error = match outcome {
            Ok(Ok(task)) => {
                tracing::debug!(%pipeline, topic = %key.0, partition = key.1, elapsed_ms = started.elapsed().as_millis() as u64, "partition started");
                // A thread that ended drops it, which is all a revocation waits for.
                let _ = job.adopt.send(task);
                job.wake.notify();
                return;
            }
            Ok(Err(TaskError::Stopped)) => return,
            Ok(Err(error)) => error,
            Err(panic) => TaskError::Panicked(super::panic_message(&panic)),
        };
        tracing::error!(%pipeline, topic = %key.0, partition = key.1, %error, "partition failed to start");
        failure.set(
            Some(job.thread),
            ThreadFailure {
                partition: Some(Box::new((run, key))),
                error,
            },
        );
    }
}
