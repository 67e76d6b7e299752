"""Write Weir stream transforms in Python.

Implement one function, register it with :func:`transform`, and re-export
:class:`WitWorld` from your app module (componentize-py looks the exports up by that
name)::

    import weir
    from weir import WitWorld  # noqa: F401  (the component's exports)

    @weir.transform
    def process(record: weir.Record, ctx: weir.Context) -> None:
        for word in record.value_str().split():
            count = ctx.state.get_json(f"count/{word}", 0) + 1
            ctx.state.put_json(f"count/{word}", count)
            ctx.send(word, str(count))

Build with ``scripts/build-guests-python.sh`` (or ``componentize-py -d wit -w transform
componentize app -p . -p sdk/python -o app.wasm``).

Event time (contract 0.3): ``ctx.watermark`` is the watermark the record meets,
``ctx.set_timer(at, key)`` asks for a call of the function registered with
:func:`on_timer` once the watermark reaches ``at`` (``processing=True``: the wall
clock), and :class:`Windows` aggregates per key in tumbling, hopping, sliding or
session windows, with the Rust SDK's state layout (a hot swap between the two keeps
the open windows).

An exception raised for a record fails that record only: the host discards its state
writes and outputs and applies the pipeline's error policy (skip, dead-letter, fail),
with the exception's type and message as the error. An exception in the ``init``
function refuses the module, with its message.

This module wraps the raw bindings componentize-py generates from ``wit/`` (package
``wit_world``); it adds no behaviour the contract lacks, only Python types.
"""

from __future__ import annotations

import json
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import wit_world
from componentize_py_types import Err
from wit_world.imports import log as _log
from wit_world.imports import state as _state
from wit_world.imports import tables as _tables
from wit_world.imports import timers as _timers
from wit_world.imports import types as _types

__all__ = [
    "NO_WATERMARK",
    "Context",
    "Record",
    "State",
    "LateRecord",
    "Timer",
    "WindowResult",
    "Windows",
    "WitWorld",
    "debug",
    "error",
    "info",
    "init",
    "on_timer",
    "transform",
    "warn",
]

Bytes = Union[bytes, str]

# Entries per host `scan` call; the host caps a page at 1024.
_SCAN_PAGE = 256

#: The watermark before any record with a timestamp: the beginning of time.
NO_WATERMARK = -(2**63)


def _as_bytes(data: Bytes) -> bytes:
    """Keys and values are bytes on the wire; text is sent as UTF-8."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"expected bytes or str, got {type(data).__name__}")


@dataclass
class Record:
    """One input record, as consumed from Kafka."""

    key: Optional[bytes]
    value: Optional[bytes]
    headers: List[Tuple[str, bytes]]
    timestamp: int
    topic: str
    partition: int
    offset: int

    def value_str(self) -> str:
        """The value as UTF-8 text ("" when the record has no value)."""
        return _decode(self.value, "value")

    def key_str(self) -> Optional[str]:
        """The key as UTF-8 text, or None when the record has no key."""
        return None if self.key is None else _decode(self.key, "key")

    def value_json(self) -> Any:
        """The value parsed as JSON."""
        return json.loads(self.value_str())

    def header(self, name: str) -> Optional[bytes]:
        """The value of the first header called `name`, if any."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


def _decode(data: Optional[bytes], what: str) -> str:
    if data is None:
        return ""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"the record's {what} is not UTF-8 text ({e})") from None


@dataclass(frozen=True)
class Timer:
    """A timer that fired: `key` at `at` (milliseconds since the Unix epoch), in event
    time (the watermark) or, with `processing`, the wall clock."""

    at: int
    key: bytes
    processing: bool = False


def _domain(processing: bool) -> _types.TimeDomain:
    return _types.TimeDomain.PROCESSING_TIME if processing else _types.TimeDomain.EVENT_TIME


