/**
 * Soak (issue 18): a steady offered rate of mixed executions against a `remex serve` of its own for a
 * while, sampling the server process, then checking that what it holds goes back to where it started.
 *
 * The mix, in a fixed cycle of 20: native x86_64 runs (7), an aarch64 run under qemu-user (2), the same
 * action again for an action-cache hit (4), a program sleeping past its timeout (1), one exiting non-zero
 * (2), one printing ~1 MB (2), and cancellations (2: one at once, of a job still queued when the slots
 * are busy, else just handed to one; one of a running job). The load is open loop: execution i is due
 * at start + i/rate whatever became of the earlier ones, and its latency counts from when it was due, so
 * a server falling behind shows as latency.
 *
 * Judged (the issue's targets): RSS growth after warm-up < 10% (the mean of the last window against the
 * second's); p99 latency of the last window ≤ 1.2× the second window's; open descriptors, threads, run
 * cgroups, run directories, temporary files and descendant processes of the server back to their baseline
 * once the load ends. A window is a minute, or a fifth of the run when that is shorter.
 *
 * Also printed, not judged: CPU per execution of the server, of its sandboxes (the spawner and all it
 * reaped), of this load generator and of the whole machine, with the load average at the start and end —
 * CPU times hold on a shared machine where latencies do not (decision 0045).
 *
 * REMEX_SOAK_SECONDS (default 600), REMEX_SOAK_RATE (executions/s, default 100), REMEX_SOAK_SLOTS (worker
 * slots, default max(4, rate/8)): `REMEX_SOAK_SECONDS=600 REMEX_SOAK_RATE=100 node dist/bench/run-all.js soak`. test/e2e/soak.test.ts runs the same code for 60 s and asserts the leak
 * checks only.
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { RemexClient } from '../src/client/remex-client.js';
import { digestOf } from '../src/core/digest.js';
import type { Digest } from '../src/core/digest.js';
import { tmpfsRunRootPath } from '../src/server/run-root.js';
import { RUN_CGROUP_PREFIX, listRunCgroups } from '../src/worker/sandbox/bwrap/cgroup-probe.js';
import { compileC } from '../test/helpers/tools.js';
import { childPids, cpuMs, cpuWithReapedMs, intEnv, parentPid, percentile, rssMb, startServe, verdict } from './lib.js';

/** One program for every kind: `sleep MS`, `exit CODE`, `print BYTES`, or nothing (exit 0). */
const SOAK_C = `
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
int main(int argc, char **argv) {
  if (argc < 3) return 0;
  long n = atol(argv[2]);
  if (strcmp(argv[1], "sleep") == 0) {
    struct timespec t = { n / 1000, (n % 1000) * 1000000L };
    nanosleep(&t, NULL);
  } else if (strcmp(argv[1], "exit") == 0) {
    return (int)n;
  } else if (strcmp(argv[1], "print") == 0) {
    static char line[100];
    memset(line, 'x', 99);
    line[99] = '\\n';
    for (long i = 0; i < n / 100; i++) fwrite(line, 1, 100, stdout);
  }
  return 0;
}
`;

export type SoakKind = 'native' | 'emulated' | 'cached' | 'timeout' | 'failure' | 'large' | 'cancel-queued' | 'cancel-running';

/** The cycle the executions follow, in order. */
const CYCLE: readonly SoakKind[] = [
  'native',
  'cached',
  'native',
  'emulated',
  'failure',
  'native',
  'large',
  'cached',
  'cancel-queued',
  'native',
  'timeout',
  'cached',
  'native',
  'emulated',
  'failure',
  'native',
  'large',
  'cached',
  'cancel-running',
  'native',
];

const LARGE_BYTES = 1_000_000;
const TIMEOUT_MS = 300;

export interface SoakOptions {
  seconds: number;
  rate: number;
  slots?: number;
  /** Most executions in flight; beyond it a due execution is dropped (counted) rather than pile up without bound. */
  maxInFlight?: number;
  log?: (line: string) => void;
}

