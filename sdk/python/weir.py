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
from wit_world.imports import types as _types

__all__ = [
    "Context",
    "Record",
    "State",
    "WitWorld",
    "debug",
    "error",
    "info",
    "init",
    "transform",
    "warn",
]

Bytes = Union[bytes, str]

# Entries per host `scan` call; the host caps a page at 1024.
_SCAN_PAGE = 256


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
        self.put(key, json.dumps(value, separators=(",", ":")))

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
    """What a transform can do while it processes a record."""

    config: Dict[str, str]
    state: State = field(default_factory=State)
    _record: Optional[Record] = None
    _outputs: _Outputs = field(default_factory=_Outputs)

    def send(
        self,
        key: Optional[Bytes],
        value: Optional[Bytes],
        *,
        topic: Optional[str] = None,
        headers: Optional[Dict[str, Bytes]] = None,
        timestamp: Optional[int] = None,
    ) -> None:
        """Emit an output record (to the pipeline's output topic unless `topic` is set).

        Outputs take the input record's timestamp unless `timestamp` is given.
        """
        if timestamp is None and self._record is not None:
            timestamp = self._record.timestamp
        self._outputs.add(
            None if key is None else _as_bytes(key),
            None if value is None else _as_bytes(value),
            [(k, _as_bytes(v)) for k, v in (headers or {}).items()],
            topic,
            timestamp,
        )

    def send_json(self, key: Optional[Bytes], value: Any, **kwargs: Any) -> None:
        """Emit an output whose value is `value` as JSON text."""
        self.send(key, json.dumps(value, separators=(",", ":")), **kwargs)


ProcessFn = Callable[[Record, Context], None]
InitFn = Callable[[Dict[str, str]], None]

_process: Optional[ProcessFn] = None
_init: Optional[InitFn] = None
_config: Dict[str, str] = {}


def transform(fn: ProcessFn) -> ProcessFn:
    """Register `fn(record, ctx)` as the function called for every input record."""
    global _process
    _process = fn
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
            ctx._record = record
            try:
                _process(record, ctx)
            except Exception as exc:  # noqa: BLE001 - a record's failure is data, not a crash
                # The traceback goes to stderr, which the host logs; the message goes
                # back to the host as the record's error.
                traceback.print_exc(file=sys.stderr)
                raise Err(_types.RecordError(index=index, message=_describe(exc))) from None
        return ctx._outputs.batch()
