/**
 * Finished jobs are kept for `remex serve --retain` (default 7 days), then removed by a periodic sweep:
 * their rows, with their results and failure records. What else only they used goes its own way: their
 * stdout, stderr and output blobs are ordinary CAS blobs, evicted when no longer used under
 * `--cas-max-bytes` (or by an S3 bucket's lifecycle rules: docs/deploy.md); their log lines were never
 * stored (the event relay streams them live). Every controller sweeps; with PostgreSQL they skip the rows
 * another is deleting.
 */
import type { Logger } from 'pino';
import type { JobStore } from '../store/ports.js';

export const DEFAULT_RETAIN_MS = 7 * 24 * 3_600_000;
/** Jobs deleted per statement: a long backlog goes in slices, never one long transaction. */
const BATCH = 1000;

export interface RetentionOptions {
  retainMs: number;
  /** Between sweeps (default: a tenth of retainMs, at least 1 s and at most an hour). */
  intervalMs?: number;
  now?: () => number;
  logger: Logger;
}

export class RetentionSweep {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | undefined;

  constructor(
    private readonly jobs: JobStore,
    private readonly opts: RetentionOptions,
  ) {}

  start(): void {
    const interval = this.opts.intervalMs ?? Math.min(3_600_000, Math.max(1000, Math.floor(this.opts.retainMs / 10)));
    this.timer = setInterval(() => void this.sweep().catch((err: unknown) => this.opts.logger.warn({ err }, 'retention sweep failed; retrying at the next one')), interval);
    this.timer.unref();
  }

  /** Removes every finished job completed more than retainMs ago; how many went. One sweep at a time. */
  sweep(): Promise<number> {
    this.running ??= this.sweepOnce().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.running?.catch(() => undefined);
  }

  private async sweepOnce(): Promise<number> {
    const cutoff = (this.opts.now ?? Date.now)() - this.opts.retainMs;
    let total = 0;
    for (;;) {
      const n = await this.jobs.deleteFinishedBefore(cutoff, BATCH);
      total += n;
      if (n < BATCH) break;
    }
    if (total > 0) this.opts.logger.info({ removed: total, retainMs: this.opts.retainMs }, 'finished jobs past their retention removed');
    return total;
  }
}