/** What the server holds at one moment. */
export interface Holdings {
  fds: number;
  threads: number;
  processes: number;
  cgroups: number;
  runDirs: number;
  tempFiles: number;
}

export interface SoakReport {
  offered: number;
  dropped: number;
  completed: number;
  /** Executions whose result was not the expected one, or whose request failed, by kind. */
  wrong: Partial<Record<SoakKind, number>>;
  firstError: string | undefined;
  achievedRate: number;
  windowSeconds: number;
  rssSecondMb: number;
  rssLastMb: number;
  rssGrowth: number;
  p99SecondMs: number;
  p99LastMs: number;
  /** The same without the timeouts (their latency is mostly the 300 ms timeout itself). */
  quickP99SecondMs: number;
  quickP99LastMs: number;
  /** Latency over the whole run by kind (cancellations: submit to the cancel's answer), ms. */
  byKind: Partial<Record<SoakKind, { n: number; p50: number; p99: number; max: number }>>;
  baseline: Holdings;
  peak: Holdings;
  after: Holdings;
  /** The holdings that did not come back to their baseline. */
  leaks: Array<keyof Holdings>;
  /** CPU per completed execution over the load, ms (see {@link CpuShares}). */
  cpu: CpuShares;
  /** The 1-minute load average when the load started and when it ended (the machine may be shared). */
  loadAverage: [number, number];
}

/**
 * Where the CPU went, per completed execution: the server process (its event loop, thread pool and GC
 * threads), the sandboxes (the spawner with everything it reaped: launchers, bwrap, the programs, qemu),
 * this load generator, and the whole machine's busy time (other work included) divided the same way.
 */
export interface CpuShares {
  serverMs: number;
  sandboxesMs: number;
  loadGeneratorMs: number;
  machineMs: number;
}

interface Sample {
  t: number;
  rssMb: number;
  held: Holdings;
}

interface Done {
  due: number;
  end: number;
  kind: SoakKind;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Every process below `root` (its children, theirs, …). */
function descendants(root: number): number[] {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const ppid = parentPid(Number(entry));
    if (ppid !== undefined) parents.set(Number(entry), ppid);
  }
  const below = new Set<number>([root]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, ppid] of parents) {
      if (!below.has(pid) && below.has(ppid)) {
        below.add(pid);
        grew = true;
      }
    }
  }
  below.delete(root);
  return [...below];
}

function countEntries(dir: string, recursive: boolean): number {
  let n = 0;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    n++;
    if (recursive && e.isDirectory()) n += countEntries(join(dir, e.name), true);
  }
  return n;
}

/** Busy and total CPU time of the machine so far (all cores), in ms, from /proc/stat. */
function machineCpuMs(): { busy: number; total: number } {
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] as string).trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: ((total - idle) * 1000) / 100, total: (total * 1000) / 100 };
}

function countOrZero(dir: string): number {
  try {
    return readdirSync(dir).length;
  } catch {
    return 0;
  }
}