class State:
    """The partition's keyed state, owned by the host.

    Writes are buffered by the host and become durable at the next checkpoint,
    together with the input offsets they belong to. Keys and values are bytes; a str
    is stored as its UTF-8 bytes. The ``*_json`` methods store values as JSON text.
    """

    def get(self, key: Bytes) -> Optional[bytes]:
        return _state.get(_as_bytes(key))

    def put(self, key: Bytes, value: Bytes) -> None:
        _state.put(_as_bytes(key), _as_bytes(value))

    def delete(self, key: Bytes) -> None:
        _state.delete(_as_bytes(key))

    def get_json(self, key: Bytes, default: Any = None) -> Any:
        """The JSON value under `key`, or `default` when there is none."""
        raw = self.get(key)
        return default if raw is None else json.loads(raw)

    def put_json(self, key: Bytes, value: Any) -> None:
        self.put(key, json.dumps(value, separators=(",", ":"), ensure_ascii=False))

    def scan(self, prefix: Bytes = b"") -> Iterator[Tuple[bytes, bytes]]:
        """Every (key, value) whose key starts with `prefix`, in ascending key order."""
        prefix = _as_bytes(prefix)
        after: Optional[bytes] = None
        while True:
            page = _state.scan(prefix, after, _SCAN_PAGE)
            for entry in page:
                yield entry.key, entry.value
            if len(page) < _SCAN_PAGE:
                return
            after = page[-1].key


class Table:
    """A table the pipeline declares (``[pipelines.NAME.tables.<name>]``): a
    compacted topic the host keeps materialized for this partition, as of the
    record's timestamp. Read only. A stream-table join is a lookup by the record's
    key: an inner join skips a record without a row, a left join goes on with None.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def get(self, key: Bytes) -> Optional[bytes]:
        """The row of `key`: the value of the table topic's latest record with it."""
        return _tables.get(self.name, _as_bytes(key))

    def get_json(self, key: Bytes, default: Any = None) -> Any:
        """The row of `key` read as JSON, or `default` when there is none."""
        raw = self.get(key)
        return default if raw is None else json.loads(raw)

    def scan(self, prefix: Bytes = b"") -> Iterator[Tuple[bytes, bytes]]:
        """Every (key, row) whose key starts with `prefix`, in ascending key order."""
        prefix = _as_bytes(prefix)
        after: Optional[bytes] = None
        while True:
            page = _tables.scan(self.name, prefix, after, _SCAN_PAGE)
            for entry in page:
                yield entry.key, entry.value
            if len(page) < _SCAN_PAGE:
                return
            after = page[-1].key


class _Outputs:
    """Outputs of a batch, laid out as the contract's output batch: a list per field
    and every byte in one buffer (see wit/transform.wit)."""

    def __init__(self) -> None:
        self.key_lens: List[int] = []
        self.value_lens: List[int] = []
        self.topic_lens: List[int] = []
        self.timestamps: List[int] = []
        self.header_counts: List[int] = []
        self.header_lens: List[int] = []
        self.data = bytearray()

    def _push(self, raw: Optional[bytes]) -> int:
        if raw is None:
            return -1
        self.data += raw
        return len(raw)

    def add(
        self,
        key: Optional[bytes],
        value: Optional[bytes],
        headers: List[Tuple[str, bytes]],
        topic: Optional[str],
        timestamp: Optional[int],
    ) -> None:
        self.header_counts.append(len(headers))
        for name, raw in headers:
            self.header_lens.append(self._push(name.encode("utf-8")))
            self.header_lens.append(self._push(raw))
        self.key_lens.append(self._push(key))
        self.value_lens.append(self._push(value))
        self.topic_lens.append(self._push(None if topic is None else topic.encode("utf-8")))
        self.timestamps.append(-1 if timestamp is None else timestamp)

    def batch(self) -> _types.OutputBatch:
        return _types.OutputBatch(
            key_lens=self.key_lens,
            value_lens=self.value_lens,
            topic_lens=self.topic_lens,
            timestamps=self.timestamps,
            header_counts=self.header_counts,
            header_lens=self.header_lens,
            data=bytes(self.data),
        )


