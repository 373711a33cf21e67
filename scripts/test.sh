#!/usr/bin/env bash
# The test command: installs what the tests need, builds, lints, then runs every test with Node's runner —
# on the machine's Node (20, the oldest `engines` allows), then the unit, store, door and fuzz tests again
# on Node 24, the active LTS (scripts/node24.sh fetches it where the machine lacks it; decision 0036).
set -euo pipefail
cd "$(dirname "$0")/.."
REMEX_SETUP_FOR_TESTS=1 bash scripts/setup.sh
npm run --silent lint
node24="$(bash scripts/node24.sh)"
# Test files run in parallel processes; each starts its own servers on port 0.
node --test --test-concurrency="${REMEX_TEST_CONCURRENCY:-2}" --test-timeout=300000 dist/test/
# Node 22 and later take files and globs (quoted: Node expands them), not directories.
# REMEX_NODE24_TESTS='dist/test/**/*.test.js' runs everything on Node 24 as well.
NODE24_TESTS=()
for dir in core cas store api auth events fuzz security; do NODE24_TESTS+=("dist/test/$dir/**/*.test.js"); done
NODE24_TESTS+=(dist/test/e2e/cli-start.test.js dist/test/e2e/http-api.test.js)
if [ -n "${REMEX_NODE24_TESTS:-}" ]; then set -f; read -ra NODE24_TESTS <<<"$REMEX_NODE24_TESTS"; set +f; fi
echo "test: again on Node $("$node24" --version): ${NODE24_TESTS[*]}" >&2
exec "$node24" --test --test-reporter=tap --test-concurrency="${REMEX_TEST_CONCURRENCY:-2}" --test-timeout=300000 "${NODE24_TESTS[@]}"
