// {{name}}: a Weir transform.
//
// For every record: emit its value in upper case, keyed as the input, followed by how
// many records with that key this partition has seen (kept in state under
// `seen/<key>`). A record without a value is refused: the pipeline's error policy
// decides what happens to it.

import { transform } from "./weir.js";

export const { init, process, onTimers } = transform((record, ctx) => {
  if (!record.value || record.value.length === 0) {
    throw new Error("the record has no value");
  }
  const key = `seen/${record.keyString() ?? ""}`;
  const seen = ctx.state.getJson(key, 0) + 1;
  ctx.state.putJson(key, seen);
  ctx.send(record.key, `${record.valueString().toUpperCase()} #${seen}`);
});
