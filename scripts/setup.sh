#!/usr/bin/env bash
# Installs what remex needs on a machine that has only Node.js, npm and apt:
#   - Debian packages (when run as root and any is missing): the sandbox, qemu-user and cross toolchains,
#     and for the tests (REMEX_SETUP_FOR_TESTS=1) Bazel, PostgreSQL, Chromium, Prometheus, zstd and curl;
#   - npm dependencies (when package-lock.json changed since the last install);
#   - the TypeScript build.
# Idempotent and quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(
  bubblewrap util-linux qemu-user-static musl-tools
  gcc libc6-dev gcc-aarch64-linux-gnu libc6-dev-arm64-cross
  gcc-riscv64-linux-gnu libc6-dev-riscv64-cross
  gcc-arm-linux-gnueabihf libc6-dev-armhf-cross
)
# What only the tests use (scripts/test.sh asks for them): real peers and tools, not needed to serve.
if [ "${REMEX_SETUP_FOR_TESTS:-}" = 1 ]; then
  DEBIAN_PACKAGES+=(bazel-bootstrap postgresql chromium prometheus zstd curl)
fi
EXTRA_PACKAGES=(${REMEX_EXTRA_DEBIAN_PACKAGES:-})

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}" "${EXTRA_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing Debian packages (install them as root): ${missing[*]}" >&2
  fi
fi

stamp=node_modules/.remex-lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  echo "setup: installing npm dependencies" >&2
  npm ci --no-fund --no-audit --loglevel=error
  cp package-lock.json "$stamp"
fi

npm run --silent build
