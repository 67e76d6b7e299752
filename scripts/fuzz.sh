#!/usr/bin/env bash
# Runs Weir's fuzz targets (fuzz/) with cargo fuzz, each for a set time. cargo fuzz
# needs a nightly toolchain (libFuzzer's instrumentation flags); this script installs
# it and cargo-fuzz when they are missing.
#
# Each target starts from its seeds in fuzz/corpus/<target> and grows a working corpus
# under $WEIR_CACHE/fuzz-corpus/<target>, outside the clone, so a later run goes on
# where this one stopped without the repository collecting thousands of generated
# inputs. A finding is left in fuzz/artifacts/<target>/: once it is fixed, copy it into
# fuzz/corpus/<target>, and the test suite replays it on stable from then on.
#
#   scripts/fuzz.sh                 # every target, 60 s each
#   scripts/fuzz.sh 600 config      # config for 10 minutes
set -euo pipefail
cd "$(dirname "$0")/.."

export WEIR_CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$WEIR_CACHE/target}"

seconds="${1:-60}"
shift || true
targets=("$@")
((${#targets[@]})) || targets=(jsonl config changelog batch_layout)

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz: installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null; then
    echo "fuzz: installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

# RocksDB's C++ takes about 40 minutes to compile on 2 cores. A library the test
# suite's build already made (same lock file, same librocksdb-sys) links as well, so
# use it when there is one.
if [ -z "${ROCKSDB_LIB_DIR:-}" ]; then
    built="$(ls -t "$CARGO_TARGET_DIR"/{debug,release}/build/librocksdb-sys-*/out/librocksdb.a \
        2>/dev/null | head -n 1 || true)"
    if [ -n "$built" ]; then
        export ROCKSDB_LIB_DIR="${built%/librocksdb.a}" ROCKSDB_STATIC=1
        echo "fuzz: linking RocksDB from $ROCKSDB_LIB_DIR"
    fi
fi

# No sanitizer: the targets are safe Rust, so what fuzzing finds is a panic or a
# broken property, which needs none; and AddressSanitizer would instrument the C
# libraries under the runtime (zstd), whose link checks in librdkafka's build then fail.
failed=()
for target in "${targets[@]}"; do
    echo "== fuzz $target for ${seconds}s"
    work="$WEIR_CACHE/fuzz-corpus/$target"
    mkdir -p "$work"
    # -timeout: one input taking a second is a finding (a parser gone quadratic).
    # -rss_limit_mb: one running out of memory too. New inputs go into the first
    # corpus directory (the working one); the seeds are only read.
    if ! cargo +nightly fuzz run --sanitizer none "$target" "$work" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=1 -rss_limit_mb=2048 -max_len=4096; then
        failed+=("$target")
    fi
done
if ((${#failed[@]})); then
    echo "fuzz: findings in ${failed[*]} (fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: every target ran ${seconds}s without a finding"
