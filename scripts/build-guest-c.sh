#!/usr/bin/env bash
# Builds a C Weir transform into a WebAssembly component.
#
#   build-guest-c.sh [PROJECT_DIR [OUT.wasm]]
#
# PROJECT_DIR (default: this script's directory) holds the transform's .c files, which
# implement the exports declared in the generated `transform.h`, with the helpers of
# `weir.h` (the project's own copy, or sdk/c/weir.h of the Weir repository). The contract is
# PROJECT_DIR/wit when there is one (a project made by `weir new`), else the wit/ of the
# Weir repository this script sits in. OUT defaults to PROJECT_DIR/<dir name>.wasm.
#
# The toolchain, all from the registries, installed when missing:
#   * Debian: clang, lld (wasm-ld), wasi-libc, libclang-rt-<clang>-dev-wasm32;
#   * crates.io, with `cargo install` under $WEIR_CACHE/tools (default ~/.cache/weir):
#     wit-bindgen-cli (`wit-bindgen c` writes the bindings) and wasm-tools
#     (`wasm-tools component new` makes the component);
#   * crates.io, the WASI preview1 adapter wasmtime publishes
#     (wasi-preview1-component-adapter-provider), so that a guest using wasi-libc's
#     stdio (printf) becomes a WASI 0.2 component.
# A component is rebuilt only when its inputs changed: their hash is kept in OUT.inputs.
set -euo pipefail

wasm_tools_version=1.262.0
wit_bindgen_version=0.63.0
# The adapter must speak the WASI 0.2 of the host: the one of Weir's wasmtime.
adapter_version=48.0.8
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
project="$(cd "${1:-$here}" && pwd)"
out="${2:-$project/$(basename "$project").wasm}"
cache="${WEIR_CACHE:-$HOME/.cache/weir}"
tools="$cache/tools"
adapter="$cache/c/wasi_snapshot_preview1.reactor-$adapter_version.wasm"

shopt -s nullglob
sources=("$project"/*.c)
shopt -u nullglob
((${#sources[@]})) || { echo "error: $project has no .c files" >&2; exit 2; }
wit="$project/wit"
# The contract: 0.3 (event time and timers) unless the project has its own wit/ (a
# project made by `weir new` has 0.2; guest-examples/c/word-count links to 0.2).
[ -d "$wit" ] || wit="$here/../wit"
[ -f "$wit/transform.wit" ] || { echo "error: no wit/transform.wit in $project or beside this script" >&2; exit 2; }

# One install at a time (tests build guests in parallel); the others wait, then find
# the toolchain in place.
mkdir -p "$cache"
exec 9>"$cache/.install-c.lock"
flock 9
# Debian packages.
command -v clang >/dev/null || need_clang=1
if [ -z "${need_clang:-}" ]; then
    clang_major="$(clang -dumpversion | cut -d. -f1)"
    rt="libclang-rt-$clang_major-dev-wasm32"
fi
missing=()
[ -n "${need_clang:-}" ] && missing+=(clang)
for package in lld wasi-libc ${rt:-}; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "installing ${missing[*]} with apt-get"
    started=$(date +%s)
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ -n "${need_clang:-}" ]; then
        # Now that clang is there, its wasm32 compiler-rt.
        clang_major="$(clang -dumpversion | cut -d. -f1)"
        DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "libclang-rt-$clang_major-dev-wasm32" >/dev/null
    fi
    echo "installed the Debian packages in $(($(date +%s) - started))s"
fi

# Cargo-installed tools, pinned: the stamp names the versions installed.
stamp="$tools/c-tools.version"
want="wasm-tools $wasm_tools_version (component), wit-bindgen-cli $wit_bindgen_version (c)"
if [ ! -x "$tools/bin/wasm-tools" ] || [ ! -x "$tools/bin/wit-bindgen" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing $want into $tools (a cold build takes a few minutes)"
    started=$(date +%s)
    # Only the subcommands used here: the default features build every generator and
    # fuzzing tool, several times the compile time.
    cargo install --locked --quiet --force --root "$tools" --target-dir "$cache/tools-build" \
        --no-default-features --features component "wasm-tools@$wasm_tools_version"
    cargo install --locked --quiet --force --root "$tools" --target-dir "$cache/tools-build" \
        --no-default-features --features c "wit-bindgen-cli@$wit_bindgen_version"
    echo "$want" >"$stamp"
    # The build directory only serves to resume an interrupted install: 0.8 GB.
    rm -rf "$cache/tools-build"
    echo "installed $want in $(($(date +%s) - started))s"
fi

if [ ! -f "$adapter" ]; then
    echo "fetching the WASI preview1 adapter $adapter_version from crates.io"
    # A throwaway crate that writes out the adapter the provider crate embeds.
    crate="$cache/c/adapter-$adapter_version"
    mkdir -p "$crate/src"
    cat >"$crate/Cargo.toml" <<TOML
[package]
name = "weir-wasi-adapter"
version = "0.0.0"
edition = "2021"
publish = false
[dependencies]
wasi-preview1-component-adapter-provider = "=$adapter_version"
[workspace]
TOML
    cat >"$crate/src/main.rs" <<'RUST'
fn main() {
    let out = std::env::args().nth(1).expect("an output path");
    std::fs::write(out, wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER)
        .expect("write the adapter");
}
RUST
    cargo run --quiet --manifest-path "$crate/Cargo.toml" --target-dir "$crate/target" -- "$adapter.tmp"
    mv "$adapter.tmp" "$adapter"
    rm -rf "$crate"
fi
flock -u 9

helpers="$here/../sdk/c"
[ -d "$helpers" ] || helpers="$project"
inputs="$( { echo "$want, adapter $adapter_version, clang $(clang -dumpversion)"; find -H "$project" "$wit" "$helpers" -maxdepth 1 -type f \( -name '*.c' -o -name '*.h' -o -name '*.wit' \) ! -name 'transform.[ch]' | LC_ALL=C sort | xargs sha256sum; } | sha256sum | cut -d' ' -f1)"
if [ -f "$out" ] && [ "$(cat "$out.inputs" 2>/dev/null)" = "$inputs" ]; then
    echo "up to date: $out"
    exit 0
fi

started=$(date +%s)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Bindings go to a scratch directory: generated code is never committed.
"$tools/bin/wit-bindgen" c --world transform --out-dir "$work/bindings" "$wit" >"$work/wit-bindgen.log" 2>&1 ||
    { cat "$work/wit-bindgen.log" >&2; exit 1; }
# A reactor (no main): the host calls the exports; -mexec-model=reactor links wasi-libc's
# _initialize, which runs C constructors before the first export.
clang --target=wasm32-wasi -O2 -Wall -Wextra -Werror -mexec-model=reactor \
    -I "$work/bindings" -I "$project" -I "$helpers" \
    "${sources[@]}" "$work/bindings/transform.c" "$work/bindings/transform_component_type.o" \
    -o "$work/core.wasm"
mkdir -p "$(dirname "$out")"
"$tools/bin/wasm-tools" component new "$work/core.wasm" \
    --adapt "wasi_snapshot_preview1=$adapter" -o "$out.tmp.$$"
mv "$out.tmp.$$" "$out"
echo "$inputs" >"$out.inputs"
echo "built $out ($(stat -c %s "$out") bytes, $(($(date +%s) - started))s)"
