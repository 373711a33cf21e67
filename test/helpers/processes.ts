/** Real remex processes for tests: `remex serve` and `remex worker`, started and killed for real. */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { resolve } from 'node:path';

export const REMEX_BIN = resolve(import.meta.dirname, '..', '..', '..', 'bin', 'remex.js');

export interface RemexProcess {
  child: ChildProcess;
  /** stdout and stderr so far, for assertion messages. */
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function spawnRemex(args: string[], env: Record<string, string> = {}): RemexProcess {
  const child = spawn(process.execPath, [REMEX_BIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, REMEX_LOG_LEVEL: process.env.REMEX_TEST_LOG ?? 'warn', ...env },
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.on('exit', (code, signal) => res({ code, signal })));
  return { child, output: () => out, exited };
}

/** Waits until the process prints a line matching `re`; returns the match. */
export async function waitForOutput(p: RemexProcess, re: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = p.output().match(re);
    if (m) return m;
    if (p.child.exitCode !== null || Date.now() > deadline) throw new Error(`no ${re} from remex; output:\n${p.output()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export async function startServeProcess(args: string[], env: Record<string, string> = {}): Promise<{ proc: RemexProcess; url: string }> {
  const proc = spawnRemex(['serve', '--port', '0', '--grpc-port', '0', ...args], env);
  const m = await waitForOutput(proc, /remex listening on (http:\/\/\S+)/);
  return { proc, url: m[1] as string };
}

export async function killHard(p: RemexProcess): Promise<void> {
  if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await p.exited;
}

/** Polls `check` until it returns a value, or fails after the deadline. */
export async function eventually<T>(check: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Pids of host processes whose command line contains `marker` (a sandbox's processes are visible here too). */
export async function processesWithMarker(marker: string): Promise<number[]> {
  const pids = (await readdir('/proc')).filter((name) => /^\d+$/.test(name));
  const hits = await Promise.all(
    pids.map(async (pid) => {
      const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      return cmdline.includes(marker) ? Number(pid) : null;
    }),
  );
  return hits.filter((pid): pid is number => pid !== null);
}
