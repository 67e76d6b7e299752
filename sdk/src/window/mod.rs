//! Windowed aggregations over event time: tumbling, hopping, sliding and session
//! windows of a user [`Aggregate`], per record key, with a grace period, emitted on
//! every update or once when the window closes, late records dropped, failed (so the
//! pipeline's `on_error` dead-letters them) or sent to a side output.
//!
//! ```
//! use weir_sdk::window::{Count, Emit, WindowedAggregate, Windows};
//! use weir_sdk::{Config, Context, Error, Record, Timer, Transform};
//!
//! /// Clicks per user and minute, emitted once each minute has closed.
//! struct Clicks(WindowedAggregate<Count>);
//!
//! impl Transform for Clicks {
//!     fn init(_: &Config) -> Result<Self, Error> {
//!         let windows = WindowedAggregate::new("clicks", Windows::tumbling(60_000))?
//!             .grace_ms(10_000)
//!             .emit(Emit::OnClose);
//!         Ok(Clicks(windows))
//!     }
//!
//!     fn process(&mut self, record: Record, ctx: &mut Context<'_>) -> Result<(), Error> {
//!         let results = self.0.add(ctx, &record, ())?;
//!         self.0.send_json(ctx, results)
//!     }
//!
//!     fn on_timer(&mut self, timer: Timer, ctx: &mut Context<'_>) -> Result<(), Error> {
//!         let results = self.0.on_timer(ctx, &timer)?.unwrap_or_default();
//!         self.0.send_json(ctx, results)
//!     }
//! }
//! ```
//!
//! A window closes when the partition's watermark reaches its end plus the grace
//! period (a session's: its end plus the gap plus the grace): it is emitted then (with
//! [`Emit::OnClose`]) and its state is deleted, by an event-time timer, so state holds
//! only open windows. A record is late when every window it would be in has closed (a
//! hopping window's record still counts in those of its windows that are open); for
//! sliding windows, when its own window (the one ending at it) has closed.
//!
//! Windows are computed in the guest, over the host's state and timers: the host
//! keeps no window logic of its own, so any aggregate a transform can write is
//! windowed the same way, in any language, and a hot swap keeps the open windows (the
//! state layout below is the contract between versions).
//!
//! State, under the aggregate's `name`: `<name>/w/<start><key>` holds a tumbling or
//! hopping window's value (`<start>` is 8 bytes, big-endian), `<name>/s/<key>` a key's
//! open sessions, `<name>/e/<key>` the records a key's sliding windows still need;
//! values are JSON. The close timer of a window is an event-time timer keyed
//! `<name>/c<start><key>`; sliding windows also set `<name>/r<newest><key>` at each
//! close, for the records they keep, at the time the newest of them (`<newest>`) can
//! no longer be in an open window. A transform's own state keys and timer keys must
//! not start with `<name>/`.
//!
//! A sliding window's value is folded from its records when it is emitted, and a
//! key's kept records are one JSON list, read and written whole: fine for the
//! handfuls of events a fraud rule counts, quadratic for a key with thousands of
//! records per window (use hopping windows there). If a window's close timer fails
//! (`on_timer` returns an error, and the pipeline skips or dead-letters it), a tumbling
//! or hopping window's state stays behind; a session's is dropped at the key's next
//! on-time record.

mod session;
mod sliding;
mod spec;
#[cfg(test)]
mod tests;

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Context, Error, Output, Record, Timer};
use session::Session;
pub use spec::{Window, Windows};
use spec::{fixed_windows, sliding_window};

/// A value computed over a window's records, such as a count or a sum.
pub trait Aggregate: Default + Clone + Serialize + DeserializeOwned {
    /// What one record contributes. Sliding windows keep it for each record they
    /// may still need, so keep it small.
    type Input: Serialize + DeserializeOwned;

    /// Take in one record's contribution.
    fn add(&mut self, input: &Self::Input);

    /// Take in `other`, the value of a session this one merges with (a record fell
    /// between them). Only session windows merge.
    fn merge(&mut self, other: Self);
}

/// How many records: the aggregate of a plain count. Its JSON is the number.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Count(pub u64);

impl Aggregate for Count {
    type Input = ();

    fn add(&mut self, (): &()) {
        self.0 += 1;
    }

    fn merge(&mut self, other: Self) {
        self.0 += other.0;
    }
}

/// When a window's value is emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// After each record that changes it (not final).
    OnUpdate,
    /// Once, when it closes (final).
    OnClose,
}