export async function runSoak(opts: SoakOptions): Promise<SoakReport> {
  const log = opts.log ?? ((line: string) => console.log(line));
  const slots = opts.slots ?? Math.max(4, Math.ceil(opts.rate / 8));
  const maxInFlight = opts.maxInFlight ?? Math.max(200, opts.rate * 20);
  const windowSeconds = Math.max(1, Math.min(60, Math.floor(opts.seconds / 5)));

  const native = readFileSync(compileC({ code: SOAK_C, name: 'soak' }, 'x86_64'));
  const arm = readFileSync(compileC({ code: SOAK_C, name: 'soak' }, 'aarch64', { static: true }));
  const scratch = mkdtempSync(join(tmpdir(), 'remex-soak-'));
  const dataDir = join(scratch, 'data');
  // The server's own TMPDIR, so that its temporary files are counted apart from everything else on the machine.
  const serverTmp = join(scratch, 'tmp');
  mkdirSync(serverTmp);
  const serve = await startServe(['--workers', String(slots), '--no-grpc', '--data', dataDir], { env: { TMPDIR: serverTmp } });
  const pid = serve.child.pid as number;
  const runDirs = [join(dataDir, 'runs'), tmpfsRunRootPath(dataDir)];

  const holdings = async (): Promise<Holdings> => ({
    fds: countOrZero(`/proc/${pid}/fd`),
    threads: countOrZero(`/proc/${pid}/task`),
    processes: descendants(pid).length,
    cgroups: (await listRunCgroups()).filter((dir) => dir.includes(`${RUN_CGROUP_PREFIX}${pid}-`)).length,
    runDirs: runDirs.reduce((n, dir) => n + countOrZero(dir), 0),
    tempFiles: countEntries(serverTmp, true),
  });

  try {
    const client = new RemexClient(serve.url);
    const { nativeExe, armExe } = await uploadPrograms(client, native, arm);

    const wrong: Partial<Record<SoakKind, number>> = {};
    let firstError: string | undefined;
    const fail = (kind: SoakKind, what: string): void => {
      wrong[kind] = (wrong[kind] ?? 0) + 1;
      firstError ??= `${kind}: ${what}`;
    };
    let executor = soakExecutor(serve.url, nativeExe, armExe, fail);
    const execute = (kind: SoakKind): Promise<void> => executor.execute(kind);
    const quiesce = async (): Promise<void> => {
      for (;;) {
        const page = await client.listExecutions({ states: ['queued', 'running'], limit: 1 });
        if (page.executions.length === 0) return;
        await sleep(250);
      }
    };
    /** Polls until every holding is at most its baseline, or `ms` pass; the last reading either way. */
    const settle = async (baseline: Holdings | undefined, ms: number): Promise<Holdings> => {
      const deadline = Date.now() + ms;
      let last = await holdings();
      for (;;) {
        if (baseline && (Object.keys(baseline) as Array<keyof Holdings>).every((k) => last[k] <= baseline[k])) return last;
        if (Date.now() > deadline) return last;
        await sleep(250);
        const next = await holdings();
        // Without a baseline: settled once two readings a quarter second apart agree.
        if (!baseline && JSON.stringify(next) === JSON.stringify(last)) return next;
        last = next;
      }
    };

    // Warm-up: every kind a few times, so the baseline includes what the first runs set up for good
    // (the thread pool, the sandbox's prepared /etc, the emulation probe, the action-cache entry).
    for (let round = 0; round < 3; round++) await Promise.all(CYCLE.map((kind) => execute(kind)));
    await quiesce();
    executor.close();
    executor = soakExecutor(serve.url, nativeExe, armExe, fail);
    await sleep(500);
    const baseline = await settle(undefined, 5_000);
    const warmupWrong = Object.values(wrong).reduce((a, b) => a + b, 0);
    if (warmupWrong > 0) throw new Error(`the warm-up executions went wrong: ${firstError}`);
    log(`soak: ${opts.seconds} s at ${opts.rate}/s offered, ${slots} slots, windows of ${windowSeconds} s; server pid ${pid}`);
    log(`  baseline ${JSON.stringify(baseline)}, RSS ${rssMb(pid).toFixed(1)} MB`);

    // The server's CPU and its sandboxes' (its children: the spawner, which reaps every run's processes).
    const serverCpu = (): { server: number; sandboxes: number } => ({
      server: cpuMs(pid),
      sandboxes: childPids(pid).reduce((sum, child) => sum + cpuWithReapedMs(child), 0),
    });
    const cpu0 = serverCpu();
    const gen0 = process.cpuUsage();
    const machine0 = machineCpuMs();
    const load0 = loadavg()[0] as number;
    const samples: Sample[] = [];
    const done: Done[] = [];
    const inFlight = new Set<Promise<void>>();
    let offered = 0;
    let dropped = 0;
    const start = performance.now();
    const endAt = start + opts.seconds * 1000;
    let nextSample = start;
    let nextReport = start + windowSeconds * 1000;
    let window: Done[] = [];
    for (let i = 0; ; i++) {
      const due = start + (i * 1000) / opts.rate;
      if (due >= endAt) break;
      while (performance.now() < due) {
        const now = performance.now();
        if (now >= nextSample) {
          nextSample += 1000;
          samples.push({ t: (now - start) / 1000, rssMb: rssMb(pid), held: await holdings() });
        }
        if (now >= nextReport) {
          const s = samples.at(-1);
          const lat = window.filter((d) => !d.kind.startsWith('cancel')).map((d) => d.end - d.due);
          log(
            `  t=${Math.round((now - start) / 1000)}s done ${window.length} (${(window.length / windowSeconds).toFixed(1)}/s) in flight ${inFlight.size} dropped ${dropped}` +
              (lat.length ? ` p50 ${percentile(lat, 50).toFixed(0)} ms p99 ${percentile(lat, 99).toFixed(0)} ms` : '') +
              (s ? ` RSS ${s.rssMb.toFixed(1)} MB ${JSON.stringify(s.held)}` : ''),
          );
          window = [];
          nextReport += windowSeconds * 1000;
        }
        await sleep(Math.max(0, Math.min(due, nextSample, nextReport) - performance.now()));
      }
      const kind = CYCLE[i % CYCLE.length] as SoakKind;
      offered++;
      if (inFlight.size >= maxInFlight) {
        dropped++;
        continue;
      }
      const p: Promise<void> = execute(kind)
        .catch((err: unknown) => fail(kind, (err as Error).message))
        .then(() => {
          const d = { due, end: performance.now(), kind };
          done.push(d);
          window.push(d);
        })
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
    await Promise.all(inFlight);
    const loadSeconds = (performance.now() - start) / 1000;
    const cpu1 = serverCpu();
    const gen1 = process.cpuUsage(gen0);
    const machine1 = machineCpuMs();
    const perExecution = (ms: number): number => ms / Math.max(1, done.length);
    const cpu: CpuShares = {
      serverMs: perExecution(cpu1.server - cpu0.server),
      sandboxesMs: perExecution(cpu1.sandboxes - cpu0.sandboxes),
      loadGeneratorMs: perExecution((gen1.user + gen1.system) / 1000),
      machineMs: perExecution(machine1.busy - machine0.busy),
    };
    const loadAverage: [number, number] = [load0, loadavg()[0] as number];
    await quiesce();
    executor.close();
    const peak = Object.fromEntries(
      (Object.keys(baseline) as Array<keyof Holdings>).map((k) => [k, Math.max(baseline[k], ...samples.map((s) => s.held[k]))]),
    ) as unknown as Holdings;
    const after = await settle(baseline, 20_000);
    const leaks = (Object.keys(baseline) as Array<keyof Holdings>).filter((k) => after[k] > baseline[k]);

    const inWindow = (from: number, to: number): Done[] => done.filter((d) => d.due - start >= from * 1000 && d.due - start < to * 1000 && !d.kind.startsWith('cancel'));
    const p99 = (ds: Done[]): number => (ds.length ? percentile(ds.map((d) => d.end - d.due), 99) : NaN);
    const meanRss = (from: number, to: number): number => {
      const xs = samples.filter((s) => s.t >= from && s.t < to).map((s) => s.rssMb);
      return xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
    };
    const w = windowSeconds;
    const last = opts.seconds;
    const rssSecondMb = meanRss(w, 2 * w);
    const rssLastMb = meanRss(last - w, last + 1);
    return {
      offered,
      dropped,
      completed: done.length,
      wrong,
      firstError,
      achievedRate: done.length / loadSeconds,
      windowSeconds,
      rssSecondMb,
      rssLastMb,
      rssGrowth: rssLastMb / rssSecondMb - 1,
      p99SecondMs: p99(inWindow(w, 2 * w)),
      p99LastMs: p99(inWindow(last - w, last)),
      quickP99SecondMs: p99(inWindow(w, 2 * w).filter((d) => d.kind !== 'timeout')),
      quickP99LastMs: p99(inWindow(last - w, last).filter((d) => d.kind !== 'timeout')),
      byKind: Object.fromEntries(
        [...new Set(done.map((d) => d.kind))].map((kind) => {
          const ms = done.filter((d) => d.kind === kind).map((d) => d.end - d.due);
          return [kind, { n: ms.length, p50: percentile(ms, 50), p99: percentile(ms, 99), max: Math.max(...ms) }];
        }),
      ),
      baseline,
      peak,
      after,
      leaks,
      cpu,
      loadAverage,
    };
  } finally {
    await serve.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** Puts the soak program's two builds into the server's CAS: their digests. */
async function uploadPrograms(client: RemexClient, native: Buffer, arm: Buffer): Promise<{ nativeExe: Digest; armExe: Digest }> {
  const nativeExe = digestOf(native);
  const armExe = digestOf(arm);
  await client.putBlob(nativeExe, native);
  await client.putBlob(armExe, arm);
  return { nativeExe, armExe };
}

/** Sends executions of each kind to a server over one keep-alive agent; `fail` hears of every unexpected answer. */
function soakExecutor(
  url: string,
  nativeExe: Digest,
  armExe: Digest,
  fail: (kind: SoakKind, what: string) => void,
): { execute: (kind: SoakKind) => Promise<void>; close: () => void } {
  let seq = 0;
  const submission = (kind: SoakKind): Record<string, unknown> => {
    // A distinct argument per run keeps the uncached ones distinct actions as well.
    const tag = String(seq++);
    const x86 = (exe: Digest, args: string[]): Record<string, unknown> => ({ executable: exe, platform: 'x86_64-linux-cpu', args, doNotCache: true });
    switch (kind) {
      case 'native':
        return x86(nativeExe, ['run', tag]);
      case 'emulated':
        return { executable: armExe, platform: 'aarch64-linux-cpu', args: ['run', tag], doNotCache: true };
      case 'cached':
        return { executable: nativeExe, platform: 'x86_64-linux-cpu', args: ['cached', '0'] };
      case 'timeout':
        return { ...x86(nativeExe, ['sleep', '10000', tag]), timeoutMs: TIMEOUT_MS };
      case 'failure':
        return x86(nativeExe, ['exit', '3', tag]);
      case 'large':
        return x86(nativeExe, ['print', String(LARGE_BYTES), tag]);
      case 'cancel-queued':
      case 'cancel-running':
        return x86(nativeExe, ['sleep', '10000', tag]);
    }
  };
  const expected = (kind: SoakKind, v: ExecutionResult): boolean => {
    switch (kind) {
      case 'native':
      case 'emulated':
        return v.state === 'completed' && v.code === 0;
      case 'cached':
        return v.state === 'completed' && v.code === 0;
      case 'timeout':
        return v.timedOut;
      case 'failure':
        return v.state === 'completed' && v.code === 3;
      case 'large':
        return v.state === 'completed' && v.code === 0 && !v.truncated;
      default:
        return true;
    }
  };
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  // Cancellations (their submit without waiting, and the cancel) on connections of their own, as a client
  // would send them: behind a backlog of waiting requests on the same sockets a cancel would be late, its
  // `sleep 10000` would hold a slot for 10 s, and the backlog would feed on itself.
  const controlAgent = new Agent({ keepAlive: true, maxSockets: 64 });
  const post = (path: string, body: unknown, via: Agent = agent): Promise<{ status: number; json: unknown }> =>
    new Promise((resolve, reject) => {
      const text = body === undefined ? '' : JSON.stringify(body);
      const headers: Record<string, string | number> = { 'content-length': Buffer.byteLength(text) };
      if (text !== '') headers['content-type'] = 'application/json';
      const req = request(new URL(path, url), { method: 'POST', agent: via, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString()) });
          } catch (err) {
            reject(err as Error);
          }
        });
      });
      req.on('error', reject);
      req.end(text);
    });
  /** One execution of `kind`; resolves when it is over (cancellations: once the cancel is answered). */
  const execute = async (kind: SoakKind): Promise<void> => {
    if (kind === 'cancel-queued' || kind === 'cancel-running') {
      const r = await post('/v1/executions', submission(kind), controlAgent);
      const id = (r.json as { id?: string }).id;
      if (r.status >= 300 || !id) return fail(kind, `submit answered ${r.status} ${JSON.stringify(r.json).slice(0, 300)}`);
      if (kind === 'cancel-running') await sleep(TIMEOUT_MS);
      const c = await post(`/v1/executions/${encodeURIComponent(id)}/cancel`, undefined, controlAgent);
      if (c.status >= 300) fail(kind, `cancel answered ${c.status} ${JSON.stringify(c.json).slice(0, 300)}`);
      return;
    }
    const r = await post('/v1/executions?wait=1', submission(kind));
    const v = r.json as ExecutionResult;
    if (r.status !== 200 || !expected(kind, v)) fail(kind, `${r.status} ${JSON.stringify({ state: v.state, code: v.code, timedOut: v.timedOut, truncated: v.truncated, failure: v.failure }).slice(0, 300)}`);
  };
  return {
    execute,
    close: () => {
      agent.destroy();
      controlAgent.destroy();
    },
  };
}

