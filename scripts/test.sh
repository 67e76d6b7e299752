#!/usr/bin/env bash
# Weir's whole test suite, from a fresh machine: installs the toolchain pieces, builds
# the guest components, runs every test and the lints.
#
# Build outputs go to $WEIR_CACHE (default ~/.cache/weir), outside the clone, so a
# second run reuses them: a cold run compiles Tansu, RocksDB, librdkafka and wasmtime,
# a warm one takes a few minutes (the Kafka end-to-end tests dominate).
set -euo pipefail
cd "$(dirname "$0")/.."

export WEIR_CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$WEIR_CACHE/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n== %s (%s)\n' "$1" "$(date +%T)"; }

step "setup"
scripts/setup.sh

# Every build of the workspace leaves its own test binaries in the cached target
# directory; they once grew it past 60 GB and filled the disk. Past 40 GB, the debug
# build starts over (about 20 minutes on 2 cores) rather than risk that.
if [ -d "$CARGO_TARGET_DIR/debug" ] &&
    [ "$(du -s --block-size=1G "$CARGO_TARGET_DIR/debug" | cut -f1)" -gt 40 ]; then
    echo "the cached debug build is over 40 GB: removing it"
    rm -rf "$CARGO_TARGET_DIR/debug"
fi

# Tansu builds in the background while the workspace builds: on two cores the two
# builds fill each other's idle stretches (linking, single-crate tails).
step "tansu, the Kafka broker of the end-to-end tests (in the background)"
mkdir -p "$WEIR_CACHE"
tansu_log="$WEIR_CACHE/install-tansu.log"
scripts/install-tansu.sh >"$tansu_log" 2>&1 &
tansu_pid=$!
trap 'kill "$tansu_pid" 2>/dev/null || true' EXIT
export WEIR_TANSU="$WEIR_CACHE/tools/bin/tansu"

# The Python, JavaScript and C guests install their toolchains on first use (pip,
# npm, apt, and cargo-installed wasm-tools and wit-bindgen: about 8 CPU-minutes cold),
# so they build in the background too.
step "guest examples in Python, JavaScript and C (in the background)"
guests_log="$WEIR_CACHE/build-guests-langs.log"
scripts/build-guests.sh python js c >"$guests_log" 2>&1 &
guests_pid=$!
trap 'kill "$tansu_pid" "$guests_pid" 2>/dev/null || true' EXIT

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

step "waiting for tansu"
if ! wait "$tansu_pid"; then
    cat "$tansu_log"
    echo "installing tansu failed (log above)" >&2
    exit 1
fi
tail -n 1 "$tansu_log"

step "waiting for the Python, JavaScript and C guests"
if ! wait "$guests_pid"; then
    cat "$guests_log"
    echo "building the Python, JavaScript and C guests failed (log above)" >&2
    exit 1
fi
cat "$guests_log"

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi
cargo test --workspace --locked --doc

step "done"
