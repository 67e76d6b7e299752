// A sliding fraud rule, as the Rust example: alert when a card has more than
// `max_events` payments (default 3) in any `window_ms` (default 5 minutes), once per
// burst. Same state layout and timers as the Rust example. Config: `window_ms`,
// `max_events`, `grace_ms` (default 10 s), `late`.

import { transform, Windows } from "./weir.js";

const encoder = new TextEncoder();
const ALERTED = encoder.encode("alerted/");
const FORGET = encoder.encode("forget/");
const rule = {};

const join = (a, b) => {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
};
const startsWith = (bytes, prefix) => bytes.length >= prefix.length && prefix.every((b, i) => bytes[i] === b);

function alert(ctx, closed) {
  if (closed.value <= rule.maxEvents) return;
  const lastEnd = ctx.state.getJson(join(ALERTED, closed.key));
  if (lastEnd !== undefined && closed.start < lastEnd) return;
  ctx.state.putJson(join(ALERTED, closed.key), closed.end);
  ctx.setTimer(closed.end + rule.windowMs + rule.graceMs, join(FORGET, closed.key));
  ctx.sendJson(closed.key, { window_start: closed.start, window_end: closed.end, events: closed.value });
}

export const { init, process, onTimers } = transform((record, ctx) => rule.windows.add(ctx, record), {
  init(config) {
    rule.windowMs = Number(config.window_ms ?? String(5 * 60_000));
    rule.graceMs = Number(config.grace_ms ?? "10000");
    rule.maxEvents = Number(config.max_events ?? "3");
    rule.windows = Windows.sliding("payments", rule.windowMs, { graceMs: rule.graceMs, late: config.late ?? "drop" });
  },
  onTimer(timer, ctx) {
    if (startsWith(timer.key, FORGET)) {
      const card = timer.key.slice(FORGET.length);
      const lastEnd = ctx.state.getJson(join(ALERTED, card));
      if (lastEnd !== undefined && BigInt(lastEnd + rule.windowMs + rule.graceMs) <= timer.at) {
        ctx.state.delete(join(ALERTED, card));
      }
      return;
    }
    for (const closed of rule.windows.onTimer(ctx, timer) ?? []) alert(ctx, closed);
  },
});
