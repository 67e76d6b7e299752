#!/usr/bin/env bash
# Builds the Rust guest examples into WebAssembly components and prints where they are.
set -euo pipefail
cd "$(dirname "$0")/../guest-examples"
target="${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}/guests"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --release --locked --target wasm32-wasip2 --target-dir "$target"
ls "$target"/wasm32-wasip2/release/*.wasm
