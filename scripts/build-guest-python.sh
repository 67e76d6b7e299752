#!/usr/bin/env bash
# Builds a Python Weir transform into a WebAssembly component with componentize-py.
#
#   build-guest-python.sh [PROJECT_DIR [OUT.wasm]]
#
# PROJECT_DIR (default: this script's directory) holds `app.py`, the module whose
# `WitWorld` class is the component's exports, and any modules it imports. The contract
# is PROJECT_DIR/wit when there is one (a project made by `weir new`), else the wit/ of
# the Weir repository this script sits in; the `weir` helper module likewise comes from
# PROJECT_DIR or the repository's sdk/python. OUT defaults to PROJECT_DIR/<dir name>.wasm.
#
# componentize-py comes from PyPI, installed once into a virtualenv under
# $WEIR_CACHE/python (default ~/.cache/weir). A component is rebuilt only when its
# inputs changed: their hash is kept in OUT.inputs.
set -euo pipefail

version=0.25.1
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
project="$(cd "${1:-$here}" && pwd)"
out="${2:-$project/$(basename "$project").wasm}"
cache="${WEIR_CACHE:-$HOME/.cache/weir}"
venv="$cache/python/componentize-py-$version"

[ -f "$project/app.py" ] || { echo "error: $project has no app.py (the transform's module)" >&2; exit 2; }
wit="$project/wit"
# The contract: 0.3 (event time and timers).
[ -d "$wit" ] || wit="$here/../wit"
[ -f "$wit/transform.wit" ] || { echo "error: no wit/transform.wit in $project or beside this script" >&2; exit 2; }
dirs=("$project")
if [ ! -f "$project/weir.py" ]; then
    [ -f "$here/../sdk/python/weir.py" ] || { echo "error: no weir.py in $project or in the repository's sdk/python" >&2; exit 2; }
    dirs+=("$here/../sdk/python")
fi

# One install at a time (tests build guests in parallel); the others wait, then find
# the toolchain in place.
mkdir -p "$cache"
exec 9>"$cache/.install-python.lock"
flock 9
if [ ! -x "$venv/bin/componentize-py" ]; then
    command -v python3 >/dev/null || { echo "error: python3 is needed to install componentize-py (apt-get install python3 python3-venv)" >&2; exit 1; }
    echo "installing componentize-py $version into $venv"
    started=$(date +%s)
    rm -rf "$venv.partial"
    python3 -m venv "$venv.partial" || { echo "error: python3 -m venv failed (apt-get install python3-venv)" >&2; exit 1; }
    "$venv.partial/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$version"
    # Renamed only when complete, so an interrupted install is redone. (Moving a
    # virtualenv leaves stale #! lines, hence componentize-py is run through python3.)
    mv "$venv.partial" "$venv"
    echo "installed componentize-py $version in $(($(date +%s) - started))s"
fi
flock -u 9

inputs="$( { echo "componentize-py $version"; find "${dirs[@]}" "$wit" -type f \( -name '*.py' -o -name '*.wit' \) | LC_ALL=C sort | xargs sha256sum; } | sha256sum | cut -d' ' -f1)"
if [ -f "$out" ] && [ "$(cat "$out.inputs" 2>/dev/null)" = "$inputs" ]; then
    echo "up to date: $out"
    exit 0
fi
mkdir -p "$(dirname "$out")"
started=$(date +%s)
# No .pyc files in the project: the component is built from sources only.
paths=()
for dir in "${dirs[@]}"; do paths+=(-p "$dir"); done
PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python3" "$venv/bin/componentize-py" \
    -d "$wit" -w transform componentize app "${paths[@]}" -o "$out.tmp.$$" >/dev/null
mv "$out.tmp.$$" "$out"
echo "$inputs" >"$out.inputs"
echo "built $out ($(stat -c %s "$out") bytes, $(($(date +%s) - started))s)"
