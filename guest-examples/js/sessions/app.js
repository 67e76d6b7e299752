// User sessions, as the Rust example: a user's events at most `gap_ms` apart (default
// 30 minutes), chained, are one session, emitted once closed with its span, events and
// page views (a JSON value with a `page` field). Same state layout as the Rust example.
// Config: `gap_ms`, `grace_ms` (default 1 minute), `late`.

import { transform, Windows } from "./weir.js";

let sessions;

function isPageView(record) {
  try {
    const event = JSON.parse(record.valueString());
    return event !== null && typeof event === "object" && event.page !== undefined && event.page !== null;
  } catch {
    return false;
  }
}

export const { init, process, onTimers } = transform((record, ctx) => sessions.add(ctx, record, isPageView(record)), {
  init(config) {
    sessions = Windows.session("session", Number(config.gap_ms ?? String(30 * 60_000)), {
      graceMs: Number(config.grace_ms ?? "60000"),
      late: config.late ?? "drop",
      initial: () => ({ events: 0, page_views: 0 }),
      add: (a, pageView) => ({ events: a.events + 1, page_views: a.page_views + (pageView ? 1 : 0) }),
      merge: (a, b) => ({ events: a.events + b.events, page_views: a.page_views + b.page_views }),
    });
  },
  onTimer(timer, ctx) {
    for (const closed of sessions.onTimer(ctx, timer) ?? []) {
      ctx.sendJson(closed.key, {
        session_start: closed.start,
        session_end: closed.end,
        events: closed.value.events,
        page_views: closed.value.page_views,
      });
    }
  },
});