interface ExecutionResult {
  state?: string;
  code?: number | null;
  timedOut: boolean;
  truncated: boolean;
  failure?: unknown;
}

/** The report as PASS/FAIL lines with their figures; true when every target is met. */
export function judgeSoak(r: SoakReport, log: (line: string) => void = (line) => console.log(line)): boolean {
  const w = `${r.windowSeconds} s`;
  const rssOk = r.rssGrowth < 0.1;
  const p99Ok = r.p99LastMs <= 1.2 * r.p99SecondMs;
  const wrongCount = Object.values(r.wrong).reduce((a, b) => a + b, 0);
  log(`  offered ${r.offered}, dropped ${r.dropped} (over the in-flight cap), completed ${r.completed}: ${r.achievedRate.toFixed(1)}/s achieved ${verdict(r.dropped === 0)}`);
  log(`  unexpected results ${wrongCount} ${JSON.stringify(r.wrong)}${r.firstError ? `; first: ${r.firstError}` : ''} ${verdict(wrongCount === 0)}`);
  log(`  RSS second ${w} ${r.rssSecondMb.toFixed(1)} MB, last ${w} ${r.rssLastMb.toFixed(1)} MB: growth ${(r.rssGrowth * 100).toFixed(1)}% (target < 10%) ${verdict(rssOk)}`);
  log(`  p99 second ${w} ${r.p99SecondMs.toFixed(0)} ms, last ${w} ${r.p99LastMs.toFixed(0)} ms: ${(r.p99LastMs / r.p99SecondMs).toFixed(2)}× (target ≤ 1.2×) ${verdict(p99Ok)}`);
  log(`  (without the timeouts: p99 second ${w} ${r.quickP99SecondMs.toFixed(0)} ms, last ${w} ${r.quickP99LastMs.toFixed(0)} ms: ${(r.quickP99LastMs / r.quickP99SecondMs).toFixed(2)}×)`);
  const c = r.cpu;
  log(
    `  CPU per execution: server ${c.serverMs.toFixed(2)} ms, sandboxes ${c.sandboxesMs.toFixed(2)} ms, load generator ${c.loadGeneratorMs.toFixed(2)} ms;` +
      ` whole machine ${c.machineMs.toFixed(2)} ms (other work included); load average ${r.loadAverage[0].toFixed(2)} at the start, ${r.loadAverage[1].toFixed(2)} at the end`,
  );
  for (const [kind, x] of Object.entries(r.byKind)) log(`    ${kind}: ${x.n} runs, p50 ${x.p50.toFixed(0)} ms, p99 ${x.p99.toFixed(0)} ms, max ${x.max.toFixed(0)} ms`);
  for (const k of Object.keys(r.baseline) as Array<keyof Holdings>) {
    log(`  ${k}: baseline ${r.baseline[k]}, peak ${r.peak[k]}, after ${r.after[k]} ${verdict(r.after[k] <= r.baseline[k])}`);
  }
  return rssOk && p99Ok && wrongCount === 0 && r.leaks.length === 0 && r.dropped === 0;
}

