"""Stateful word count: split each record's value into words, keep a count per word in
state, and emit every word with its running count.

State layout (shared by the word-count examples in every language, so a pipeline can
swap one for another and keep its counts): key `count/<word>`, value the count as a JSON
number.
"""

import weir
from weir import WitWorld  # noqa: F401  (the component's exports)

lowercase = True


@weir.init
def configure(config: dict) -> None:
    global lowercase
    value = config.get("lowercase", "true")
    if value not in ("true", "false"):
        raise ValueError(f'config "lowercase" must be "true" or "false", not {value!r}')
    lowercase = value == "true"


def words(text: str):
    """Runs of letters, digits and apostrophes, as the Rust example splits them."""
    word = []
    for c in text:
        if c.isalnum() or c == "'":
            word.append(c)
        elif word:
            yield "".join(word)
            word = []
    if word:
        yield "".join(word)


@weir.transform
def process(record: weir.Record, ctx: weir.Context) -> None:
    for word in words(record.value_str()):
        if lowercase:
            word = word.lower()
        count = ctx.state.get_json(f"count/{word}", 0) + 1
        ctx.state.put_json(f"count/{word}", count)
        ctx.send(word, str(count))
