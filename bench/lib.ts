/** Shared bench helpers: percentiles, a spawned `remex serve`, RSS of a process, result lines. */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { appendFileSync, readdirSync, readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { resolve } from 'node:path';

export const REMEX_BIN = resolve(import.meta.dirname, '..', '..', 'bin', 'remex.js');

export function percentile(samples: readonly number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

/** A count from the environment variable `name`, or `fallback` when unset; anything but a positive integer is an error. */
export function intEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${name}=${raw}: expected a positive integer`);
  return n;
}

export function fmt(ms: number): string {
  return `${ms.toFixed(2)} ms`;
}

export interface ServeProcess {
  child: ChildProcess;
  url: string;
  /** host:port of the REAPI gRPC door, when the server runs one. */
  grpcAddress: string | undefined;
  stop(): Promise<void>;
}

/** Extra node options for every `remex serve` a bench starts, e.g. BENCH_SERVE_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof' (NODE_OPTIONS refuses --cpu-prof). */
const SERVE_NODE_ARGS = (process.env.BENCH_SERVE_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
/** BENCH_SERVE_LOG=<file> appends every served process's output there, at BENCH_SERVE_LOG_LEVEL (default warn; `debug` logs each run's phases). */
const SERVE_LOG = process.env.BENCH_SERVE_LOG;
const SERVE_LOG_LEVEL = process.env.BENCH_SERVE_LOG_LEVEL ?? 'warn';

/** `remex serve --port 0 --grpc-port 0 …args` in its own process (`opts.env` added to its environment); resolves once it prints its addresses. */
export async function startServe(args: string[], opts: { env?: Record<string, string> } = {}): Promise<ServeProcess> {
  const child = spawn(process.execPath, [...SERVE_NODE_ARGS, REMEX_BIN, 'serve', '--port', '0', '--grpc-port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, REMEX_LOG_LEVEL: SERVE_LOG_LEVEL, ...opts.env },
  });
  let out = '';
  const capture = (d: Buffer): void => {
    // Only the start-up lines are needed here; the rest goes to the log file when one is asked for.
    if (out.length < 1_000_000) out += d.toString();
    if (SERVE_LOG) appendFileSync(SERVE_LOG, d);
  };
  child.stdout?.on('data', capture);
  child.stderr?.on('data', capture);
  const deadline = Date.now() + 60_000;
  for (;;) {
    // `remex listening on http://… [and grpc://HOST:PORT]`, one line.
    const m = /remex listening on (https?:\/\/\S+)(?: and grpcs?:\/\/(\S+))?\n/.exec(out);
    if (m) {
      return {
        child,
        url: m[1] as string,
        grpcAddress: m[2],
        stop: async () => {
          if (child.exitCode !== null || child.signalCode !== null) return;
          const exited = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          await exited;
        },
      };
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`remex serve did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return kb / 1024;
}

export function verdict(ok: boolean): string {
  return ok ? 'PASS' : 'MISS';
}

const CLOCK_TICKS_PER_S = 100; // USER_HZ on Linux

/**
 * The fields of /proc/<pid>/stat after the command name (so field 3, the state, is [0]); undefined once
 * the process is gone. The name (field 2) may hold spaces: fields are counted after its closing parenthesis.
 */
function statFields(pid: number | string): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** CPU time (user + system) a process has used so far, in ms; 0 once it is gone. */
export function cpuMs(pid: number): number {
  const fields = statFields(pid);
  return fields ? ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_S : 0;
}

/** CPU time of a process and of its children it has reaped (user + system), in ms; 0 once it is gone. */
export function cpuWithReapedMs(pid: number): number {
  const fields = statFields(pid);
  if (!fields) return 0;
  return ((Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) * 1000) / CLOCK_TICKS_PER_S;
}

/** The parent of a process; undefined once it is gone. */
export function parentPid(pid: number): number | undefined {
  const ppid = statFields(pid)?.[1];
  return ppid === undefined ? undefined : Number(ppid);
}

/** Process ids whose parent is `ppid`. */
export function childPids(ppid: number): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry) && parentPid(Number(entry)) === ppid)
    .map(Number);
}

/**
 * A keep-alive node:http client, as a front end holding a connection to remex would use, so a figure is the
 * server's latency, not a client library's: `run` executes `executable` once (waiting for its result, exit
 * code 0 or a rejection), `get` reads a path.
 */
export function keepAliveRunner(serverUrl: string, executable: { hash: string; sizeBytes: number }): {
  run: () => Promise<void>;
  get: (path: string) => Promise<{ status: number; text: string }>;
} {
  const agent = new Agent({ keepAlive: true, maxSockets: 16 });
  const body = JSON.stringify({ executable, platform: 'x86_64-linux-cpu', doNotCache: true });
  const url = new URL('/v1/executions?wait=1', serverUrl);
  const call = (target: URL, method: string, payload?: string): Promise<{ status: number; text: string }> =>
    new Promise((done, fail) => {
      const headers = payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) };
      const req = request(target, { method, agent, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => done({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
      });
      req.on('error', fail);
      req.end(payload);
    });
  return {
    run: async () => {
      const { status, text } = await call(url, 'POST', body);
      const v = JSON.parse(text) as { code?: number };
      if (status !== 200 || v.code !== 0) throw new Error(`remex run failed: ${status} ${text}`);
    },
    get: (path) => call(new URL(path, serverUrl), 'GET'),
  };
}
