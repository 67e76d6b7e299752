// Stateful word count: split each record's value into words, keep a count per word in
// state, and emit every word with its running count.
//
// State layout (shared by the word-count examples in every language, so a pipeline can
// swap one for another and keep its counts): key `count/<word>`, value the count as a
// JSON number.

import { transform } from "./weir.js";

let lowercase = true;

/**
 * Whether `c` belongs in a word: letters, digits and apostrophes, as the Rust example
 * splits. The engine is built without ICU, so Unicode property escapes (`\p{L}`) are
 * unavailable; outside ASCII a letter is a character that has case.
 */
function isWordChar(c) {
  return c === "'" || /[0-9A-Za-z]/.test(c) || (c > "\x7f" && c.toLowerCase() !== c.toUpperCase());
}

/** Runs of word characters. */
function* words(text) {
  let word = "";
  for (const c of text) {
    if (isWordChar(c)) {
      word += c;
    } else if (word) {
      yield word;
      word = "";
    }
  }
  if (word) yield word;
}

export const { init, process, onTimers } = transform(
  (record, ctx) => {
    for (let word of words(record.valueString())) {
      if (lowercase) word = word.toLowerCase();
      const count = ctx.state.getJson(`count/${word}`, 0) + 1;
      ctx.state.putJson(`count/${word}`, count);
      ctx.send(word, String(count));
    }
  },
  {
    init(config) {
      const value = config.lowercase ?? "true";
      if (value !== "true" && value !== "false") {
        throw new Error(`config "lowercase" must be "true" or "false", not "${value}"`);
      }
      lowercase = value === "true";
    },
  },
);
