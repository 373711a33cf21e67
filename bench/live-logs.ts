/**
 * Live logs of long jobs (issue 13), two figures with one `remex serve` each:
 *
 * - **Latency**: a job prints a line every 100 ms carrying the time it was printed; `remex logs --follow`
 *   (the real CLI process) tags each line as it arrives. Target: p50 ≤ 200 ms, p99 ≤ 1 s.
 * - **Throughput**: a job writes 100 MiB of 64-byte lines as fast as it can, with live logs (each byte goes
 *   to a log file, to the server in chunks, to its log store and at the end to the CAS), against the floor
 *   measured in the same run: the same program writing to /dev/null in the same sandbox. Both timed from
 *   submit to result. Target: ≥ 50% of the floor's rate, and the server's memory flat (its RSS grows by
 *   less than 64 MiB while 100 MiB go through it).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RemexClient } from '../src/client/remex-client.js';
import { digestOf } from '../src/core/digest.js';
import { compileC } from '../test/helpers/tools.js';
import { intEnv, percentile, REMEX_BIN, startServe, verdict } from './lib.js';

const LINES = intEnv('BENCH_LOG_LINES', 100);
const MIB = 1024 * 1024;
const FLOOD_BYTES = intEnv('BENCH_LOG_FLOOD_MIB', 100) * MIB;
const ROUNDS = intEnv('BENCH_LOG_ROUNDS', 3);

const PROGRAM_C = `
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
/*
 * "lines N": N lines 100 ms apart, each with the epoch ms it was printed. "flood BYTES [null|file]": BYTES of
 * 64-byte lines, to stdout, /dev/null or a plain file in its working directory; its own write time on stderr.
 */
