/**
 * How quickly the client commands start and exit (issue 18, item 5): `remex run` of a result the server
 * has cached, `remex status`, `remex platforms` and `remex --version`, each a fresh process, against floors
 * measured in the same run, interleaved: `node -e 0`, and a bare Node process that makes one HTTP request
 * to the same server (node:http, no remex code). `remex run, unbundled` is the same command with
 * REMEX_CLI_BUNDLE=0: the modules tsc built instead of the client bundle (decision 0044), for comparison.
 *
 * Target: `remex run` of a cached result ≤ 1.5 × the bare request's process, and ≤ 120 ms from start to
 * exit (the absolute figure holds on an idle machine; the ratio is the one a shared machine can judge).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileC } from '../test/helpers/tools.js';
import { fmt, intEnv, percentile, REMEX_BIN, startServe, verdict } from './lib.js';

const RUNS = intEnv('BENCH_CLI_RUNS', 21);
const TARGET_RATIO = 1.5;
const TARGET_MS = 120;

function timeOf(args: string[], env: Record<string, string> = {}): number {
  const start = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, REMEX_TOKEN: '', ...env } });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}: ${r.stderr.toString()}`);
  return ms;
}

export async function benchCliStart(): Promise<boolean> {
  const hello = compileC({ code: '#include <stdio.h>\nint main(void) { puts("hi"); return 0; }\n', name: 'cli-start-hello' }, 'x86_64', { static: true });
  const scratch = mkdtempSync(join(tmpdir(), 'remex-bench-cli-'));
  const serve = await startServe(['--workers', '1', '--platform', 'x86_64-linux-cpu', '--no-grpc', '--data', join(scratch, 'data')]);
  try {
    // Measured with the client bundle, or not at all (a bare `tsc` leaves it stale, and remex runs without it).
    const preload = join(scratch, 'bundled.cjs');
    writeFileSync(preload, "process.on('exit', () => console.log(Object.keys(require.cache).some((m) => m.endsWith('client.cjs')) ? 'BUNDLED' : 'UNBUNDLED'));\n");
    if (!spawnSync(process.execPath, ['-r', preload, REMEX_BIN, 'platforms', '--server', serve.url], { encoding: 'utf8' }).stdout.match(/^BUNDLED$/m)) {
      console.log('remex ran without its client bundle (dist/src/cli/client.cjs missing or stale): run `npm run build` FAIL');
      return false;
    }
    const run = [REMEX_BIN, 'run', '-q', '--server', serve.url, hello];
    timeOf(run); // runs it once: every later run is a cache hit
    const submitted = spawnSync(process.execPath, [REMEX_BIN, 'submit', '--server', serve.url, hello], { encoding: 'utf8' }).stdout.trim();
    const cases: Record<string, string[]> = {
      'node -e 0': ['-e', '0'],
      'node + one request': ['-e', `require('node:http').get(${JSON.stringify(`${serve.url}/healthz`)}, (r) => r.resume())`],
      'remex run (cached)': run,
      // The same without the client bundle (decision 0044): the modules tsc built, through the ESM loader.
      'remex run, unbundled': run,
      'remex status': [REMEX_BIN, 'status', '--server', serve.url, submitted],
      'remex platforms': [REMEX_BIN, 'platforms', '--server', serve.url],
      'remex --version': [REMEX_BIN, '--version'],
    };
    const samples: Record<string, number[]> = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
    // Interleaved, so a burst of load on the shared machine falls on every case alike.
    for (let i = 0; i < RUNS; i++) for (const [name, args] of Object.entries(cases)) samples[name]?.push(timeOf(args, name === 'remex run, unbundled' ? { REMEX_CLI_BUNDLE: '0' } : {}));
    const median = (name: string): number => percentile(samples[name] ?? [], 50);
    const floor = median('node + one request');
    for (const name of Object.keys(cases)) {
      console.log(`${name.padEnd(22)} median ${fmt(median(name)).padStart(9)}  p90 ${fmt(percentile(samples[name] ?? [], 90)).padStart(9)}  ${(median(name) / floor).toFixed(2)}× the bare request`);
    }
    const ratio = median('remex run (cached)') / floor;
    const ratioOk = ratio <= TARGET_RATIO;
    const absoluteOk = median('remex run (cached)') <= TARGET_MS;
    console.log(`remex run of a cached result: ${ratio.toFixed(2)}× node + one request (target ≤ ${TARGET_RATIO}×) ${verdict(ratioOk)}`);
    console.log(`remex run of a cached result: ${fmt(median('remex run (cached)'))} (target ≤ ${TARGET_MS} ms on an idle machine; node -e 0 took ${fmt(median('node -e 0'))} here) ${verdict(absoluteOk)}`);
    return ratioOk;
  } finally {
    await serve.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}
