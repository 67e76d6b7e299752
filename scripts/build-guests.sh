#!/usr/bin/env bash
# Builds every guest example into a WebAssembly component and prints where they are:
# the Rust ones with cargo (wasm32-wasip2), the Python, JavaScript and C ones with
# scripts/build-guest-<lang>.sh, which install their toolchains on first use (under
# $WEIR_CACHE) and rebuild only what changed.
#
#   build-guests.sh [rust|python|js|c ...]     (default: every language)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-${WEIR_CACHE:-$HOME/.cache/weir}/target}/guests"
langs=("$@")
((${#langs[@]})) || langs=(rust python js c)

for lang in "${langs[@]}"; do
    case "$lang" in
    rust)
        rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
        (cd "$repo/guest-examples" && cargo build --release --locked --target wasm32-wasip2 --target-dir "$target")
        ls "$target"/wasm32-wasip2/release/*.wasm
        ;;
    python | js | c)
        for example in "$repo/guest-examples/$lang"/*/; do
            example="${example%/}"
            "$repo/scripts/build-guest-$lang.sh" "$example" "$target/$lang/$(basename "$example").wasm"
        done
        ;;
    *)
        echo "error: unknown guest language $lang (rust, python, js or c)" >&2
        exit 2
        ;;
    esac
done
