"""A sliding fraud rule, as the Rust example: alert when a card has more than
`max_events` payments (default 3) in any `window_ms` (default 5 minutes), once per
burst. Same state layout and timers as the Rust example. Config: `window_ms`,
`max_events`, `grace_ms` (default 10 s), `late`.
"""

import weir
from weir import WitWorld  # noqa: F401  (the component's exports)

ALERTED = b"alerted/"
FORGET = b"forget/"
rule = {}


@weir.init
def configure(config: dict) -> None:
    window_ms = int(config.get("window_ms", str(5 * 60_000)))
    grace_ms = int(config.get("grace_ms", "10000"))
    rule["windows"] = weir.Windows.sliding("payments", window_ms, grace_ms=grace_ms, late=config.get("late", "drop"))
    rule["window_ms"] = window_ms
    rule["grace_ms"] = grace_ms
    rule["max_events"] = int(config.get("max_events", "3"))


@weir.transform
def process(record: weir.Record, ctx: weir.Context) -> None:
    rule["windows"].add(ctx, record)


def alert(ctx: weir.Context, closed: weir.WindowResult) -> None:
    if closed.value <= rule["max_events"]:
        return
    last_end = ctx.state.get_json(ALERTED + closed.key)
    if last_end is not None and closed.start < last_end:
        return
    ctx.state.put_json(ALERTED + closed.key, closed.end)
    ctx.set_timer(closed.end + rule["window_ms"] + rule["grace_ms"], FORGET + closed.key)
    ctx.send_json(closed.key, {"window_start": closed.start, "window_end": closed.end, "events": closed.value})


@weir.on_timer
def timer(timer: weir.Timer, ctx: weir.Context) -> None:
    if timer.key.startswith(FORGET):
        card = timer.key[len(FORGET) :]
        last_end = ctx.state.get_json(ALERTED + card)
        if last_end is not None and last_end + rule["window_ms"] + rule["grace_ms"] <= timer.at:
            ctx.state.delete(ALERTED + card)
        return
    for closed in rule["windows"].on_timer(ctx, timer) or []:
        alert(ctx, closed)
