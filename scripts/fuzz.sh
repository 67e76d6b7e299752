#!/usr/bin/env bash
# Runs Weir's fuzz targets (fuzz/) with cargo fuzz, each for a set time, growing the
# corpora under fuzz/corpus/<target>. cargo fuzz needs a nightly toolchain (the
# sanitizer flags); this script installs it and cargo-fuzz when they are missing.
# A finding is left in fuzz/artifacts/<target>/: add it to the target's corpus once it
# is fixed, and the test suite replays it on stable from then on.
#
#   scripts/fuzz.sh                 # every target, 60 s each
#   scripts/fuzz.sh 600 config      # config for 10 minutes
set -euo pipefail
cd "$(dirname "$0")/.."

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

failed=()
for target in "${targets[@]}"; do
    echo "== fuzz $target for ${seconds}s"
    # -timeout: one input taking a second is a finding (a parser gone quadratic).
    # -rss_limit_mb: one running out of memory too. New inputs go into the corpus;
    # the run's scratch corpus stays out of the repository.
    if ! cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=1 -rss_limit_mb=2048 -max_len=4096; then
        failed+=("$target")
    fi
done
if ((${#failed[@]})); then
    echo "fuzz: findings in ${failed[*]} (fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: every target ran ${seconds}s without a finding"