@dataclass
class Context:
    """What a transform can do while it processes a record or a fired timer."""

    config: Dict[str, str]
    state: State = field(default_factory=State)
    #: The partition's watermark as this record arrives (or this timer fires):
    #: every record older than it is late. NO_WATERMARK before any timestamp.
    watermark: int = NO_WATERMARK
    _timestamp: Optional[int] = None
    _outputs: _Outputs = field(default_factory=_Outputs)

    def table(self, name: str) -> Table:
        """The pipeline's table `name`, to join records with (see :class:`Table`)."""
        return Table(name)

    def is_late(self, timestamp: int) -> bool:
        """Whether an event at `timestamp` is older than the watermark."""
        return timestamp < self.watermark

    def set_timer(self, at: int, key: Bytes, *, processing: bool = False) -> None:
        """Have the :func:`on_timer` function called with `key` once the watermark
        (with `processing`, the wall clock) reaches `at`. Setting one twice is one
        timer; timers are state, kept across restarts and hot swaps."""
        _timers.set(_domain(processing), at, _as_bytes(key))

    def delete_timer(self, at: int, key: Bytes, *, processing: bool = False) -> None:
        """Cancel a timer; cancelling one that is not set does nothing."""
        _timers.delete(_domain(processing), at, _as_bytes(key))

    def send(
        self,
        key: Optional[Bytes],
        value: Optional[Bytes],
        *,
        topic: Optional[str] = None,
        headers: Optional[Union[Dict[str, Bytes], List[Tuple[str, Bytes]]]] = None,
        timestamp: Optional[int] = None,
    ) -> None:
        """Emit an output record (to the pipeline's output topic unless `topic` is set).

        Outputs take the input record's timestamp (a timer's time, in `on_timer`)
        unless `timestamp` is given.
        """
        if timestamp is None:
            timestamp = self._timestamp
        self._outputs.add(
            None if key is None else _as_bytes(key),
            None if value is None else _as_bytes(value),
            [(k, _as_bytes(v)) for k, v in (headers.items() if isinstance(headers, dict) else headers or [])],
            topic,
            timestamp,
        )

    def send_json(self, key: Optional[Bytes], value: Any, **kwargs: Any) -> None:
        """Emit an output whose value is `value` as JSON text."""
        self.send(key, json.dumps(value, separators=(",", ":"), ensure_ascii=False), **kwargs)


@dataclass
class WindowResult:
    """A window's value, as emitted: `final` once the window has closed."""

    key: bytes
    start: int
    end: int
    value: Any
    final: bool


class LateRecord(Exception):
    """A record whose windows have all closed, under ``late="dead-letter"``: it fails,
    so the pipeline's error policy dead-letters (or skips) it."""


_CLOSE = b"c"
_RETENTION = b"r"


def _i64(n: int) -> bytes:
    return n.to_bytes(8, "big", signed=True)


