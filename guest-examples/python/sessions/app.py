"""User sessions, as the Rust example: a user's events at most `gap_ms` apart (default
30 minutes), chained, are one session, emitted once closed with its span, events and
page views (a JSON value with a `page` field). Same state layout as the Rust example.
Config: `gap_ms`, `grace_ms` (default 1 minute), `late`.
"""

import json

import weir
from weir import WitWorld  # noqa: F401  (the component's exports)

sessions = None


def add(activity, page_view):
    return {"events": activity["events"] + 1, "page_views": activity["page_views"] + int(page_view)}


def merge(activity, other):
    return {k: activity[k] + other[k] for k in ("events", "page_views")}


@weir.init
def configure(config: dict) -> None:
    global sessions
    sessions = weir.Windows.session(
        "session",
        int(config.get("gap_ms", str(30 * 60_000))),
        grace_ms=int(config.get("grace_ms", "60000")),
        late=config.get("late", "drop"),
        initial=lambda: {"events": 0, "page_views": 0},
        add=add,
        merge=merge,
    )


def is_page_view(record: weir.Record) -> bool:
    try:
        event = json.loads(record.value or b"")
    except ValueError:
        return False
    return isinstance(event, dict) and event.get("page") is not None


@weir.transform
def process(record: weir.Record, ctx: weir.Context) -> None:
    sessions.add(ctx, record, is_page_view(record))


@weir.on_timer
def timer(timer: weir.Timer, ctx: weir.Context) -> None:
    for closed in sessions.on_timer(ctx, timer) or []:
        ctx.send_json(
            closed.key,
            {
                "session_start": closed.start,
                "session_end": closed.end,
                "events": closed.value["events"],
                "page_views": closed.value["page_views"],
            },
        )
