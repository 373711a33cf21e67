/** The remex CLI as tests run it: one-shot commands, and `remex serve` with its addresses read from stdout. */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { killHard, REMEX_BIN, spawnRemex, waitForOutput } from './processes.js';
import type { RemexProcess } from './processes.js';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the remex CLI to its end; `stdin` is piped to it when given (otherwise its stdin is empty). */
export function remexCli(args: string[], env: Record<string, string> = {}, stdin?: Buffer): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [REMEX_BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    child.stdin.end(stdin);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Starts `remex serve` (its logs at trace level) and reads its addresses from stdout. */
export async function startServe(args: string[], env: Record<string, string> = {}): Promise<{ proc: RemexProcess; url: string; grpcPort: number }> {
  const proc = spawnRemex(['serve', '--port', '0', '--grpc-port', '0', ...args], env);
  const m = await waitForOutput(proc, /remex listening on (https?:\/\/\S+) and grpcs?:\/\/[^:\s]+:(\d+)/);
  await waitForOutput(proc, /remex authentication: .*\n/);
  return { proc, url: m[1] as string, grpcPort: Number(m[2]) };
}

export function newToken(): string {
  return randomBytes(24).toString('hex');
}


/** A `remex serve` of one test file, in a data directory of its own, and the processes its tests start. */
export interface ServeFixture {
  dir: string;
  url: string;
  /** Killed by stop(), the server first: push the workers a test starts. */
  processes: RemexProcess[];
  stop(): Promise<void>;
}

/** Starts `remex serve ARGS --data <a new temp dir>/data`; stop() kills every process and removes the dir. */
export async function serveInTempDir(prefix: string, args: string[]): Promise<ServeFixture> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const processes: RemexProcess[] = [];
  try {
    const serve = await startServe([...args, '--data', join(dir, 'data')]);
    processes.push(serve.proc);
    return {
      dir,
      url: serve.url,
      processes,
      stop: async () => {
        for (const p of processes) await killHard(p);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
