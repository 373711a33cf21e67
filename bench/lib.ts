/** Shared bench helpers: percentiles, a spawned `remex serve`, RSS of a process, result lines. */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

export const REMEX_BIN = resolve(import.meta.dirname, '..', '..', 'bin', 'remex.js');

export function percentile(samples: readonly number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

export function fmt(ms: number): string {
  return `${ms.toFixed(2)} ms`;
}

export interface ServeProcess {
  child: ChildProcess;
  url: string;
  stop(): Promise<void>;
}

export async function startServe(args: string[]): Promise<ServeProcess> {
  const child = spawn(process.execPath, [REMEX_BIN, 'serve', '--port', '0', '--grpc-port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, REMEX_LOG_LEVEL: 'warn' },
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + 60_000;
  for (;;) {
    const m = /remex listening on (http:\/\/\S+)/.exec(out);
    if (m) {
      return {
        child,
        url: m[1] as string,
        stop: async () => {
          child.kill('SIGTERM');
          await new Promise((r) => child.once('exit', r));
        },
      };
    }
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`remex serve did not start:\n${out}`);
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
