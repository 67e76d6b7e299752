#!/usr/bin/env bash
# Builds a JavaScript Weir transform into a WebAssembly component with ComponentizeJS.
#
#   build-guest-js.sh [PROJECT_DIR [OUT.wasm]]
#
# PROJECT_DIR (default: this script's directory) holds `app.js`, an ES module exporting
# `init` and `process`, and any modules it imports by relative path. The contract is
# PROJECT_DIR/wit when there is one (a project made by `weir new`), else the wit/ of the
# Weir repository this script sits in; the `weir.js` helper module likewise comes from
# PROJECT_DIR or the repository's sdk/js. OUT defaults to PROJECT_DIR/<dir name>.wasm.
#
# @bytecodealliance/componentize-js comes from npm, installed once under
# $WEIR_CACHE/js (default ~/.cache/weir) and driven through its JS API (its CLI and
# jco's mis-resolve WIT paths). A component is rebuilt only when its inputs changed:
# their hash is kept in OUT.inputs.
set -euo pipefail

version=0.23.0
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
project="$(cd "${1:-$here}" && pwd)"
out="${2:-$project/$(basename "$project").wasm}"
cache="${WEIR_CACHE:-$HOME/.cache/weir}"
tools="$cache/js/componentize-js-$version"
entry="$tools/node_modules/@bytecodealliance/componentize-js/src/componentize.js"

[ -f "$project/app.js" ] || { echo "error: $project has no app.js (the transform's module)" >&2; exit 2; }
wit="$project/wit"
# The contract: 0.3 (event time and timers).
[ -d "$wit" ] || wit="$here/../wit"
[ -f "$wit/transform.wit" ] || { echo "error: no wit/transform.wit in $project or beside this script" >&2; exit 2; }
sdk="$project/weir.js"
[ -f "$sdk" ] || sdk="$here/../sdk/js/weir.js"
[ -f "$sdk" ] || { echo "error: no weir.js in $project or in the repository's sdk/js" >&2; exit 2; }

# One install at a time (tests build guests in parallel); the others wait, then find
# the toolchain in place.
mkdir -p "$cache"
exec 9>"$cache/.install-js.lock"
flock 9
if [ ! -f "$entry" ]; then
    command -v npm >/dev/null || { echo "error: node and npm are needed to install ComponentizeJS (apt-get install nodejs npm)" >&2; exit 1; }
    echo "installing @bytecodealliance/componentize-js $version into $tools"
    started=$(date +%s)
    rm -rf "$tools.partial"
    mkdir -p "$tools.partial"
    echo '{"private": true}' >"$tools.partial/package.json"
    npm install --prefix "$tools.partial" --no-audit --no-fund --loglevel=error \
        "@bytecodealliance/componentize-js@$version"
    # Renamed only when complete, so an interrupted install is redone.
    mv "$tools.partial" "$tools"
    echo "installed componentize-js $version in $(($(date +%s) - started))s"
fi
flock -u 9

sources=("$sdk" "$wit")
while IFS= read -r -d '' file; do sources+=("$file"); done < <(find "$project" -name '*.js' -not -path '*/node_modules/*' -print0)
inputs="$( { echo "componentize-js $version"; find "${sources[@]}" -type f \( -name '*.js' -o -name '*.wit' \) | LC_ALL=C sort -u | xargs sha256sum; } | sha256sum | cut -d' ' -f1)"
if [ -f "$out" ] && [ "$(cat "$out.inputs" 2>/dev/null)" = "$inputs" ]; then
    echo "up to date: $out"
    exit 0
fi

# ComponentizeJS resolves relative imports from the entry module's directory, so the
# project and the helper module meet in a staging directory.
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
(cd "$project" && find . -name '*.js' -not -path './node_modules/*' -exec cp --parents {} "$stage/" \;)
[ -f "$stage/weir.js" ] || cp "$sdk" "$stage/weir.js"

mkdir -p "$(dirname "$out")"
started=$(date +%s)
# `http` and `fetch-event` would import wasi:http, which Weir does not provide; stdio,
# clocks and random stay, so console.log lands in Weir's logs.
WEIR_CJS="$entry" node --input-type=module - "$stage/app.js" "$wit" "$out.tmp.$$" <<'JS'
const { componentize } = await import(process.env.WEIR_CJS);
const { writeFile } = await import("node:fs/promises");
const [source, wit, out] = process.argv.slice(2);
const { component } = await componentize({
  sourcePath: source,
  witPath: wit,
  worldName: "transform",
  disableFeatures: ["http", "fetch-event"],
});
await writeFile(out, component);
JS
mv "$out.tmp.$$" "$out"
echo "$inputs" >"$out.inputs"
echo "built $out ($(stat -c %s "$out") bytes, $(($(date +%s) - started))s)"
