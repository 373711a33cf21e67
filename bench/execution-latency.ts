/**
 * Warm end-to-end latency and throughput of trivial native executions over HTTP, against a floor measured
 * in the same run: the same binary spawned in the same sandbox directly.
 *
 * Targets: p50 within 3 ms of the floor, p99 within 15 ms; throughput with 2 slots ≥ 60% of the floor's
 * rate (the same sandboxed spawns, 2 at a time).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RemexClient } from '../src/client/remex-client.js';
import { digestOf } from '../src/core/digest.js';
import { DEFAULT_LIMITS } from '../src/core/limits.js';
import { BwrapSandbox } from '../src/worker/sandbox/bwrap/bwrap-sandbox.js';
import { compileC } from '../test/helpers/tools.js';
import { fmt, intEnv, keepAliveRunner, percentile, startServe, verdict } from './lib.js';

const N_LATENCY = intEnv('BENCH_LATENCY_RUNS', 300);
const N_THROUGHPUT = intEnv('BENCH_THROUGHPUT_RUNS', 400);

export async function benchExecutionLatency(): Promise<boolean> {
  const binary = compileC({ code: 'int main(void) { return 0; }\n', name: 'trivial' }, 'x86_64');
  const bytes = readFileSync(binary);
  const sandbox = await BwrapSandbox.create({});
  const scratch = mkdtempSync(join(tmpdir(), 'remex-bench-'));

  let runSeq = 0;
  const floorRun = async (): Promise<void> => {
    const root = join(scratch, `r${runSeq++}`);
    const { mkdir, copyFile, chmod, rm } = await import('node:fs/promises');
    await mkdir(root);
    await copyFile(binary, join(root, 'program'));
    await chmod(join(root, 'program'), 0o755);
    const r = await sandbox.run({
      inputRoot: root,
      workingDirectory: '',
      argv: ['./program'],
      env: {},
      stdinPath: null,
      timeoutMs: 10_000,
      graceMs: 500,
      limits: DEFAULT_LIMITS,
      emulation: null,
    });
    if (r.exitCode !== 0) throw new Error(`floor run failed: ${JSON.stringify(r)}`);
    await rm(root, { recursive: true, force: true });
  };

  const serve = await startServe(['--workers', '2', '--platform', 'x86_64-linux-cpu', '--data', join(scratch, 'data')]);
  try {
    const client = new RemexClient(serve.url);
    const exe = digestOf(bytes);
    await client.putBlob(exe, bytes);
    const { run: remexRun } = keepAliveRunner(serve.url, exe);

    // Warm both paths, then interleave samples so drift on a shared machine hits both alike.
    for (let i = 0; i < 20; i++) {
      await floorRun();
      await remexRun();
    }
    const floor: number[] = [];
    const remex: number[] = [];
    for (let i = 0; i < N_LATENCY; i++) {
      let t = performance.now();
      await floorRun();
      floor.push(performance.now() - t);
      t = performance.now();
      await remexRun();
      remex.push(performance.now() - t);
    }
    const p50d = percentile(remex, 50) - percentile(floor, 50);
    const p99d = percentile(remex, 99) - percentile(floor, 99);
    console.log(`latency (${N_LATENCY} sequential runs each)`);
    console.log(`  floor  p50 ${fmt(percentile(floor, 50))}  p99 ${fmt(percentile(floor, 99))}`);
    console.log(`  remex  p50 ${fmt(percentile(remex, 50))}  p99 ${fmt(percentile(remex, 99))}`);
    console.log(`  p50 over floor ${fmt(p50d)} (target ≤ 3 ms) ${verdict(p50d <= 3)}; p99 over floor ${fmt(p99d)} (target ≤ 15 ms) ${verdict(p99d <= 15)}`);

    const rate = async (run: () => Promise<void>, concurrency: number): Promise<number> => {
      let left = N_THROUGHPUT;
      const start = performance.now();
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (left-- > 0) await run();
        }),
      );
      return N_THROUGHPUT / ((performance.now() - start) / 1000);
    };
    const floorRate = await rate(floorRun, 2);
    // Several requests in flight keep both slots busy, as a loaded server would be.
    const remexRate = await rate(remexRun, 6);
    const ratio = remexRate / floorRate;
    console.log(`throughput (${N_THROUGHPUT} runs, 2 slots)`);
    console.log(`  floor ${floorRate.toFixed(1)}/s (2 direct sandboxed spawns at a time)  remex ${remexRate.toFixed(1)}/s`);
    console.log(`  ratio ${(ratio * 100).toFixed(1)}% (target ≥ 60%) ${verdict(ratio >= 0.6)}`);
    return p50d <= 3 && p99d <= 15 && ratio >= 0.6;
  } finally {
    await serve.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}
