"""An enrichment join, as the Rust example does: orders (keyed by customer id) joined
with the pipeline's `customers` table, each sent on as
``{"order": <the order>, "customer": <the row>}`` under the customer id. Config:
``join`` = ``inner`` (the default: an order of an unknown customer is dropped) or
``left`` (it goes on with ``"customer": null``).
"""

import json

import weir
from weir import WitWorld  # noqa: F401  (the component's exports)

left = False


@weir.init
def configure(config: dict) -> None:
    global left
    join = config.get("join", "inner")
    if join not in ("inner", "left"):
        raise ValueError(f'join = {join!r}: use "inner" or "left"')
    left = join == "left"


@weir.transform
def process(record: weir.Record, ctx: weir.Context) -> None:
    if record.key is None:
        raise ValueError("an order needs its customer id as its key")
    customer = ctx.table("customers").get_json(record.key)
    if customer is None and not left:
        return
    ctx.send(record.key, json.dumps({"order": record.value_json(), "customer": customer}))