class Windows:
    """Windowed aggregation per record key over event time, as the Rust SDK's
    ``weir_sdk::window`` does it (same rules, same state layout).

    Make one with :meth:`tumbling`, :meth:`hopping`, :meth:`sliding` or
    :meth:`session`; call :meth:`add` for each record and :meth:`on_timer` for each
    timer (``None`` for a timer that is not this aggregate's). Windows start
    inclusive and end exclusive; a window closes when the watermark reaches its end
    plus `grace_ms` (a session's: its end plus the gap plus the grace), is emitted then
    with ``emit="close"`` (or after every change with ``emit="update"``), and its state
    goes. A record whose windows have all closed is late: ``late="drop"``,
    ``"dead-letter"`` (the record fails with :class:`LateRecord`) or
    ``"side-output:<topic>"``. The aggregate is a count unless `initial`, `add` and
    (for sessions) `merge` are given: ``add(value, input) -> value``,
    ``merge(value, other) -> value``, values and inputs JSON-serializable.
    """

    def __init__(
        self,
        name: str,
        kind: str,
        size: int,
        advance: int,
        *,
        grace_ms: int = 0,
        emit: str = "close",
        late: str = "drop",
        initial: Callable[[], Any] = lambda: 0,
        add: Callable[[Any, Any], Any] = lambda value, _input: value + 1,
        merge: Callable[[Any, Any], Any] = lambda value, other: value + other,
    ) -> None:
        if not name or "/" in name:
            raise ValueError(f"a windowed aggregate's name must be non-empty and without '/', not {name!r}")
        if size <= 0 or advance <= 0:
            raise ValueError(f"a window's size, advance or gap must be a positive number of milliseconds, not {size}/{advance}")
        if advance > size:
            raise ValueError(
                f"a hopping window's advance ({advance} ms) is longer than its size ({size} ms): "
                "records between windows would be lost; use an advance of at most the size"
            )
        if emit not in ("close", "final", "update"):
            raise ValueError(f"unknown emit mode {emit!r}: use 'update' or 'close'")
        if late not in ("drop", "dead-letter") and not (late.startswith("side-output:") and len(late) > 12):
            raise ValueError(f"unknown late-record policy {late!r}: use 'drop', 'dead-letter' or 'side-output:<topic>'")
        self.name = name.encode("utf-8")
        self.kind = kind
        self.size = size
        self.advance = advance
        self.grace = max(grace_ms, 0)
        self.on_update = emit == "update"
        self.late = late
        self._initial = initial
        self._add = add
        self._merge = merge

    @classmethod
    def tumbling(cls, name: str, size_ms: int, **options: Any) -> "Windows":
        return cls(name, "fixed", size_ms, size_ms, **options)

    @classmethod
    def hopping(cls, name: str, size_ms: int, advance_ms: int, **options: Any) -> "Windows":
        return cls(name, "fixed", size_ms, advance_ms, **options)

    @classmethod
    def sliding(cls, name: str, size_ms: int, **options: Any) -> "Windows":
        """The window of `size_ms` ending at each record: [t - size + 1, t + 1)."""
        return cls(name, "sliding", size_ms, size_ms, **options)

    @classmethod
    def session(cls, name: str, gap_ms: int, **options: Any) -> "Windows":
        return cls(name, "session", gap_ms, gap_ms, **options)

    # Keys, as the Rust SDK writes them.
    def _state_key(self, kind: bytes, key: bytes) -> bytes:
        return self.name + b"/" + kind + b"/" + key

    def _timer_key(self, kind: bytes, start: int, key: bytes) -> bytes:
        return self.name + b"/" + kind + _i64(start) + key

    def add(self, ctx: Context, record: Record, input: Any = None) -> List[WindowResult]:
        """Add `record` (its key and timestamp) with its contribution `input`: the
        updated windows under ``emit="update"``, else nothing."""
        t = record.timestamp
        if t < 0:
            raise ValueError(
                f"the record at offset {record.offset} has no timestamp ({t}): windows need "
                "event time; have the producer set record timestamps"
            )
        key = record.key or b""
        if self.kind == "fixed":
            results, close = self._add_fixed(ctx, key, t, input)
        elif self.kind == "sliding":
            results, close = self._add_sliding(ctx, key, t, input)
        else:
            results, close = self._add_session(ctx, key, t, input)
        if close is not None:
            self._late_record(ctx, record, close)
        return results

    def _add_fixed(self, ctx: Context, key: bytes, t: int, input: Any) -> Tuple[List[WindowResult], Optional[int]]:
        results: List[WindowResult] = []
        last = t - t % self.advance
        starts = list(range(last, t - self.size, -self.advance))[::-1]
        added = False
        close = None
        for start in starts:
            end = start + self.size
            close = end + self.grace
            if close <= ctx.watermark:
                continue
            added = True
            state_key = self._state_key(b"w", _i64(start) + key)
            value = self._add(ctx.state.get_json(state_key, self._initial()), input)
            ctx.state.put_json(state_key, value)
            ctx.set_timer(close, self._timer_key(_CLOSE, start, key))
            if self.on_update:
                results.append(WindowResult(key, start, end, value, False))
        return results, (None if added else close)

    def _fold(self, events: List[Any], start: int, end: int) -> Any:
        value = self._initial()
        for time, input in events:
            if start <= time < end:
                value = self._add(value, input)
        return value

    def _add_sliding(self, ctx: Context, key: bytes, t: int, input: Any) -> Tuple[List[WindowResult], Optional[int]]:
        end = t + 1
        close = end + self.grace
        if close <= ctx.watermark:
            return [], close
        state_key = self._state_key(b"e", key)
        events = ctx.state.get_json(state_key, [])
        at = len(events)
        while at > 0 and events[at - 1][0] > t:
            at -= 1
        events.insert(at, [t, input])
        ctx.state.put_json(state_key, events)
        ctx.set_timer(close, self._timer_key(_CLOSE, end - self.size, key))
        results: List[WindowResult] = []
        if self.on_update:
            ends = sorted({time for time, _ in events if t <= time < t + self.size})
            for last in ends:
                start = last + 1 - self.size
                results.append(WindowResult(key, start, last + 1, self._fold(events, start, last + 1), False))
        return results, None

    def _keep_needed(self, ctx: Context, key: bytes, events: List[Any], at: int) -> None:
        first = at - self.grace - self.size + 1
        events = [event for event in events if event[0] >= first]
        state_key = self._state_key(b"e", key)
        if not events:
            ctx.state.delete(state_key)
            return
        ctx.state.put_json(state_key, events)
        newest = events[-1][0]
        ctx.set_timer(newest + self.size + self.grace, self._timer_key(_RETENTION, newest, key))

    def _session_close(self, end: int) -> int:
        return end + self.size + self.grace

    def _add_session(self, ctx: Context, key: bytes, t: int, input: Any) -> Tuple[List[WindowResult], Optional[int]]:
        gap = self.size
        state_key = self._state_key(b"s", key)
        # A session past its close is one whose close timer failed: gone.
        sessions = [s for s in ctx.state.get_json(state_key, []) if self._session_close(s["window"]["end"]) > ctx.watermark]
        reached = [s for s in sessions if s["window"]["start"] - gap <= t < s["window"]["end"] + gap]
        if not reached and self._session_close(t + 1) <= ctx.watermark:
            return [], self._session_close(t + 1)
        if reached:
            start = min(t, reached[0]["window"]["start"])
            end = max(t + 1, max(s["window"]["end"] for s in reached))
            value = reached[0]["value"]
            for other in reached[1:]:
                value = self._merge(value, other["value"])
            for old in reached:
                window = old["window"]
                ctx.delete_timer(self._session_close(window["end"]), self._timer_key(_CLOSE, window["start"], key))
            sessions = [s for s in sessions if not any(s is r for r in reached)]
        else:
            start, end, value = t, t + 1, self._initial()
        value = self._add(value, input)
        merged = {"window": {"start": start, "end": end}, "value": value}
        sessions.append(merged)
        sessions.sort(key=lambda s: s["window"]["start"])
        ctx.set_timer(self._session_close(end), self._timer_key(_CLOSE, start, key))
        ctx.state.put_json(state_key, sessions)
        return ([WindowResult(key, start, end, value, False)] if self.on_update else []), None

    def on_timer(self, ctx: Context, timer: Timer) -> Optional[List[WindowResult]]:
        """Close the window of `timer` if it is this aggregate's (``None`` if not):
        its value under ``emit="close"``, else nothing; its state goes either way."""
        prefix = self.name + b"/"
        if timer.processing or not timer.key.startswith(prefix) or len(timer.key) < len(prefix) + 9:
            return None
        kind = timer.key[len(prefix) : len(prefix) + 1]
        if kind not in (_CLOSE, _RETENTION):
            return None
        start = int.from_bytes(timer.key[len(prefix) + 1 : len(prefix) + 9], "big", signed=True)
        key = timer.key[len(prefix) + 9 :]
        closed: Optional[Tuple[int, int, Any]] = None
        if self.kind == "sliding":
            state_key = self._state_key(b"e", key)
            events = ctx.state.get_json(state_key)
            if events is not None:
                if kind == _CLOSE:
                    closed = (start, start + self.size, self._fold(events, start, start + self.size))
                self._keep_needed(ctx, key, events, timer.at)
        elif kind == _RETENTION:
            pass
        elif self.kind == "fixed":
            state_key = self._state_key(b"w", _i64(start) + key)
            value = ctx.state.get_json(state_key)
            ctx.state.delete(state_key)
            if value is not None:
                closed = (start, start + self.size, value)
        else:
            state_key = self._state_key(b"s", key)
            sessions = ctx.state.get_json(state_key, [])
            for index, session in enumerate(sessions):
                window = session["window"]
                if window["start"] == start and self._session_close(window["end"]) == timer.at:
                    del sessions[index]
                    if sessions:
                        ctx.state.put_json(state_key, sessions)
                    else:
                        ctx.state.delete(state_key)
                    closed = (window["start"], window["end"], session["value"])
                    break
        if closed is None or self.on_update:
            return []
        return [WindowResult(key, closed[0], closed[1], closed[2], True)]

    def _late_record(self, ctx: Context, record: Record, close: int) -> None:
        if self.late == "drop":
            return
        if self.late == "dead-letter":
            raise LateRecord(
                f"late record: its window of {self.name.decode()} closed at {close}, "
                f"and the watermark is {ctx.watermark}"
            )
        ctx.send(
            record.key,
            record.value,
            topic=self.late[len("side-output:") :],
            headers=record.headers,
            timestamp=record.timestamp,
        )

    def send_json(self, ctx: Context, results: List[WindowResult]) -> None:
        """Emit `results` as the Rust SDK's ``send_json`` does, each under its key:
        ``{"window_start", "window_end", "value", "final"}``."""
        for r in results:
            ctx.send_json(r.key, {"window_start": r.start, "window_end": r.end, "value": r.value, "final": r.final})


