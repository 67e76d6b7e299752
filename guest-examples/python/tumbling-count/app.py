"""Counts records per key in tumbling event-time windows and emits each window's count
once, when it closes (the watermark passes its end plus a grace period), as the Rust
example does, with the same state: a pipeline can swap one for the other and keep its
open windows. Config: `window_ms` (default one minute), `grace_ms` (default 10 s),
`emit` (`close` or `update`), `late` (`drop`, `dead-letter` or `side-output:<topic>`).
"""

import weir
from weir import WitWorld  # noqa: F401  (the component's exports)

windows = None


@weir.init
def configure(config: dict) -> None:
    global windows
    windows = weir.Windows.tumbling(
        "count",
        int(config.get("window_ms", "60000")),
        grace_ms=int(config.get("grace_ms", "10000")),
        emit=config.get("emit", "close"),
        late=config.get("late", "drop"),
    )


def send(ctx: weir.Context, results) -> None:
    for r in results:
        ctx.send_json(r.key, {"window_start": r.start, "window_end": r.end, "count": r.value})


@weir.transform
def process(record: weir.Record, ctx: weir.Context) -> None:
    send(ctx, windows.add(ctx, record))


@weir.on_timer
def timer(timer: weir.Timer, ctx: weir.Context) -> None:
    send(ctx, windows.on_timer(ctx, timer) or [])
