#!/usr/bin/env bash
# Starts remex in its embedded default (SQLite + filesystem store + a local worker pool) after installing
# what it needs. Extra arguments go to `remex serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node bin/remex.js serve "$@"
