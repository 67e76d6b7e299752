// Write Weir stream transforms in JavaScript.
//
// Implement one function and hand it to `transform`; export what it returns from your
// app module, which ComponentizeJS turns into a component:
//
//     import { transform } from "./weir.js";
//
//     export const { init, process, onTimers } = transform((record, ctx) => {
//       for (const word of record.valueString().split(/\s+/).filter(Boolean)) {
//         const count = ctx.state.getJson(`count/${word}`, 0) + 1;
//         ctx.state.putJson(`count/${word}`, count);
//         ctx.send(word, String(count));
//       }
//     });
//
// An exception thrown for a record fails that record only: the host discards its state
// writes and outputs and applies the pipeline's error policy, with the exception's
// message as the error. An exception in the `init` option refuses the module.
//
// Event time (contract 0.3): `ctx.watermark` is the watermark the record meets,
// `ctx.setTimer(at, key)` asks for a call of `options.onTimer(timer, ctx)` once the
// watermark reaches `at` (`{ processing: true }`: the wall clock), and `Windows`
// aggregates per key in tumbling, hopping, sliding or session windows with the Rust
// SDK's rules and state layout (a hot swap between them keeps the open windows).
//
// This module wraps the raw bindings of wit/ (weir:transform@0.3.1) in JavaScript
// types; apart from `Windows`, a library over state and timers, it adds no behaviour
// the contract lacks.

import * as rawState from "weir:transform/state@0.3.1";
import * as rawTimers from "weir:transform/timers@0.3.1";
import * as rawTables from "weir:transform/tables@0.3.1";
import { log as rawLog } from "weir:transform/log@0.3.1";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

// Entries per host `scan` call; the host caps a page at 1024.
const SCAN_PAGE = 256;

/** The watermark before any record with a timestamp: the beginning of time. */
export const NO_WATERMARK = -(2n ** 63n);

