#!/usr/bin/env bash
# The test command: installs what the tests need, builds, lints, then runs every test with Node's runner.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run --silent lint
# Test files run in parallel processes; each starts its own servers on port 0.
exec node --test --test-concurrency="${REMEX_TEST_CONCURRENCY:-2}" --test-timeout=300000 dist/test/
