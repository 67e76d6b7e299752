// Write Weir stream transforms in JavaScript.
//
// Implement one function and hand it to `transform`; export what it returns from your
// app module, which ComponentizeJS turns into a component:
//
//     import { transform } from "./weir.js";
//
//     export const { init, process } = transform((record, ctx) => {
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
// This module only wraps the raw bindings of wit/ (weir:transform@0.2.2) in JavaScript
// types; it adds no behaviour the contract lacks.

import * as rawState from "weir:transform/state@0.2.2";
import { log as rawLog } from "weir:transform/log@0.2.2";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

// Entries per host `scan` call; the host caps a page at 1024.
const SCAN_PAGE = 256;

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

/** What a transform can do while it processes a record. */
export class Context {
  constructor(config) {
    /** The pipeline's transform config, as a plain object of strings. */
    this.config = config;
    this.state = state;
    this.outputs = new Outputs();
    this.record = undefined;
  }

  /**
   * Emit an output record (to the pipeline's output topic unless `topic` is set).
   * Outputs take the input record's timestamp unless `timestamp` is given.
   */
  send(key, value, { topic, headers, timestamp } = {}) {
    this.outputs.add(
      key === undefined || key === null ? undefined : toBytes(key, "an output key"),
      value === undefined || value === null ? undefined : toBytes(value, "an output value"),
      Object.entries(headers ?? {}).map(([k, v]) => [k, toBytes(v, "a header value")]),
      topic,
      timestamp === undefined ? this.record?.timestamp : BigInt(timestamp),
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
 * config; throw from it to refuse a bad configuration.
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
  };
}
