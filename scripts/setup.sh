#!/usr/bin/env bash
# Installs what building and testing Weir needs on a fresh Debian machine, skipping
# whatever is already there. Safe to run again.
set -euo pipefail

need_apt=()
# librocksdb-sys generates its bindings with bindgen, which needs libclang.
dpkg -s libclang-dev >/dev/null 2>&1 || need_apt+=(libclang-dev)
dpkg -s clang >/dev/null 2>&1 || need_apt+=(clang)
# rdkafka builds librdkafka from source: make, and OpenSSL for TLS/SASL to real clusters.
for package in make pkg-config libssl-dev zlib1g-dev; do
    dpkg -s "$package" >/dev/null 2>&1 || need_apt+=("$package")
done
# promtool (Debian ships it in prometheus) checks /metrics in the daemon tests; the
# openssl command makes the certificate of the admin API's TLS test.
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# Guest toolchains (scripts/build-guest-{c,python,js}.sh install the rest themselves):
# C needs wasm-ld and wasi-libc (and clang's wasm32 compiler-rt, below); Python a
# python3 that makes virtualenvs; JavaScript node and npm.
for package in lld wasi-libc; do
    dpkg -s "$package" >/dev/null 2>&1 || need_apt+=("$package")
done
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
if ((${#need_apt[@]})); then
    echo "setup: installing ${need_apt[*]} with apt-get"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "setup: adding the wasm32-wasip2 target"
    rustup target add wasm32-wasip2
fi
for component in clippy rustfmt; do
    rustup component list --installed | grep -q "^$component" || rustup component add "$component"
done

# clang's compiler-rt builtins for wasm32, of the clang just installed.
rt="libclang-rt-$(clang -dumpversion | cut -d. -f1)-dev-wasm32"
if ! dpkg -s "$rt" >/dev/null 2>&1; then
    echo "setup: installing $rt with apt-get"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "$rt"
fi
