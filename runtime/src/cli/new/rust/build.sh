#!/usr/bin/env bash
# Builds this transform into a WebAssembly component: {{name}}.wasm beside this script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --release --target wasm32-wasip2
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{crate_name}}.wasm" {{name}}.wasm
echo "built $(pwd)/{{name}}.wasm"
