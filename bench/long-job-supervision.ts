/**
 * What supervising long jobs costs remex (issue 13): 50 running jobs, each printing a line and writing a
 * progress report every 100 ms, their lines flowing live to the server (live logs: read by the worker every
 * 100 ms, stored, published), against a floor measured in the same run — the same 50 jobs without a
 * progress channel or live logs. The figure is the CPU of the `remex serve` process (the server and its in-process
 * worker together: the embedded default), beside the programs and the sandbox's spawner.
 *
 * Target: with progress, server + worker ≤ 10% of one core (the 5% each, for one process that is
 * both); the ratio to the floor says what the channel itself costs.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RemexClient } from '../src/client/remex-client.js';
import { digestOf } from '../src/core/digest.js';
import { compileC } from '../test/helpers/tools.js';
import { cpuMs, intEnv, startServe, verdict } from './lib.js';

const JOBS = intEnv('BENCH_LONG_JOBS', 50);
const WINDOW_MS = intEnv('BENCH_LONG_JOB_WINDOW_MS', 10_000);

const TICKER_C = `
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
/* Every 100 ms for argv[1] ms: a line on stdout and, where there is a channel, a progress report. */
int main(int argc, char **argv) {
  long total = atol(argv[1]);
  const char *channel = getenv("REMEX_PROGRESS");
  struct timespec tick = { 0, 100000000L };
  for (long t = 0; t < total; t += 100) {
    printf("tick %ld\\n", t);
    fflush(stdout);
    if (channel) {
      FILE *f = fopen(channel, "a");
      if (f) { fprintf(f, "%ld tick %ld\\n", t * 100 / total, t); fclose(f); }
    }
    nanosleep(&tick, NULL);
  }
  return 0;
}
`;

export async function benchLongJobSupervision(): Promise<boolean> {
  const bytes = readFileSync(compileC({ code: TICKER_C, name: 'ticker' }, 'x86_64'));
  const exe = digestOf(bytes);
  const scratch = mkdtempSync(join(tmpdir(), 'remex-bench-long-'));
  const serve = await startServe(['--workers', String(JOBS), '--platform', 'x86_64-linux-cpu', '--no-grpc', '--data', join(scratch, 'data')]);
  const client = new RemexClient(serve.url);
  try {
    await client.putBlob(exe, bytes);
    const pid = serve.child.pid as number;
    // A job runs the window plus time to start them all and to settle.
    const runMs = WINDOW_MS + 8_000;
    const measure = async (supervised: boolean): Promise<number> => {
      const ids = await Promise.all(
        Array.from({ length: JOBS }, () =>
          client.submit({ executable: exe, args: [String(runMs)], progress: supervised, logs: supervised, doNotCache: true, limits: { outputBytes: 1024 * 1024 } }).then((v) => v.id),
        ),
      );
      for (;;) {
        const running = (await client.listExecutions({ states: ['running'], limit: 1000 })).executions.length;
        if (running >= JOBS) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      await new Promise((r) => setTimeout(r, 1_500)); // past the start-up of the last ones
      const c0 = cpuMs(pid);
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, WINDOW_MS));
      const share = (cpuMs(pid) - c0) / (performance.now() - t0);
      for (const id of ids) await client.cancel(id).catch(() => undefined);
      for (;;) {
        const left = (await client.listExecutions({ states: ['running', 'queued'], limit: 1000 })).executions.length;
        if (left === 0) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      return share;
    };
    const floor = await measure(false);
    const withProgress = await measure(true);
    const pct = (x: number): string => `${(x * 100).toFixed(1)}% of a core`;
    const met = withProgress <= 0.1;
    console.log(`${JOBS} jobs, a line (live) and a progress report every 100 ms each, ${WINDOW_MS / 1000} s window`);
    console.log(`  floor (no progress channel, no live logs):  remex serve ${pct(floor)}`);
    console.log(`  with progress and live logs:                remex serve ${pct(withProgress)}  (${(withProgress / Math.max(floor, 1e-9)).toFixed(2)}x the floor)`);
    console.log(`  server + worker with progress and live logs ≤ 10% of a core: ${verdict(met)}`);
    return met;
  } finally {
    await serve.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}