impl std::str::FromStr for Emit {
    type Err = Error;

    /// `update` or `close` (as in a transform's configuration).
    fn from_str(text: &str) -> Result<Self, Error> {
        match text {
            "update" => Ok(Self::OnUpdate),
            "close" | "final" => Ok(Self::OnClose),
            other => Err(Error::msg(format!(
                "unknown emit mode {other:?}: use `update` or `close`"
            ))),
        }
    }
}

/// What happens to a late record (one whose windows have all closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Late {
    /// Dropped silently.
    Drop,
    /// The record fails, so the pipeline's `on_error` applies: `dead-letter` sends it
    /// to the dead-letter topic with the reason, `skip` drops it, `fail` stops.
    DeadLetter,
    /// Sent as it is (key, value, headers, timestamp) to this topic.
    SideOutput(String),
}

impl std::str::FromStr for Late {
    type Err = Error;

    /// `drop`, `dead-letter` or `side-output:<topic>` (as in a transform's
    /// configuration).
    fn from_str(text: &str) -> Result<Self, Error> {
        match text.split_once(':') {
            None if text == "drop" => Ok(Self::Drop),
            None if text == "dead-letter" => Ok(Self::DeadLetter),
            Some(("side-output", topic)) if !topic.is_empty() => {
                Ok(Self::SideOutput(topic.to_owned()))
            }
            _ => Err(Error::msg(format!(
                "unknown late-record policy {text:?}: use `drop`, `dead-letter` or \
                 `side-output:<topic>`"
            ))),
        }
    }
}

/// A window's value, as emitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowResult<A> {
    /// The record key (empty for records without one).
    pub key: Vec<u8>,
    pub window: Window,
    pub value: A,
    /// The window has closed: no later value will follow.
    pub is_final: bool,
}

/// The JSON [`WindowedAggregate::send_json`] emits.
#[derive(Serialize)]
struct ResultJson<'a, A> {
    window_start: i64,
    window_end: i64,
    value: &'a A,
    #[serde(rename = "final")]
    is_final: bool,
}

/// An aggregate of each key's records per window. See the [module](self) docs.
#[derive(Debug, Clone)]
pub struct WindowedAggregate<A> {
    name: String,
    windows: Windows,
    grace_ms: i64,
    emit: Emit,
    late: Late,
    value: PhantomData<fn() -> A>,
}