int main(int argc, char **argv) {
  if (argc > 2 && strcmp(argv[1], "flood") == 0) {
    if (argc > 3 && !freopen(strcmp(argv[3], "null") == 0 ? "/dev/null" : "flood.out", "w", stdout)) return 2;
    long bytes = atol(argv[2]);
    char line[64];
    memset(line, 'x', sizeof line - 1);
    line[sizeof line - 1] = '\\n';
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long n = 0; n < bytes; n += 64) fwrite(line, 1, 64, stdout);
    int flushed = fflush(stdout);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* The program's own rate: its writes, timed by itself. */
    fprintf(stderr, "REMEX_METRIC write_ms=%.3f ms lower\\n", (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
    return flushed == 0 ? 0 : 1;
  }
  int n = atoi(argv[2]);
  struct timespec pause = { 0, 100000000L };
  for (int i = 0; i < n; i++) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    printf("at %lld\\n", (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000);
    fflush(stdout);
    nanosleep(&pause, NULL);
  }
  return 0;
}
`;

/** CPU time of a process so far (user + system), ms. */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

async function withServe<T>(run: (client: RemexClient, url: string, pid: number, exe: ReturnType<typeof digestOf>) => Promise<T>): Promise<T> {
  const bytes = readFileSync(compileC({ code: PROGRAM_C, name: 'log-bench' }, 'x86_64'));
  const exe = digestOf(bytes);
  const scratch = mkdtempSync(join(tmpdir(), 'remex-bench-logs-'));
  const serve = await startServe(['--workers', '2', '--platform', 'x86_64-linux-cpu', '--no-grpc', '--data', join(scratch, 'data')]);
  const client = new RemexClient(serve.url);
  try {
    await client.putBlob(exe, bytes);
    return await run(client, serve.url, serve.child.pid as number, exe);
  } finally {
    await serve.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}

export function benchLogLatency(): Promise<boolean> {
  return withServe(async (client, url, _pid, exe) => {
    const job = await client.submit({ executable: exe, args: ['lines', String(LINES)], logs: true, doNotCache: true });
    const cli = spawn(process.execPath, [REMEX_BIN, 'logs', job.id, '--follow', '--stream', 'stdout', '--server', url], { stdio: ['ignore', 'pipe', 'inherit'] });
    const latencies: number[] = [];
    let pending = '';
    cli.stdout.on('data', (d: Buffer) => {
      const now = Date.now();
      pending += d.toString();
      const lines = pending.split('\n');
      pending = lines.pop() as string;
      for (const line of lines) {
        const m = /^stdout\| at (\d+)$/.exec(line);
        if (m) latencies.push(now - Number(m[1]));
      }
    });
    await new Promise((resolve) => cli.once('exit', resolve));
    const p50 = percentile(latencies, 50);
    const p99 = percentile(latencies, 99);
    const met = latencies.length === LINES && p50 <= 200 && p99 <= 1_000;
    console.log(`${latencies.length}/${LINES} lines, one every 100 ms, printed → shown by remex logs --follow`);
    console.log(`  p50 ${p50.toFixed(0)} ms, p99 ${p99.toFixed(0)} ms, max ${Math.max(...latencies).toFixed(0)} ms`);
    console.log(`  p50 ≤ 200 ms and p99 ≤ 1 s: ${verdict(met)}`);
    return met;
  });
}

export function benchLogThroughput(): Promise<boolean> {
  return withServe(async (client, _url, pid, exe) => {
    type Mode = 'null' | 'file' | 'log';
    /** One flood: the program's own write time (it reports it on stderr) and the time from submit to result. */
    const run = async (bytes: number, mode: Mode): Promise<{ writeMs: number; e2eMs: number; serverCpuMs: number }> => {
      const logs = mode === 'log';
      const cpu0 = cpuMs(pid);
      const t0 = performance.now();
      const v = await client.submit({ executable: exe, args: ['flood', String(bytes), ...(logs ? [] : [mode])], ...(logs ? { logs, logCeilingBytes: bytes } : {}), doNotCache: true, timeoutMs: 300_000, limits: { fileSizeBytes: 2 * bytes } }, { wait: true });
      const e2eMs = performance.now() - t0;
      const serverCpuMs = cpuMs(pid) - cpu0;
      if (v.state !== 'completed' || v.code !== 0) throw new Error(`the flood ended ${v.state} (${v.code})`);
      if (logs && v.output?.stdout.digest.sizeBytes !== bytes) throw new Error(`kept ${v.output?.stdout.digest.sizeBytes} of ${bytes} bytes`);
      const stderr = Buffer.from(v.output?.stderr.base64 ?? '', 'base64').toString();
      const m = /REMEX_METRIC write_ms=([\d.]+)/.exec(stderr);
      if (!m) throw new Error(`the flood reported no write time: ${JSON.stringify(stderr)}`);
      return { writeMs: Number(m[1]), e2eMs, serverCpuMs };
    };
    // Warm: the sandbox, the program's pages, the log path.
    for (const mode of ['null', 'file', 'log'] as const) await run(MIB, mode);
    const runs: Record<Mode, Array<{ writeMs: number; e2eMs: number; serverCpuMs: number }>> = { null: [], file: [], log: [] };
    const rss0 = rssKb(pid);
    let peak = rss0;
    const sampler = setInterval(() => (peak = Math.max(peak, rssKb(pid))), 20);
    // Interleaved, so that a noisy moment of the shared machine falls on each.
    for (let i = 0; i < ROUNDS; i++) for (const mode of ['null', 'log', 'file'] as const) runs[mode].push(await run(FLOOD_BYTES, mode));
    clearInterval(sampler);
    const median = (xs: number[]): number => percentile(xs, 50);
    const rate = (ms: number): string => `${(FLOOD_BYTES / MIB / (ms / 1000)).toFixed(0).padStart(5)} MiB/s (${ms.toFixed(0).padStart(4)} ms)`;
    const write = (mode: Mode): number => median(runs[mode].map((r) => r.writeMs));
    const e2e = (mode: Mode): number => median(runs[mode].map((r) => r.e2eMs));
    const serverCpu = (mode: Mode): number => median(runs[mode].map((r) => r.serverCpuMs));
    const pct = (floorMs: number, ms: number): string => `${((floorMs / ms) * 100).toFixed(0)}%`;
    const ratio = write('null') / write('log');
    const growthMiB = (peak - rss0) / 1024;
    const met = ratio >= 0.5 && growthMiB < 64;
    console.log(`${FLOOD_BYTES / MIB} MiB of 64-byte lines as fast as the program writes them (stdio), median of ${ROUNDS} runs each, same sandbox`);
    console.log("  the program's own write rate (it times its writes: the issue's figure)");
    console.log(`    to /dev/null (the floor):                   ${rate(write('null'))}`);
    console.log(`    to its live log (pipe, spliced to a file):  ${rate(write('log'))} = ${pct(write('null'), write('log'))} of the floor`);
    console.log(`    to a plain file in its directory (a bound): ${rate(write('file'))} = ${pct(write('null'), write('file'))} of the floor`);
    console.log('  submit to result (a second figure: the log is also shipped and put into the CAS, SHA-256 of every byte)');
    console.log(`    to /dev/null:  ${rate(e2e('null'))}`);
    console.log(`    live logs:     ${rate(e2e('log'))} = ${pct(e2e('null'), e2e('log'))} of /dev/null's`);
    console.log(`  remex serve's CPU (its process: server and worker; the spawner and the program apart): ${serverCpu('null').toFixed(0)} ms per flood to /dev/null, ${serverCpu('log').toFixed(0)} ms with live logs`);
    console.log(`  server RSS ${(rss0 / 1024).toFixed(0)} MiB before, peak +${growthMiB.toFixed(1)} MiB during the ${ROUNDS * 3} floods`);
    console.log(`  live logs ≥ 50% of the program's rate to /dev/null, memory flat (< 64 MiB growth): ${verdict(met)}`);
    return met;
  });
}
