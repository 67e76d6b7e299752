#!/usr/bin/env bash
# Quickstart: build Weir and the word-count example, then run it twice over the sample
# text with `weir test`, keeping state between the runs so the counts carry on.
set -euo pipefail
cd "$(dirname "$0")/.."

export WEIR_CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$WEIR_CACHE/target}"

scripts/setup.sh
# The same package selection as scripts/test.sh, so the two share one build: a different
# selection unifies features differently and recompiles RocksDB.
echo "== building weir (a first build compiles RocksDB and wasmtime: ~15 minutes on 2 cores)"
cargo build --locked --workspace --all-targets
scripts/build-guests.sh >/dev/null

weir="$CARGO_TARGET_DIR/debug/weir"
module="$CARGO_TARGET_DIR/guests/wasm32-wasip2/release/weir_example_word_count.wasm"
fixtures=guest-examples/fixtures/word-count
state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT

echo
echo "== input"
cat "$fixtures/input.jsonl"
echo
echo "== first run: word counts, checked against $fixtures/expected.jsonl"
"$weir" test "$module" --input "$fixtures/input.jsonl" --expect "$fixtures/expected.jsonl" --state-dir "$state"
echo
echo "== second run over the same text: the counts continue from the state in $state"
"$weir" test "$module" --input "$fixtures/input.jsonl" --expect "$fixtures/expected-second-run.jsonl" \
    --state-dir "$state" | grep '"weir"'
