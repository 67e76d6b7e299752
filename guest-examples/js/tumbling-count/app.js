// Counts records per key in tumbling event-time windows and emits each window's count
// once, when it closes (the watermark passes its end plus a grace period), as the Rust
// example does, with the same state: a pipeline can swap one for the other and keep
// its open windows. Config: `window_ms` (default one minute), `grace_ms` (default 10 s),
// `emit` (`close` or `update`), `late` (`drop`, `dead-letter` or `side-output:<topic>`).

import { transform, Windows } from "./weir.js";

let windows;

function send(ctx, results) {
  for (const r of results) {
    ctx.sendJson(r.key, { window_start: r.start, window_end: r.end, count: r.value });
  }
}

export const { init, process, onTimers } = transform((record, ctx) => send(ctx, windows.add(ctx, record)), {
  init(config) {
    windows = Windows.tumbling("count", Number(config.window_ms ?? "60000"), {
      graceMs: Number(config.grace_ms ?? "10000"),
      emit: config.emit ?? "close",
      late: config.late ?? "drop",
    });
  },
  onTimer: (timer, ctx) => send(ctx, windows.onTimer(ctx, timer) ?? []),
});
