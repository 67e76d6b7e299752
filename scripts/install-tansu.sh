#!/usr/bin/env bash
# Installs Tansu, the Kafka-compatible broker the end-to-end tests run against, into
# $WEIR_CACHE/tools (default ~/.cache/weir/tools) unless that exact version is there.
# A cold build takes 15-25 minutes on 2 cores; the binary is then reused.
#
# Version 0.4.9, not the newest: Tansu 0.5 and 0.6 answer no EndTxn requests (their
# broker routes no EndTxn handler), so transactions can never commit on them, and
# exactly-once cannot be tested. 0.4.9 commits and aborts transactions, writing the
# control markers that tests/kafka_raw.rs reads.
set -euo pipefail

version=0.4.9
root="${WEIR_CACHE:-$HOME/.cache/weir}/tools"
stamp="$root/tansu.version"

if [ -x "$root/bin/tansu" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
    echo "tansu $version: $root/bin/tansu"
    exit 0
fi
echo "installing tansu $version into $root (a cold build takes 15-25 minutes)"
# A target directory of its own inside the cache, so an interrupted build resumes.
cargo install tansu --version "$version" --locked --root "$root" \
    --target-dir "${WEIR_CACHE:-$HOME/.cache/weir}/tansu-build"
echo "$version" >"$stamp"
echo "tansu $version: $root/bin/tansu"