/**
 * CPU per execution of each kind alone (`npm run bench -- soak-cost`): REMEX_SOAK_COST_RUNS (default 200)
 * executions of a kind, 4 at a time (8 for the kinds that wait 300 ms), against a `remex serve` of 4 slots;
 * the server's and its sandboxes' CPU over them, divided by their number. CPU times, so the figures hold on
 * a machine shared with other work, where the soak's latencies do not (decision 0045).
 */
export async function benchSoakCost(): Promise<boolean> {
  const runs = intEnv('REMEX_SOAK_COST_RUNS', 200);
  const native = readFileSync(compileC({ code: SOAK_C, name: 'soak' }, 'x86_64'));
  const arm = readFileSync(compileC({ code: SOAK_C, name: 'soak' }, 'aarch64', { static: true }));
  const scratch = mkdtempSync(join(tmpdir(), 'remex-soak-cost-'));
  const serve = await startServe(['--workers', '4', '--no-grpc', '--data', join(scratch, 'data')]);
  const pid = serve.child.pid as number;
  let wrongCount = 0;
  let firstError: string | undefined;
  const fail = (kind: SoakKind, what: string): void => {
    wrongCount++;
    firstError ??= `${kind}: ${what}`;
  };
  try {
    const { nativeExe, armExe } = await uploadPrograms(new RemexClient(serve.url), native, arm);
    const executor = soakExecutor(serve.url, nativeExe, armExe, fail);
    const kinds = [...new Set(CYCLE)];
    for (let round = 0; round < 4; round++) await Promise.all(kinds.map((kind) => executor.execute(kind)));
    console.log(`soak-cost: CPU per execution, ${runs} of each kind; load average ${(loadavg()[0] as number).toFixed(2)}`);
    for (const kind of kinds) {
      const sandboxes = (): number => childPids(pid).reduce((sum, child) => sum + cpuWithReapedMs(child), 0);
      const [server0, sandboxes0, gen0, t0] = [cpuMs(pid), sandboxes(), process.cpuUsage(), performance.now()];
      let next = 0;
      const concurrency = kind === 'timeout' || kind === 'cancel-running' ? 8 : 4;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next++ < runs) await executor.execute(kind);
        }),
      );
      // The last runs' processes are reaped (and their CPU counted) a moment after the answers.
      await sleep(500);
      const gen = process.cpuUsage(gen0);
      console.log(
        `  ${kind.padEnd(14)} server ${((cpuMs(pid) - server0) / runs).toFixed(2)} ms, sandboxes ${((sandboxes() - sandboxes0) / runs).toFixed(2)} ms,` +
          ` load generator ${((gen.user + gen.system) / 1000 / runs).toFixed(2)} ms (wall ${((performance.now() - t0) / runs).toFixed(1)} ms per execution at ${concurrency} at a time)`,
      );
    }
    executor.close();
  } finally {
    await serve.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
  console.log(`  unexpected results ${wrongCount}${firstError ? `; first: ${firstError}` : ''} ${verdict(wrongCount === 0)}`);
  return wrongCount === 0;
}

export async function benchSoak(): Promise<boolean> {
  const report = await runSoak({ seconds: intEnv('REMEX_SOAK_SECONDS', 600), rate: intEnv('REMEX_SOAK_RATE', 100), ...(process.env.REMEX_SOAK_SLOTS ? { slots: intEnv('REMEX_SOAK_SLOTS', 4) } : {}) });
  return judgeSoak(report);
}