ProcessFn = Callable[[Record, Context], None]
InitFn = Callable[[Dict[str, str]], None]
TimerFn = Callable[[Timer, Context], None]

_process: Optional[ProcessFn] = None
_init: Optional[InitFn] = None
_on_timer: Optional[TimerFn] = None
_config: Dict[str, str] = {}


def transform(fn: ProcessFn) -> ProcessFn:
    """Register `fn(record, ctx)` as the function called for every input record."""
    global _process
    _process = fn
    return fn


def on_timer(fn: TimerFn) -> TimerFn:
    """Register `fn(timer, ctx)`, called for each timer set with `ctx.set_timer` once
    its time has come. An exception fails the timer like a record, under the
    pipeline's error policy."""
    global _on_timer
    _on_timer = fn
    return fn


def init(fn: InitFn) -> InitFn:
    """Register `fn(config)`, called once per instance with the pipeline's config.

    Raise an exception to refuse a bad configuration; its message is the error.
    """
    global _init
    _init = fn
    return fn


def _log_at(level: _log.Level, message: str) -> None:
    _log.log(level, str(message))


def debug(message: str) -> None:
    _log_at(_log.Level.DEBUG, message)


def info(message: str) -> None:
    _log_at(_log.Level.INFO, message)


def warn(message: str) -> None:
    _log_at(_log.Level.WARN, message)


