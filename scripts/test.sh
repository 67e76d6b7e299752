#!/usr/bin/env bash
# Weir's whole test suite, from a fresh machine: installs the toolchain pieces, builds
# the guest components, runs every test and the lints.
#
# Build outputs go to $WEIR_CACHE (default ~/.cache/weir), outside the clone, so a
# second run reuses them: a cold run compiles RocksDB, librdkafka and wasmtime and
# fetches Apache Kafka's jars, a warm one takes a few minutes (the Kafka end-to-end
# tests dominate). The end-to-end suites share one Kafka broker, started here after the
# builds (so its JVM does not compete with them) and stopped on exit; a failover test
# starts its own three-broker cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

export WEIR_CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$WEIR_CACHE/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n== %s (%s)\n' "$1" "$(date +%T)"; }

step "setup"
scripts/setup.sh
scripts/kafka.sh install

# Every build of the workspace leaves its own test binaries in the cached target
# directory; they once grew it past 60 GB and filled the disk. Past 40 GB, the debug
# build starts over (about 20 minutes on 2 cores) rather than risk that.
if [ -d "$CARGO_TARGET_DIR/debug" ] &&
    [ "$(du -s --block-size=1G "$CARGO_TARGET_DIR/debug" | cut -f1)" -gt 40 ]; then
    echo "the cached debug build is over 40 GB: removing it"
    rm -rf "$CARGO_TARGET_DIR/debug"
fi

# The Python, JavaScript and C guests install their toolchains on first use (pip,
# npm, apt, and cargo-installed wasm-tools and wit-bindgen: about 8 CPU-minutes cold),
# so they build in the background while the workspace builds.
step "guest examples in Python, JavaScript and C (in the background)"
mkdir -p "$WEIR_CACHE"
guests_log="$WEIR_CACHE/build-guests-langs.log"
scripts/build-guests.sh python js c >"$guests_log" 2>&1 &
guests_pid=$!
kafka_dir="$WEIR_CACHE/kafka-test"
trap 'kill "$guests_pid" 2>/dev/null || true; scripts/kafka.sh stop --dir "$kafka_dir"' EXIT

step "format"
cargo fmt --all --check
(cd guest-examples && cargo fmt --all --check)

step "build the Rust guest examples (wasm32-wasip2)"
scripts/build-guests.sh rust

step "lint"
# Clippy in build mode: clippy-driver wraps rustc for the workspace's own crates under
# `cargo build`. Plain `cargo clippy` checks in check mode, whose build-script outputs
# differ from a build's, so RocksDB, librdkafka and wasmtime compiled twice on a cold
# machine (about 15 minutes). CLIPPY_ARGS is how cargo-clippy passes lint flags.
CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__" \
    RUSTC_WORKSPACE_WRAPPER="$(rustup which clippy-driver)" \
    cargo build --workspace --all-targets --locked
(cd guest-examples && cargo clippy --target wasm32-wasip2 --locked --target-dir "$CARGO_TARGET_DIR/guests" -- -D warnings)

step "guest unit tests (native)"
(cd guest-examples && cargo test --locked --target-dir "$CARGO_TARGET_DIR/guests-native")

step "waiting for the Python, JavaScript and C guests"
if ! wait "$guests_pid"; then
    cat "$guests_log"
    echo "building the Python, JavaScript and C guests failed (log above)" >&2
    exit 1
fi
cat "$guests_log"

step "Apache Kafka for the end-to-end suites"
WEIR_KAFKA_BOOTSTRAP="$(scripts/kafka.sh start --dir "$kafka_dir")"
export WEIR_KAFKA_BOOTSTRAP
echo "broker at $WEIR_KAFKA_BOOTSTRAP, logs in $kafka_dir"

run_tests() {
    if cargo nextest --version >/dev/null 2>&1; then
        cargo nextest run --locked --no-fail-fast "$@"
    else
        cargo test --locked --no-fail-fast "$@"
    fi
}

step "tests (the Kafka suites under the classic group protocol)"
run_tests --workspace
cargo test --workspace --locked --doc

# The group-membership paths differ between the two protocols (who assigns, how a
# member learns it lost its partitions), so the end-to-end suites that move partitions
# run again under KIP-848's. The chaos test's quick form runs under classic only.
step "the Kafka suites again under KIP-848's group protocol (group.protocol=consumer)"
WEIR_TEST_GROUP_PROTOCOL=consumer run_tests -p weir-tests --test kafka --test kafka_edges

step "done"
