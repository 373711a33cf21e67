/**
 * The `command` provider: runs the operator's scale-out and scale-in commands (argv, no shell) with a JSON
 * description on stdin, for EC2, GCE, Nomad or anything else. Scale-out's stdout may name the instances it
 * started (`{"instanceIds": [...]}`; each worker must register with its id, `remex worker --instance-id` or
 * REMEX_INSTANCE_ID); otherwise registrations alone are counted. A command that fails or hangs (killed
 * after `timeoutSeconds`) is tried again with back-off, up to `attempts` times, then given up and logged:
 * never fatal to the server.
 */
import { spawn } from 'node:child_process';
import type { Logger } from 'pino';
import type { ProvidedWorker, ReleaseRequest, ScaleOutRequest, WorkerProvider } from './provider.js';

export interface CommandProviderOptions {
  scaleOut: readonly string[];
  scaleIn: readonly string[];
  timeoutSeconds: number;
  attempts: number;
  logger: Logger;
  /** First pause between attempts (doubles each time). Default 1 s. */
  firstBackoffMs?: number;
}

export interface CommandRun {
  ok: boolean;
  stdout: string;
  detail: string;
}

/** Runs argv with `input` on stdin; never rejects. A run past `timeoutMs` is killed (SIGKILL) and fails. */
export function runCommand(argv: readonly string[], input: string, timeoutMs: number): Promise<CommandRun> {
  return new Promise((resolve) => {
    const [file, ...args] = argv as [string, ...string[]];
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (d: Buffer) => (stdout = (stdout + d.toString()).slice(-65_536)));
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4096)));
    child.stdin.on('error', () => undefined); // a command that does not read its stdin
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ ok: false, stdout, detail: `cannot run ${file}: ${err.message}` });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) resolve({ ok: false, stdout, detail: `${file} hung: killed after ${timeoutMs} ms` });
      else if (code === 0) resolve({ ok: true, stdout, detail: '' });
      else resolve({ ok: false, stdout, detail: `${file} exited ${code ?? signal}${stderr ? `: ${stderr.trim()}` : ''}` });
    });
    child.stdin.end(input);
  });
}

export class CommandProvider implements WorkerProvider {
  readonly kind = 'command';

  constructor(private readonly opts: CommandProviderOptions) {}

  private async run(argv: readonly string[], description: object): Promise<CommandRun | undefined> {
    const input = `${JSON.stringify(description)}\n`;
    let pause = this.opts.firstBackoffMs ?? 1000;
    for (let attempt = 1; attempt <= this.opts.attempts; attempt++) {
      const run = await runCommand(argv, input, this.opts.timeoutSeconds * 1000);
      if (run.ok) return run;
      const last = attempt === this.opts.attempts;
      this.opts.logger.warn({ attempt, attempts: this.opts.attempts, detail: run.detail, ...(last ? {} : { retryInMs: pause }) }, last ? 'autoscaler: provider command failed: given up' : 'autoscaler: provider command failed: trying again');
      if (!last) {
        await new Promise((r) => setTimeout(r, pause));
        pause *= 2;
      }
    }
    return undefined;
  }

  async scaleOut(req: ScaleOutRequest): Promise<ProvidedWorker[]> {
    const run = await this.run(this.opts.scaleOut, { action: 'scale-out', ...req });
    if (!run) return [];
    try {
      const out = run.stdout.trim() === '' ? {} : (JSON.parse(run.stdout) as { instanceIds?: unknown });
      const ids = Array.isArray((out as { instanceIds?: unknown }).instanceIds) ? ((out as { instanceIds: unknown[] }).instanceIds.filter((i) => typeof i === 'string') as string[]) : [];
      return ids.map((instanceId) => ({ instanceId }));
    } catch {
      this.opts.logger.warn({ stdout: run.stdout.slice(0, 500) }, 'autoscaler: scale-out printed something other than {"instanceIds": [...]}: counting registrations only');
      return [];
    }
  }

  async release(req: ReleaseRequest): Promise<void> {
    if (req.instanceIds.length === 0) return;
    await this.run(this.opts.scaleIn, { action: 'scale-in', ...req });
  }

  async close(): Promise<void> {}
}
