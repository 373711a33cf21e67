/**
 * The `local-process` provider: each worker is a real `remex worker` process on this host, started with the
 * pool's slots, platforms and labels and an instance id of its own. A drained worker exits by itself (exit
 * 0); `release` only signals a process that is still there after its worker left (SIGTERM, which drains
 * again: a job is never killed). The default for one machine, and what the tests use.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { ProvidedWorker, ReleaseRequest, ScaleOutRequest, WorkerProvider } from './provider.js';

export interface LocalProcessProviderOptions {
  /** The `remex` entry point (bin/remex.js). */
  remexBin: string;
  /** Each worker gets `<workRoot>/<instance id>`. */
  workRoot: string;
  extraArgs?: readonly string[];
  logger: Logger;
  /** Environment of the workers (a worker token, say). Default: this process's. */
  env?: NodeJS.ProcessEnv;
}

export class LocalProcessProvider implements WorkerProvider {
  readonly kind = 'local-process';
  private readonly children = new Map<string, ChildProcess>();

  constructor(private readonly opts: LocalProcessProviderOptions) {}

  /** Instance ids of the worker processes alive now. */
  get running(): string[] {
    return [...this.children.keys()];
  }

  async scaleOut(req: ScaleOutRequest): Promise<ProvidedWorker[]> {
    const started: ProvidedWorker[] = [];
    for (let i = 0; i < req.count; i++) {
      const instanceId = `lp-${randomUUID().slice(0, 8)}`;
      const args = [
        this.opts.remexBin, 'worker',
        '--server', req.servers.join(','),
        '--slots', String(req.slotsPerWorker),
        '--name', `${req.pool}-${instanceId}`,
        '--work-dir', join(this.opts.workRoot, instanceId),
        '--instance-id', instanceId,
        ...req.platforms.flatMap((p) => ['--platform', p]),
        ...Object.entries(req.labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]),
        ...(this.opts.extraArgs ?? []),
      ];
      try {
        const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env: this.opts.env ?? process.env });
        let tail = '';
        child.stderr?.on('data', (d: Buffer) => {
          tail = (tail + d.toString()).slice(-2000);
        });
        child.on('error', (err) => this.opts.logger.warn({ err, instanceId }, 'autoscaler: worker process error'));
        child.on('exit', (code, signal) => {
          this.children.delete(instanceId);
          const level = code === 0 ? 'info' : 'warn';
          this.opts.logger[level]({ instanceId, code, signal, ...(code === 0 ? {} : { stderr: tail }) }, 'autoscaler: worker process exited');
        });
        this.children.set(instanceId, child);
        started.push({ instanceId });
      } catch (err) {
        this.opts.logger.warn({ err, pool: req.pool }, 'autoscaler: cannot start a worker process');
      }
    }
    return started;
  }

  async release(req: ReleaseRequest): Promise<void> {
    for (const id of req.instanceIds) this.children.get(id)?.kill('SIGTERM');
  }

  async close(): Promise<void> {
    const exits = [...this.children.values()].map((c) => new Promise<void>((resolve) => (c.exitCode !== null || c.signalCode !== null ? resolve() : c.once('exit', () => resolve()))));
    for (const c of this.children.values()) c.kill('SIGTERM');
    await Promise.all(exits);
  }
}
