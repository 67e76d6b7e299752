//! Guest stdout and stderr, routed into Weir's logs line by line, tagged with the
//! instance's pipeline, partition and module.
//!
//! The last few stderr lines are also kept, because a trapping guest usually says why
//! there first (a Rust panic message, a Python traceback) and a bare trap code would
//! leave the user guessing.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::limits::Limits;
use super::log_budget::LogBudget;
use super::{InstanceLabels, MAX_LOG_LINE_BYTES};

/// Stderr lines kept to explain a trap.
const RECENT_STDERR_LINES: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug)]
struct Lines {
    labels: Arc<InstanceLabels>,
    budget: LogBudget,
    partial: [Vec<u8>; 2],
    recent_stderr: VecDeque<String>,
}

impl Lines {
    fn write(&mut self, stream: Stream, mut bytes: &[u8]) {
        while let Some(newline) = bytes.iter().position(|&b| b == b'\n') {
            self.partial[stream as usize].extend_from_slice(&bytes[..newline]);
            self.emit(stream);
            bytes = &bytes[newline + 1..];
        }
        self.partial[stream as usize].extend_from_slice(bytes);
        // A longer line is logged in pieces rather than buffered without bound.
        if self.partial[stream as usize].len() >= MAX_LOG_LINE_BYTES {
            self.emit(stream);
        }
    }

    fn emit(&mut self, stream: Stream) {
        let raw = std::mem::take(&mut self.partial[stream as usize]);
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches('\r');
        if !self.admit(line.len()) {
            if stream == Stream::Stderr {
                self.keep_stderr(line);
            }
            return;
        }
        let l = &self.labels;
        match stream {
            Stream::Stdout => tracing::info!(
                target: "weir::guest", pipeline = %l.pipeline, partition = l.partition,
                module = %l.module, stream = "stdout", "{line}"
            ),
            Stream::Stderr => {
                tracing::warn!(
                    target: "weir::guest", pipeline = %l.pipeline, partition = l.partition,
                    module = %l.module, stream = "stderr", "{line}"
                );
                self.keep_stderr(line);
            }
        }
    }

    /// Keep a stderr line to explain a trap, logged or not.
    fn keep_stderr(&mut self, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        if self.recent_stderr.len() == RECENT_STDERR_LINES {
            self.recent_stderr.pop_front();
        }
        self.recent_stderr.push_back(line.to_owned());
    }

    /// Whether a line of `bytes` is within the instance's log rate; says once a second
    /// how many were not.
    fn admit(&mut self, bytes: usize) -> bool {
        let now = std::time::Instant::now();
        let admitted = self.budget.admit(bytes, now);
        self.note_dropped(now);
        admitted
    }

    fn note_dropped(&mut self, now: std::time::Instant) {
        if let Some(dropped) = self.budget.note(now) {
            let l = &self.labels;
            tracing::warn!(
                target: "weir::guest", pipeline = %l.pipeline, partition = l.partition,
                module = %l.module, dropped_lines = dropped.lines, dropped_bytes = dropped.bytes,
                "guest log lines over the instance's rate were dropped (limits.max_log_lines_per_second, limits.max_log_bytes_per_second)"
            );
        }
    }
}

/// The exception line of the last Python traceback in `stderr` (`ValueError: bad`),
/// if there is one. Interpreter guests that let an exception escape print the
/// traceback and then abort, so the trap itself says only `unreachable`; this line is
/// what the user needs to see first.
pub(crate) fn uncaught_exception(stderr: &[String]) -> Option<&str> {
    let start = stderr
        .iter()
        .rposition(|line| line.starts_with("Traceback (most recent call last)"))?;
    stderr[start + 1..]
        .iter()
        .map(String::as_str)
        .find(|line| !line.starts_with(char::is_whitespace) && !line.is_empty())
}

/// The stdout and stderr of one instance.
#[derive(Debug, Clone)]
pub(crate) struct GuestStdio(Arc<Mutex<Lines>>);

impl GuestStdio {
    pub(crate) fn new(labels: Arc<InstanceLabels>, limits: &Limits) -> Self {
        let budget = LogBudget::new(
            limits.max_log_lines_per_second,
            limits.max_log_bytes_per_second,
            std::time::Instant::now(),
        );
        Self(Arc::new(Mutex::new(Lines {
            labels,
            budget,
            partial: Default::default(),
            recent_stderr: VecDeque::new(),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Lines> {
        // Only the thread running the guest writes here; a poisoned lock still holds lines.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn stdout(&self) -> GuestOutput {
        GuestOutput {
            stdio: self.clone(),
            stream: Stream::Stdout,
        }
    }

    pub(crate) fn stderr(&self) -> GuestOutput {
        GuestOutput {
            stdio: self.clone(),
            stream: Stream::Stderr,
        }
    }

    /// Log unterminated lines: called after every guest call.
    pub(crate) fn flush(&self) {
        let mut lines = self.lock();
        for stream in [Stream::Stdout, Stream::Stderr] {
            if !lines.partial[stream as usize].is_empty() {
                lines.emit(stream);
            }
        }
        lines.note_dropped(std::time::Instant::now());
    }

    /// Whether a line of `bytes` from the log import is within the instance's rate.
    pub(crate) fn admit(&self, bytes: usize) -> bool {
        self.lock().admit(bytes)
    }

    /// Lines dropped since the last call, for the metric.
    pub(crate) fn take_dropped_lines(&self) -> u64 {
        self.lock().budget.take_dropped_lines()
    }

    /// Stderr lines written since the last call to this, oldest first.
    pub(crate) fn take_recent_stderr(&self) -> Vec<String> {
        self.lock().recent_stderr.drain(..).collect()
    }

    /// Forget stderr lines from earlier calls.
    pub(crate) fn clear_recent_stderr(&self) {
        self.lock().recent_stderr.clear();
    }
}

/// One of an instance's output streams, as WASI sees it.
#[derive(Debug, Clone)]
pub(crate) struct GuestOutput {
    stdio: GuestStdio,
    stream: Stream,
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.stdio.lock().write(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.stdio.lock().write(self.stream, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::uncaught_exception;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn the_exception_line_of_the_last_traceback_is_found() {
        let stderr = lines(
            "Traceback (most recent call last):\n  File \"/0/app.py\", line 3, in process\n\
             KeyError: 'old'\nTraceback (most recent call last):\n  File \"/0/app.py\", \
             line 10, in process\n    raise RuntimeError(\"kaboom\")\nRuntimeError: kaboom\n\
             thread '<unnamed>' panicked at runtime/src/lib.rs:1293:29:",
        );
        assert_eq!(uncaught_exception(&stderr), Some("RuntimeError: kaboom"));
    }

    #[test]
    fn stderr_without_a_traceback_has_no_exception() {
        assert_eq!(
            uncaught_exception(&lines("panicked at src/lib.rs:1:1:\nboom")),
            None
        );
        assert_eq!(
            uncaught_exception(&lines("Traceback (most recent call last):")),
            None
        );
    }
}