impl<A: Aggregate> WindowedAggregate<A> {
    /// Windows named `name` (the prefix of their state and timer keys: unique within
    /// the transform, without `/`), no grace, emitted on close, late records dropped.
    pub fn new(name: &str, windows: Windows) -> Result<Self, Error> {
        windows.check()?;
        if name.is_empty() || name.contains('/') {
            return Err(Error::msg(format!(
                "a windowed aggregate's name must be non-empty and without `/`, not {name:?}"
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            windows,
            grace_ms: 0,
            emit: Emit::OnClose,
            late: Late::Drop,
            value: PhantomData,
        })
    }

    /// Keep windows open `ms` past their end (negative counts as zero), for records
    /// that arrive out of order.
    pub fn grace_ms(mut self, ms: i64) -> Self {
        self.grace_ms = ms.max(0);
        self
    }

    pub fn emit(mut self, emit: Emit) -> Self {
        self.emit = emit;
        self
    }

    pub fn late(mut self, late: Late) -> Self {
        self.late = late;
        self
    }

    /// Add `record` (its key and timestamp) with its contribution `input` to the
    /// windows it falls in. Returns the updated windows' values under
    /// [`Emit::OnUpdate`] (nothing under `OnClose`); a late record is handled by the
    /// [`Late`] policy.
    pub fn add(
        &self,
        ctx: &mut Context<'_>,
        record: &Record,
        input: A::Input,
    ) -> Result<Vec<WindowResult<A>>, Error> {
        let timestamp = record.timestamp;
        if timestamp < 0 {
            return Err(Error::msg(format!(
                "the record at offset {} has no timestamp ({timestamp}): windows need event \
                 time; have the producer set record timestamps",
                record.offset
            )));
        }
        let key = record.key.as_deref().unwrap_or_default();
        let added = match self.windows {
            Windows::Tumbling { size } => self.add_fixed(ctx, key, timestamp, size, size, input),
            Windows::Hopping { size, advance } => {
                self.add_fixed(ctx, key, timestamp, size, advance, input)
            }
            Windows::Sliding { size } => self.add_sliding(ctx, key, timestamp, size, input),
            Windows::Session { gap } => self.add_session(ctx, key, timestamp, gap, input),
        }?;
        match added {
            Added::Results(results) => Ok(results),
            Added::Late { close } => self.late_record(ctx, record, close).map(|()| Vec::new()),
        }
    }

    /// Close the window of `timer`, if it is one of this aggregate's: `None` for a
    /// timer it did not set. Returns the closed window's value under
    /// [`Emit::OnClose`]; its state is gone either way.
    pub fn on_timer(
        &self,
        ctx: &mut Context<'_>,
        timer: &Timer,
    ) -> Result<Option<Vec<WindowResult<A>>>, Error> {
        if timer.domain != crate::TimeDomain::EventTime {
            return Ok(None);
        }
        let Some((kind, start, key)) = self.parse_timer_key(&timer.key) else {
            return Ok(None);
        };
        if kind == RETENTION {
            if let Windows::Sliding { size } = self.windows {
                self.prune_sliding(ctx, key, size, timer.at)?;
            }
            return Ok(Some(Vec::new()));
        }
        let closed = match self.windows {
            Windows::Tumbling { size } | Windows::Hopping { size, .. } => {
                let state_key = self.window_key(start, key);
                let value = read::<A>(ctx, &state_key)?;
                ctx.state().delete(&state_key);
                value.map(|value| (window(start, size), value))
            }
            Windows::Sliding { size } => self.close_sliding(ctx, key, start, size, timer.at)?,
            Windows::Session { gap } => self.close_session(ctx, key, start, gap, timer.at)?,
        };
        let results = match (closed, self.emit) {
            (Some((window, value)), Emit::OnClose) => vec![WindowResult {
                key: key.to_vec(),
                window,
                value,
                is_final: true,
            }],
            _ => Vec::new(),
        };
        Ok(Some(results))
    }

    /// Emit `results` as JSON to the default output topic, each under its key:
    /// `{"window_start": .., "window_end": .., "value": .., "final": ..}`.
    pub fn send_json(
        &self,
        ctx: &mut Context<'_>,
        results: Vec<WindowResult<A>>,
    ) -> Result<(), Error> {
        for result in results {
            let json = ResultJson {
                window_start: result.window.start,
                window_end: result.window.end,
                value: &result.value,
                is_final: result.is_final,
            };
            ctx.send_json(result.key, &json)?;
        }
        Ok(())
    }

    fn add_fixed(
        &self,
        ctx: &mut Context<'_>,
        key: &[u8],
        timestamp: i64,
        size: i64,
        advance: i64,
        input: A::Input,
    ) -> Result<Added<A>, Error> {
        let watermark = ctx.watermark();
        let mut results = Vec::new();
        let mut last_close = i64::MIN;
        let mut added = false;
        for window in fixed_windows(timestamp, size, advance) {
            let close = window.end.saturating_add(self.grace_ms);
            last_close = close;
            if close <= watermark {
                continue;
            }
            added = true;
            let state_key = self.window_key(window.start, key);
            let mut value = read::<A>(ctx, &state_key)?.unwrap_or_default();
            value.add(&input);
            write(ctx, &state_key, &value)?;
            ctx.set_timer(&Timer::event(
                close,
                self.timer_key(CLOSE, window.start, key),
            ));
            self.updated(&mut results, key, window, &value);
        }
        Ok(if added {
            Added::Results(results)
        } else {
            Added::Late { close: last_close }
        })
    }

    fn add_sliding(
        &self,
        ctx: &mut Context<'_>,
        key: &[u8],
        timestamp: i64,
        size: i64,
        input: A::Input,
    ) -> Result<Added<A>, Error> {
        let own = sliding_window(timestamp, size);
        let close = own.end.saturating_add(self.grace_ms);
        if close <= ctx.watermark() {
            return Ok(Added::Late { close });
        }
        let state_key = self.state_key(b"e", key);
        let mut events: Vec<sliding::Event<A::Input>> = read(ctx, &state_key)?.unwrap_or_default();
        sliding::insert(&mut events, timestamp, input);
        write(ctx, &state_key, &events)?;
        ctx.set_timer(&Timer::event(close, self.timer_key(CLOSE, own.start, key)));
        let mut results = Vec::new();
        if self.emit == Emit::OnUpdate {
            for end in sliding::windows_holding(&events, timestamp, size) {
                let window = sliding_window(end, size);
                let value = sliding::fold::<A>(&events, window);
                self.updated(&mut results, key, window, &value);
            }
        }
        Ok(Added::Results(results))
    }

    fn close_sliding(
        &self,
        ctx: &mut Context<'_>,
        key: &[u8],
        start: i64,
        size: i64,
        at: i64,
    ) -> Result<Option<(Window, A)>, Error> {
        let state_key = self.state_key(b"e", key);
        let Some(mut events) = read::<Vec<sliding::Event<A::Input>>>(ctx, &state_key)? else {
            return Ok(None);
        };
        let closed = window(start, size);
        let value = sliding::fold::<A>(&events, closed);
        self.keep_needed(ctx, key, &state_key, &mut events, size, at)?;
        Ok(Some((closed, value)))
    }

    /// A retention timer: forget the records no window can need any more.
    fn prune_sliding(
        &self,
        ctx: &mut Context<'_>,
        key: &[u8],
        size: i64,
        at: i64,
    ) -> Result<(), Error> {
        let state_key = self.state_key(b"e", key);
        if let Some(mut events) = read::<Vec<sliding::Event<A::Input>>>(ctx, &state_key)? {
            self.keep_needed(ctx, key, &state_key, &mut events, size, at)?;
        }
        Ok(())
    }

    /// Drop the records no open window or later on-time record can need at `at`,
    /// store the rest, and have a retention timer forget them once none can.
    ///
    /// Timers fire in time order, so every window closing by `at` has closed: a record
    /// is still needed only by windows ending after `at - grace` (those of later
    /// records too, which are late otherwise), which start after
    /// `at - grace - size`.
    fn keep_needed(
        &self,
        ctx: &mut Context<'_>,
        key: &[u8],
        state_key: &[u8],
        events: &mut Vec<sliding::Event<A::Input>>,
        size: i64,
        at: i64,
    ) -> Result<(), Error> {
        let from = at
            .saturating_sub(self.grace_ms)
            .saturating_sub(size)
            .saturating_add(1);
        sliding::prune(events, from);
        let Some(&(newest, _)) = events.last() else {
            ctx.state().delete(state_key);
            return Ok(());
        };
        write(ctx, state_key, events)?;
        let unneeded = newest.saturating_add(size).saturating_add(self.grace_ms);
        let timer_key = self.timer_key(RETENTION, newest, key);
        ctx.set_timer(&Timer::event(unneeded, timer_key));
        Ok(())
    }

    fn add_session(
        &self,
        ctx: &mut Context<'_>,
        key: &[u8],
        timestamp: i64,
        gap: i64,
        input: A::Input,
    ) -> Result<Added<A>, Error> {
        let state_key = self.state_key(b"s", key);
        let mut sessions: Vec<Session<A>> = read(ctx, &state_key)?.unwrap_or_default();
        // A session past its close is one whose close timer failed: gone.
        let watermark = ctx.watermark();
        sessions.retain(|s| self.session_close(s.window.end, gap) > watermark);
        let reaches_one = sessions.iter().any(|s| {
            s.window.start.saturating_sub(gap) <= timestamp
                && timestamp < s.window.end.saturating_add(gap)
        });
        let own_close = self.session_close(timestamp.saturating_add(1), gap);
        if !reaches_one && own_close <= ctx.watermark() {
            return Ok(Added::Late { close: own_close });
        }
        let joined = session::join(&mut sessions, timestamp, gap, &input);
        for replaced in joined.replaced {
            let close = self.session_close(replaced.end, gap);
            ctx.delete_timer(&Timer::event(
                close,
                self.timer_key(CLOSE, replaced.start, key),
            ));
        }
        let Session { window, value } = &sessions[joined.index];
        let close = self.session_close(window.end, gap);
        ctx.set_timer(&Timer::event(
            close,
            self.timer_key(CLOSE, window.start, key),
        ));
        let mut results = Vec::new();
        self.updated(&mut results, key, *window, value);
        write(ctx, &state_key, &sessions)?;
        Ok(Added::Results(results))
    }

    fn close_session(
        &self,
        ctx: &mut Context<'_>,
        key: &[u8],
        start: i64,
        gap: i64,
        at: i64,
    ) -> Result<Option<(Window, A)>, Error> {
        let state_key = self.state_key(b"s", key);
        let mut sessions: Vec<Session<A>> = read(ctx, &state_key)?.unwrap_or_default();
        // A session that grew since this timer was set has a later one of its own.
        let Some(index) = sessions
            .iter()
            .position(|s| s.window.start == start && self.session_close(s.window.end, gap) == at)
        else {
            return Ok(None);
        };
        let closed = sessions.remove(index);
        if sessions.is_empty() {
            ctx.state().delete(&state_key);
        } else {
            write(ctx, &state_key, &sessions)?;
        }
        Ok(Some((closed.window, closed.value)))
    }

    fn session_close(&self, end: i64, gap: i64) -> i64 {
        end.saturating_add(gap).saturating_add(self.grace_ms)
    }

    /// Keep an updated window's value, if updates are emitted.
    fn updated(&self, results: &mut Vec<WindowResult<A>>, key: &[u8], window: Window, value: &A) {
        if self.emit == Emit::OnUpdate {
            results.push(WindowResult {
                key: key.to_vec(),
                window,
                value: value.clone(),
                is_final: false,
            });
        }
    }

    fn late_record(&self, ctx: &mut Context<'_>, record: &Record, close: i64) -> Result<(), Error> {
        match &self.late {
            Late::Drop => Ok(()),
            Late::DeadLetter => Err(Error::msg(format!(
                "late record: its window of {} closed at {close}, and the watermark is {}",
                self.name,
                ctx.watermark()
            ))),
            Late::SideOutput(topic) => {
                ctx.emit(Output {
                    key: record.key.clone(),
                    value: record.value.clone(),
                    headers: record.headers.clone(),
                    topic: Some(topic.clone()),
                    timestamp: Some(record.timestamp),
                });
                Ok(())
            }
        }
    }

    /// `<name>/<kind>/<key>`.
    fn state_key(&self, kind: &[u8], key: &[u8]) -> Vec<u8> {
        let mut state_key = Vec::with_capacity(self.name.len() + 3 + key.len());
        state_key.extend_from_slice(self.name.as_bytes());
        state_key.push(b'/');
        state_key.extend_from_slice(kind);
        state_key.push(b'/');
        state_key.extend_from_slice(key);
        state_key
    }

    /// `<name>/w/<start><key>`: a tumbling or hopping window's value.
    fn window_key(&self, start: i64, key: &[u8]) -> Vec<u8> {
        let mut state_key = self.state_key(b"w", &start.to_be_bytes());
        state_key.extend_from_slice(key);
        state_key
    }

    /// `<name>/<kind><start><key>`: a window's close timer, or a retention one.
    fn timer_key(&self, kind: u8, start: i64, key: &[u8]) -> Vec<u8> {
        let mut timer_key = Vec::with_capacity(self.name.len() + 10 + key.len());
        timer_key.extend_from_slice(self.name.as_bytes());
        timer_key.push(b'/');
        timer_key.push(kind);
        timer_key.extend_from_slice(&start.to_be_bytes());
        timer_key.extend_from_slice(key);
        timer_key
    }

    fn parse_timer_key<'k>(&self, timer_key: &'k [u8]) -> Option<(u8, i64, &'k [u8])> {
        let rest = timer_key
            .strip_prefix(self.name.as_bytes())?
            .strip_prefix(b"/")?;
        let (&kind, rest) = rest.split_first()?;
        let (start, key) = rest.split_first_chunk::<8>()?;
        (kind == CLOSE || kind == RETENTION).then_some((kind, i64::from_be_bytes(*start), key))
    }
}

/// The kinds of timer: a window closes, or a sliding window's kept records expire.
const CLOSE: u8 = b'c';
const RETENTION: u8 = b'r';

/// What adding a record did.
enum Added<A> {
    Results(Vec<WindowResult<A>>),
    /// Every window it would be in had closed, the last at `close`.
    Late {
        close: i64,
    },
}

fn window(start: i64, size: i64) -> Window {
    Window {
        start,
        end: start.saturating_add(size),
    }
}

fn read<T: DeserializeOwned>(ctx: &mut Context<'_>, key: &[u8]) -> Result<Option<T>, Error> {
    let Some(raw) = ctx.state().get(key) else {
        return Ok(None);
    };
    serde_json::from_slice(&raw).map(Some).map_err(|e| {
        Error::msg(format!(
            "window state under {:?} is not what this version expects: {e}",
            String::from_utf8_lossy(key)
        ))
    })
}

fn write<T: Serialize>(ctx: &mut Context<'_>, key: &[u8], value: &T) -> Result<(), Error> {
    let raw = serde_json::to_vec(value)?;
    ctx.state().put(key, raw);
    Ok(())
}
