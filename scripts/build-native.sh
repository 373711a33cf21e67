#!/usr/bin/env bash
# Builds remex-exec (native/*.c), the sandbox's spawner, launcher and uid switch, into dist/native/.
# Static, with musl where musl-gcc is installed: a static glibc program starts by probing the CPU, and on a
# virtual machine those cpuid instructions trap to the hypervisor (~0.4 ms of each exec; decision 0015).
# Without a C compiler remex still runs: the sandbox then launches through sh, unshare and env (more execs
# per run) and says so in its notes; in CI that is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
src=(native/remex-exec.c native/spawner.c)
headers=(native/remex-exec.h)
out=dist/native/remex-exec
up_to_date=true
for f in "${src[@]}" "${headers[@]}" "$0"; do [ "$out" -nt "$f" ] || up_to_date=false; done
$up_to_date && exit 0
flags=(-std=c11 -O2 -Wall -Wextra -static -s -o "$out.tmp" "${src[@]}")
mkdir -p "$(dirname "$out")"
if command -v musl-gcc >/dev/null; then
  musl-gcc "${flags[@]}"
elif command -v "${CC:-cc}" >/dev/null; then
  echo "build: musl-gcc not found (Debian: musl-tools); building remex-exec with ${CC:-cc} and glibc" >&2
  "${CC:-cc}" "${flags[@]}"
else
  echo "build: no C compiler: the sandbox will launch programs through sh, unshare and env" >&2
  [ "${CI:-}" = true ] && exit 1
  exit 0
fi
mv "$out.tmp" "$out"
