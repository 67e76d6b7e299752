// An enrichment join, as the Rust example does: orders (keyed by customer id) joined
// with the pipeline's `customers` table, each sent on as
// `{"order": <the order>, "customer": <the row>}` under the customer id. Config: `join`
// = `inner` (the default: an order of an unknown customer is dropped) or `left` (it
// goes on with `"customer": null`).

import { transform } from "./weir.js";

let left = false;

export const { init, process, onTimers } = transform(
  (record, ctx) => {
    if (record.key === undefined) throw new Error("an order needs its customer id as its key");
    const customer = ctx.table("customers").getJson(record.key);
    if (customer === undefined && !left) return;
    ctx.sendJson(record.key, { order: record.valueJson(), customer: customer ?? null });
  },
  {
    init(config) {
      const join = config.join ?? "inner";
      if (join !== "inner" && join !== "left") throw new Error(`join = "${join}": use "inner" or "left"`);
      left = join === "left";
    },
  },
);