def error(message: str) -> None:
    _log_at(_log.Level.ERROR, message)


def _describe(exc: BaseException) -> str:
    """`Type: message`, the way Python prints the last line of a traceback."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class WitWorld(wit_world.WitWorld):
    """The component's exports; componentize-py instantiates this class."""

    def init(self, config: List[Tuple[str, str]]) -> None:
        global _config
        _config = dict(config)
        if _process is None:
            raise Err(
                "no transform registered: decorate your function with @weir.transform "
                "in the app module"
            )
        if _init is not None:
            try:
                _init(dict(_config))
            except Exception as exc:  # noqa: BLE001 - any exception refuses the config
                raise Err(_describe(exc)) from None

    def process(self, batch: _types.InputBatch) -> _types.OutputBatch:
        assert _process is not None, "init ran first and checked this"
        data = batch.data
        at = 0

        def take(length: int) -> Optional[bytes]:
            nonlocal at
            if length < 0:
                return None
            at += length
            return data[at - length : at]

        header_lens = iter(batch.header_lens)
        ctx = Context(config=_config)
        for index in range(len(batch.offsets)):
            headers = []
            for _ in range(batch.header_counts[index]):
                name = take(next(header_lens))
                headers.append((name.decode("utf-8"), take(next(header_lens))))
            record = Record(
                key=take(batch.key_lens[index]),
                value=take(batch.value_lens[index]),
                headers=headers,
                timestamp=batch.timestamps[index],
                topic=batch.topic,
                partition=batch.partition,
                offset=batch.offsets[index],
            )
            ctx._timestamp = record.timestamp
            ctx.watermark = batch.watermarks[index]
            try:
                _process(record, ctx)
            except Exception as exc:  # noqa: BLE001 - a record's failure is data, not a crash
                # The traceback goes to stderr, which the host logs; the message goes
                # back to the host as the record's error.
                traceback.print_exc(file=sys.stderr)
                raise Err(_types.RecordError(index=index, message=_describe(exc))) from None
        return ctx._outputs.batch()

    def on_timers(self, fired: _types.FiredTimers) -> _types.OutputBatch:
        processing = fired.domain == _types.TimeDomain.PROCESSING_TIME
        ctx = Context(config=_config, watermark=fired.watermark)
        keys = fired.keys
        at = 0
        for index, (time, length) in enumerate(zip(fired.times, fired.key_lens)):
            timer = Timer(at=time, key=bytes(keys[at : at + length]), processing=processing)
            at += length
            ctx._timestamp = time
            try:
                if _on_timer is None:
                    raise RuntimeError("a timer fired, but no function is registered with @weir.on_timer")
                _on_timer(timer, ctx)
            except Exception as exc:  # noqa: BLE001 - a timer's failure is data, not a crash
                traceback.print_exc(file=sys.stderr)
                raise Err(_types.RecordError(index=index, message=_describe(exc))) from None
        return ctx._outputs.batch()
