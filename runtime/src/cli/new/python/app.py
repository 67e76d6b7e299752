"""{{name}}: a Weir transform.

For every record: emit its value in upper case, keyed as the input, followed by how
many records with that key this partition has seen (kept in state under `seen/<key>`).
A record without a value is refused: the pipeline's error policy decides what happens
to it.
"""

import weir
from weir import WitWorld  # noqa: F401  (the component's exports)


@weir.transform
def process(record: weir.Record, ctx: weir.Context) -> None:
    if not record.value:
        raise ValueError("the record has no value")
    key = record.key or b""
    seen = ctx.state.get_json(b"seen/" + key, 0) + 1
    ctx.state.put_json(b"seen/" + key, seen)
    ctx.send(record.key, f"{record.value_str().upper()} #{seen}")