/** Keys and values are bytes on the wire; a string is sent as UTF-8. */
function toBytes(data, what) {
  if (data instanceof Uint8Array) return data;
  if (typeof data === "string") return encoder.encode(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  throw new TypeError(`${what} must be a string or bytes, not ${typeof data}`);
}

function toText(bytes, what) {
  if (bytes === undefined || bytes === null) return "";
  try {
    return decoder.decode(bytes);
  } catch {
    throw new TypeError(`the record's ${what} is not UTF-8 text`);
  }
}

/** One input record, as consumed from Kafka. */
export class Record {
  constructor(fields) {
    /** @type {Uint8Array | undefined} */
    this.key = fields.key;
    /** @type {Uint8Array | undefined} */
    this.value = fields.value;
    /** @type {Array<[string, Uint8Array]>} */
    this.headers = fields.headers;
    /** Milliseconds since the Unix epoch (a BigInt). */
    this.timestamp = fields.timestamp;
    this.topic = fields.topic;
    this.partition = fields.partition;
    /** A BigInt. */
    this.offset = fields.offset;
  }

  /** The value as UTF-8 text ("" when the record has no value). */
  valueString() {
    return toText(this.value, "value");
  }

  /** The key as UTF-8 text, or undefined when the record has no key. */
  keyString() {
    return this.key === undefined ? undefined : toText(this.key, "key");
  }

  /** The value parsed as JSON. */
  valueJson() {
    return JSON.parse(this.valueString());
  }

  /** The value of the first header called `name`, or undefined. */
  header(name) {
    const found = this.headers.find(([key]) => key === name);
    return found === undefined ? undefined : found[1];
  }
}

/**
 * The partition's keyed state, owned by the host. Writes are buffered by the host and
 * become durable at the next checkpoint, together with the input offsets they belong
 * to. Keys and values are bytes; a string is stored as its UTF-8 bytes.
 */
export const state = {
  /** @returns {Uint8Array | undefined} */
  get(key) {
    return rawState.get(toBytes(key, "a state key"));
  },
  put(key, value) {
    rawState.put(toBytes(key, "a state key"), toBytes(value, "a state value"));
  },
  delete(key) {
    rawState.delete(toBytes(key, "a state key"));
  },
  /** The JSON value under `key`, or `fallback` when there is none. */
  getJson(key, fallback = undefined) {
    const raw = this.get(key);
    return raw === undefined ? fallback : JSON.parse(toText(raw, "state value"));
  },
  putJson(key, value) {
    this.put(key, JSON.stringify(value));
  },
  /** Every [key, value] whose key starts with `prefix`, in ascending key order. */
  *scan(prefix = "") {
    const p = toBytes(prefix, "a prefix");
    let after = undefined;
    for (;;) {
      const page = rawState.scan(p, after, SCAN_PAGE);
      for (const entry of page) yield [entry.key, entry.value];
      if (page.length < SCAN_PAGE) return;
      after = page[page.length - 1].key;
    }
  },
};

/**
 * A table the pipeline declares (`[pipelines.NAME.tables.<name>]`): a compacted topic
 * the host keeps materialized for this partition, as of the record's timestamp. Read
 * only. A stream-table join is a lookup by the record's key: an inner join skips a
 * record without a row, a left join goes on with `undefined`.
 */
export class Table {
  constructor(name) {
    this.name = String(name);
  }
  /** The row of `key` (the table topic's latest value for it). @returns {Uint8Array | undefined} */
  get(key) {
    return rawTables.get(this.name, toBytes(key, "a table key"));
  }
  /** The row of `key` read as JSON, or `fallback` when there is none. */
  getJson(key, fallback = undefined) {
    const raw = this.get(key);
    return raw === undefined ? fallback : JSON.parse(toText(raw, "table row"));
  }
  /** Every [key, row] whose key starts with `prefix`, in ascending key order. */
  *scan(prefix = "") {
    const p = toBytes(prefix, "a prefix");
    let after = undefined;
    for (;;) {
      const page = rawTables.scan(this.name, p, after, SCAN_PAGE);
      for (const entry of page) yield [entry.key, entry.value];
      if (page.length < SCAN_PAGE) return;
      after = page[page.length - 1].key;
    }
  }
}

/** Log into Weir's logs, tagged with pipeline, partition and module. */
export const log = {
  debug: (message) => rawLog("debug", String(message)),
  info: (message) => rawLog("info", String(message)),
  warn: (message) => rawLog("warn", String(message)),
  error: (message) => rawLog("error", String(message)),
};

/**
 * The records of an input batch: a list per field and every byte in one buffer (see
 * wit/transform.wit). Keys, values and header values are views into that buffer.
 */
function* records(batch) {
  const data = batch.data;
  let at = 0;
  const take = (length) => {
    if (length < 0) return undefined;
    at += length;
    return data.subarray(at - length, at);
  };
  let header = 0;
  for (let i = 0; i < batch.offsets.length; i++) {
    const headers = [];
    for (let h = 0; h < batch.headerCounts[i]; h++) {
      const name = decoder.decode(take(batch.headerLens[header++]));
      headers.push([name, take(batch.headerLens[header++])]);
    }
    yield new Record({
      headers,
      key: take(batch.keyLens[i]),
      value: take(batch.valueLens[i]),
      timestamp: batch.timestamps[i],
      topic: batch.topic,
      partition: batch.partition,
      offset: batch.offsets[i],
    });
  }
}

/** Outputs of a batch, laid out as the contract's output batch. */
class Outputs {
  constructor() {
    this.keyLens = [];
    this.valueLens = [];
    this.topicLens = [];
    this.timestamps = [];
    this.headerCounts = [];
    this.headerLens = [];
    this.chunks = [];
    this.length = 0;
  }

  push(bytes) {
    if (bytes === undefined) return -1;
    this.chunks.push(bytes);
    this.length += bytes.length;
    return bytes.length;
  }

  add(key, value, headers, topic, timestamp) {
    this.headerCounts.push(headers.length);
    for (const [name, bytes] of headers) {
      this.headerLens.push(this.push(encoder.encode(name)));
      this.headerLens.push(this.push(bytes));
    }
    this.keyLens.push(this.push(key));
    this.valueLens.push(this.push(value));
    this.topicLens.push(this.push(topic === undefined ? undefined : encoder.encode(topic)));
    this.timestamps.push(timestamp === undefined ? -1n : timestamp);
  }

  batch() {
    const data = new Uint8Array(this.length);
    let at = 0;
    for (const chunk of this.chunks) {
      data.set(chunk, at);
      at += chunk.length;
    }
    return {
      keyLens: Int32Array.from(this.keyLens),
      valueLens: Int32Array.from(this.valueLens),
      topicLens: Int32Array.from(this.topicLens),
      timestamps: BigInt64Array.from(this.timestamps),
      headerCounts: Uint32Array.from(this.headerCounts),
      headerLens: Uint32Array.from(this.headerLens),
      data,
    };
  }
}

/** A timer that fired: `key` at `at` (ms since the epoch, a BigInt), in event time or,
 * with `processing`, the wall clock. */
export class Timer {
  constructor(at, key, processing) {
    this.at = at;
    /** @type {Uint8Array} */
    this.key = key;
    this.processing = processing;
  }
}

const domain = (processing) => (processing ? "processing-time" : "event-time");

/** What a transform can do while it processes a record or a fired timer. */
export class Context {
  constructor(config) {
    /** The pipeline's transform config, as a plain object of strings. */
    this.config = config;
    this.state = state;
    this.outputs = new Outputs();
    this.record = undefined;
    /** The partition's watermark as this record arrives or this timer fires (a
     * BigInt): every record older than it is late. NO_WATERMARK before any. */
    this.watermark = NO_WATERMARK;
    /** The default timestamp of outputs: the record's, or the timer's. */
    this.timestamp = undefined;
  }

  /** The pipeline's table `name`, to join records with (see `Table`). */
  table(name) {
    return new Table(name);
  }

  /** Whether an event at `timestamp` (a number or BigInt) is older than the watermark. */
  isLate(timestamp) {
    return BigInt(timestamp) < this.watermark;
  }

  /** Have `options.onTimer` called with `key` once the watermark (with `processing`,
   * the wall clock) reaches `at`. Setting one twice is one timer; timers are state,
   * kept across restarts and hot swaps. */
  setTimer(at, key, { processing = false } = {}) {
    rawTimers.set(domain(processing), BigInt(at), toBytes(key, "a timer key"));
  }

  /** Cancel a timer; cancelling one that is not set does nothing. */
  deleteTimer(at, key, { processing = false } = {}) {
    rawTimers.delete(domain(processing), BigInt(at), toBytes(key, "a timer key"));
  }

  /**
   * Emit an output record (to the pipeline's output topic unless `topic` is set).
   * Outputs take the input record's timestamp (a timer's, in `onTimer`) unless
   * `timestamp` is given. `headers` is an object or a list of [name, value] pairs.
   */
  send(key, value, { topic, headers, timestamp } = {}) {
    this.outputs.add(
      key === undefined || key === null ? undefined : toBytes(key, "an output key"),
      value === undefined || value === null ? undefined : toBytes(value, "an output value"),
      (Array.isArray(headers) ? headers : Object.entries(headers ?? {})).map(([k, v]) => [k, toBytes(v, "a header value")]),
      topic,
      timestamp === undefined ? this.timestamp : BigInt(timestamp),
    );
  }

  /** Emit an output whose value is `value` as JSON text. */
  sendJson(key, value, options) {
    this.send(key, JSON.stringify(value), options);
  }
}

/** `Name: message`, the way an uncaught exception is printed. */
function describe(error) {
  if (error instanceof Error) return error.message ? `${error.name}: ${error.message}` : error.name;
  return String(error);
}

/**
 * Build the component's exports from `process(record, ctx)`, called for every input
 * record. `options.init(config)`, if given, runs once per instance with the pipeline's
 * config; throw from it to refuse a bad configuration. `options.onTimer(timer, ctx)`
 * is called for each timer that fires. Export all three: `export const { init,
 * process, onTimers } = transform(...)`.
 */
export function transform(process, options = {}) {
  if (typeof process !== "function") {
    throw new TypeError("transform() takes the function to call for each record");
  }
  let config = {};
  return {
    init(pairs) {
      config = Object.fromEntries(pairs);
      if (options.init) {
        try {
          options.init({ ...config });
        } catch (error) {
          // ComponentizeJS turns a thrown value into the `err` case of the result.
          throw describe(error);
        }
      }
    },
    process(batch) {
      const ctx = new Context(config);
      let index = 0;
      for (const record of records(batch)) {
        ctx.record = record;
        ctx.timestamp = record.timestamp;
        ctx.watermark = batch.watermarks[index];
        try {
          process(record, ctx);
        } catch (error) {
          // The stack goes to stderr, which the host logs; the message goes back to
          // the host as the record's error.
          console.error(error instanceof Error && error.stack ? `${describe(error)}\n${error.stack}` : describe(error));
          throw { index, message: describe(error) };
        }
        index++;
      }
      return ctx.outputs.batch();
    },
    onTimers(fired) {
      const ctx = new Context(config);
      ctx.watermark = fired.watermark;
      const processing = fired.domain === "processing-time";
      let at = 0;
      for (let index = 0; index < fired.times.length; index++) {
        const length = fired.keyLens[index];
        const timer = new Timer(fired.times[index], fired.keys.slice(at, at + length), processing);
        at += length;
        ctx.timestamp = timer.at;
        try {
          if (!options.onTimer) {
            throw new Error("a timer fired, but transform() got no onTimer option");
          }
          options.onTimer(timer, ctx);
        } catch (error) {
          console.error(error instanceof Error && error.stack ? `${describe(error)}\n${error.stack}` : describe(error));
          throw { index, message: describe(error) };
        }
      }
      return ctx.outputs.batch();
    },
  };
}

/** A window's value, as emitted: `final` once the window has closed. */
export class WindowResult {
  constructor(key, start, end, value, final) {
    /** @type {Uint8Array} */
    this.key = key;
    /** Milliseconds since the epoch, as numbers. */
    this.start = start;
    this.end = end;
    this.value = value;
    this.final = final;
  }
}

const CLOSE = "c".charCodeAt(0);
const RETENTION = "r".charCodeAt(0);

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function i64(n) {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigInt64(0, BigInt(n));
  return bytes;
}

function startsWith(bytes, prefix) {
  return bytes.length >= prefix.length && prefix.every((b, i) => bytes[i] === b);
}

/**
 * Windowed aggregation per record key over event time, as the Rust SDK's
 * `weir_sdk::window` does it (same rules, same state layout). Make one with
 * `Windows.tumbling(name, sizeMs, options)`, `.hopping(name, sizeMs, advanceMs,
 * options)`, `.sliding(name, sizeMs, options)` or `.session(name, gapMs, options)`;
 * call `add(ctx, record, input)` for each record and `onTimer(ctx, timer)` for each
 * timer (undefined for a timer that is not this aggregate's). Options: `graceMs`,
 * `emit` ("close" or "update"), `late` ("drop", "dead-letter" or
 * "side-output:<topic>"), and the aggregate: `initial()`, `add(value, input)`,
 * `merge(value, other)` (a count by default). Times are numbers of milliseconds.
 */
export class Windows {
  constructor(name, kind, size, advance, options = {}) {
    const { emit = "close", late = "drop" } = options;
    const graceMs = Number(options.graceMs ?? 0);
    size = Number(size);
    advance = Number(advance);
    for (const [what, ms] of [["size", size], ["advance", advance], ["grace", graceMs]]) {
      if (!Number.isSafeInteger(ms)) {
        throw new Error(`a window's ${what} must be a whole number of milliseconds, not ${ms}`);
      }
    }
    if (!name || name.includes("/")) {
      throw new Error(`a windowed aggregate's name must be non-empty and without '/', not ${JSON.stringify(name)}`);
    }
    if (!(size > 0 && advance > 0)) {
      throw new Error(`a window's size, advance or gap must be a positive number of milliseconds, not ${size}/${advance}`);
    }
    if (advance > size) {
      throw new Error(
        `a hopping window's advance (${advance} ms) is longer than its size (${size} ms): records between windows would be lost; use an advance of at most the size`,
      );
    }
    if (emit !== "close" && emit !== "final" && emit !== "update") {
      throw new Error(`unknown emit mode ${JSON.stringify(emit)}: use 'update' or 'close'`);
    }
    if (!(late === "drop" || late === "dead-letter" || (late.startsWith("side-output:") && late.length > 12))) {
      throw new Error(`unknown late-record policy ${JSON.stringify(late)}: use 'drop', 'dead-letter' or 'side-output:<topic>'`);
    }
    this.name = encoder.encode(name);
    this.kind = kind;
    this.size = size;
    this.advance = advance;
    this.grace = Math.max(graceMs, 0);
    this.onUpdate = emit === "update";
    this.late = late;
    this.initial = options.initial ?? (() => 0);
    this.addTo = options.add ?? ((value) => value + 1);
    this.mergeInto = options.merge ?? ((value, other) => value + other);
  }

  static tumbling(name, sizeMs, options) {
    return new Windows(name, "fixed", sizeMs, sizeMs, options);
  }

  static hopping(name, sizeMs, advanceMs, options) {
    return new Windows(name, "fixed", sizeMs, advanceMs, options);
  }

  /** The window of `sizeMs` ending at each record: [t - size + 1, t + 1). */
  static sliding(name, sizeMs, options) {
    return new Windows(name, "sliding", sizeMs, sizeMs, options);
  }

  static session(name, gapMs, options) {
    return new Windows(name, "session", gapMs, gapMs, options);
  }

  stateKey(kind, key) {
    return concat(this.name, encoder.encode(`/${kind}/`), key);
  }

  timerKey(kind, start, key) {
    return concat(this.name, new Uint8Array([0x2f, kind]), i64(start), key);
  }

  /** Add `record` with its contribution `input`: the updated windows under
   * emit "update", else none. */
  add(ctx, record, input = null) {
    const t = Number(record.timestamp);
    if (t < 0 || !Number.isSafeInteger(t)) {
      throw new Error(
        `the record at offset ${record.offset} has no timestamp (${t}): windows need event time; have the producer set record timestamps`,
      );
    }
    const key = record.key ?? new Uint8Array(0);
    const watermark = ctx.watermark;
    let added;
    if (this.kind === "fixed") added = this.addFixed(ctx, key, t, input, watermark);
    else if (this.kind === "sliding") added = this.addSliding(ctx, key, t, input, watermark);
    else added = this.addSession(ctx, key, t, input, watermark);
    if (added.close !== undefined) this.lateRecord(ctx, record, added.close);
    return added.results;
  }

  addFixed(ctx, key, t, input, watermark) {
    const results = [];
    const last = t - (((t % this.advance) + this.advance) % this.advance);
    const starts = [];
    for (let start = last; start > t - this.size; start -= this.advance) starts.unshift(start);
    let added = false;
    let close;
    for (const start of starts) {
      const end = start + this.size;
      close = end + this.grace;
      if (BigInt(close) <= watermark) continue;
      added = true;
      const stateKey = this.stateKey("w", concat(i64(start), key));
      const value = this.addTo(ctx.state.getJson(stateKey, this.initial()), input);
      ctx.state.putJson(stateKey, value);
      ctx.setTimer(close, this.timerKey(CLOSE, start, key));
      if (this.onUpdate) results.push(new WindowResult(key, start, end, value, false));
    }
    return { results, close: added ? undefined : close };
  }

  fold(events, start, end) {
    let value = this.initial();
    for (const [time, input] of events) {
      if (start <= time && time < end) value = this.addTo(value, input);
    }
    return value;
  }

  addSliding(ctx, key, t, input, watermark) {
    const end = t + 1;
    const close = end + this.grace;
    if (BigInt(close) <= watermark) return { results: [], close };
    const stateKey = this.stateKey("e", key);
    const events = ctx.state.getJson(stateKey, []);
    let at = events.length;
    while (at > 0 && events[at - 1][0] > t) at--;
    events.splice(at, 0, [t, input]);
    ctx.state.putJson(stateKey, events);
    ctx.setTimer(close, this.timerKey(CLOSE, end - this.size, key));
    const results = [];
    if (this.onUpdate) {
      const ends = [...new Set(events.map(([time]) => time).filter((time) => t <= time && time < t + this.size))];
      ends.sort((a, b) => a - b);
      for (const last of ends) {
        const start = last + 1 - this.size;
        results.push(new WindowResult(key, start, last + 1, this.fold(events, start, last + 1), false));
      }
    }
    return { results };
  }

  keepNeeded(ctx, key, events, at) {
    const first = at - this.grace - this.size + 1;
    const kept = events.filter(([time]) => time >= first);
    const stateKey = this.stateKey("e", key);
    if (kept.length === 0) {
      ctx.state.delete(stateKey);
      return;
    }
    ctx.state.putJson(stateKey, kept);
    const newest = kept[kept.length - 1][0];
    ctx.setTimer(newest + this.size + this.grace, this.timerKey(RETENTION, newest, key));
  }

  sessionClose(end) {
    return end + this.size + this.grace;
  }

  addSession(ctx, key, t, input, watermark) {
    const gap = this.size;
    const stateKey = this.stateKey("s", key);
    // A session past its close is one whose close timer failed: gone.
    let sessions = ctx.state.getJson(stateKey, []).filter((s) => BigInt(this.sessionClose(s.window.end)) > watermark);
    const reached = sessions.filter((s) => s.window.start - gap <= t && t < s.window.end + gap);
    if (reached.length === 0 && BigInt(this.sessionClose(t + 1)) <= watermark) {
      return { results: [], close: this.sessionClose(t + 1) };
    }
    let start = t;
    let end = t + 1;
    let value;
    if (reached.length > 0) {
      start = Math.min(t, reached[0].window.start);
      end = Math.max(t + 1, ...reached.map((s) => s.window.end));
      value = reached[0].value;
      for (const other of reached.slice(1)) value = this.mergeInto(value, other.value);
      for (const old of reached) {
        ctx.deleteTimer(this.sessionClose(old.window.end), this.timerKey(CLOSE, old.window.start, key));
      }
      sessions = sessions.filter((s) => !reached.includes(s));
    } else {
      value = this.initial();
    }
    value = this.addTo(value, input);
    sessions.push({ window: { start, end }, value });
    sessions.sort((a, b) => a.window.start - b.window.start);
    ctx.setTimer(this.sessionClose(end), this.timerKey(CLOSE, start, key));
    ctx.state.putJson(stateKey, sessions);
    return { results: this.onUpdate ? [new WindowResult(key, start, end, value, false)] : [] };
  }

  /** Close the window of `timer` if it is this aggregate's (undefined if not): its
   * value under emit "close", else none; its state goes either way. */
  onTimer(ctx, timer) {
    const prefix = concat(this.name, new Uint8Array([0x2f]));
    if (timer.processing || !startsWith(timer.key, prefix) || timer.key.length < prefix.length + 9) {
      return undefined;
    }
    const kind = timer.key[prefix.length];
    if (kind !== CLOSE && kind !== RETENTION) return undefined;
    const startBytes = timer.key.slice(prefix.length + 1, prefix.length + 9);
    const start = Number(new DataView(startBytes.buffer).getBigInt64(0));
    const key = timer.key.slice(prefix.length + 9);
    const at = Number(timer.at);
    let closed;
    if (this.kind === "sliding") {
      const events = ctx.state.getJson(this.stateKey("e", key));
      if (events !== undefined) {
        if (kind === CLOSE) closed = [start, start + this.size, this.fold(events, start, start + this.size)];
        this.keepNeeded(ctx, key, events, at);
      }
    } else if (kind === RETENTION) {
      // Only sliding windows keep records past their windows.
    } else if (this.kind === "fixed") {
      const stateKey = this.stateKey("w", concat(i64(start), key));
      const value = ctx.state.getJson(stateKey);
      ctx.state.delete(stateKey);
      if (value !== undefined) closed = [start, start + this.size, value];
    } else {
      const stateKey = this.stateKey("s", key);
      const sessions = ctx.state.getJson(stateKey, []);
      const index = sessions.findIndex((s) => s.window.start === start && this.sessionClose(s.window.end) === at);
      if (index >= 0) {
        const [session] = sessions.splice(index, 1);
        if (sessions.length > 0) ctx.state.putJson(stateKey, sessions);
        else ctx.state.delete(stateKey);
        closed = [session.window.start, session.window.end, session.value];
      }
    }
    if (closed === undefined || this.onUpdate) return [];
    return [new WindowResult(key, closed[0], closed[1], closed[2], true)];
  }

  lateRecord(ctx, record, close) {
    if (this.late === "drop") return;
    if (this.late === "dead-letter") {
      throw new Error(
        `late record: its window of ${decoder.decode(this.name)} closed at ${close}, and the watermark is ${ctx.watermark}`,
      );
    }
    ctx.send(record.key, record.value, {
      topic: this.late.slice("side-output:".length),
      headers: record.headers,
      timestamp: record.timestamp,
    });
  }

  /** Emit `results` as the Rust SDK's `send_json` does, each under its key:
   * `{"window_start", "window_end", "value", "final"}`. */
  sendJson(ctx, results) {
    for (const r of results) {
      ctx.sendJson(r.key, { window_start: r.start, window_end: r.end, value: r.value, final: r.final });
    }
  }
}
