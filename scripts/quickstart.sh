#!/usr/bin/env bash
# Quickstart: build Weir and the word-count example, start `weir serve` on the embedded
# Kafka broker, produce some text, and show the counts coming out and the state behind
# them. Nothing to install beyond what scripts/setup.sh sets up.
set -euo pipefail
cd "$(dirname "$0")/.."

export WEIR_CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$WEIR_CACHE/target}"

scripts/setup.sh
# The same package selection as scripts/test.sh, so the two share one build: a different
# selection unifies features differently and recompiles RocksDB.
echo "== building weir (a first build compiles RocksDB, librdkafka and wasmtime: ~20 minutes on 2 cores)"
cargo build --locked --workspace --all-targets
scripts/build-guests.sh >/dev/null

weir="$CARGO_TARGET_DIR/debug/weir"
module="$CARGO_TARGET_DIR/guests/wasm32-wasip2/release/weir_example_word_count.wasm"
work=$(mktemp -d)
serve_pid=
cleanup() {
    [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/weir.toml" <<TOML
data_dir = "data"

[kafka]
brokers = "embedded"          # an in-process Kafka broker; use "host:9092" for a real one
embedded.partitions = 1       # word counts are per partition: one partition, one total

[admin]
listen = "127.0.0.1:0"        # any free port; written to data/admin-url

[pipelines.word-count]
module = "$module"
inputs = ["text"]
output = "counts"
TOML

echo
echo "== config ($work/weir.toml)"
cat "$work/weir.toml"
echo
echo "== starting weir serve (log: $work/weir.log)"
"$weir" serve -c "$work/weir.toml" >"$work/weir.log" 2>&1 &
serve_pid=$!
for _ in $(seq 1 300); do
    grep -q "partition running" "$work/weir.log" 2>/dev/null && break
    kill -0 "$serve_pid" 2>/dev/null || { cat "$work/weir.log"; exit 1; }
    sleep 0.1
done
brokers=$(cat "$work/data/embedded-brokers")
echo "embedded broker at $brokers: any Kafka client can produce to it"

echo
echo "== producing text to topic 'text'"
# Shown and produced from one variable: `tee /dev/stderr` would reopen (and truncate) a
# log file that stderr is redirected to.
text="The river runs to the weir
and the weir holds the river back.
Water over the weir, water under the bridge"
printf '%s\n' "$text"
printf '%s\n' "$text" | "$weir" produce --brokers "$brokers" --topic text

echo
echo "== counts coming out of topic 'counts' (one record per word seen: word -> count so far)"
"$weir" consume --brokers "$brokers" --topic counts --idle-ms 3000

echo
echo "== the running daemon, through its admin API (weir status, weir state get)"
WEIR_ADMIN_URL=$(cat "$work/data/admin-url")
export WEIR_ADMIN_URL
"$weir" status
printf 'count of "weir": '
"$weir" state get word-count count/weir --partition 0

echo
echo "== stopping weir (SIGTERM: every partition checkpoints first)"
kill -TERM "$serve_pid"
wait "$serve_pid"
serve_pid=

echo
echo "== the state they came from: partition 0's RocksDB store"
"$weir" state dump "$work/data/pipelines/word-count/state/text-0"
