/**
 * Completion webhooks: when a job that named a `notify` URL ends, the controller that recorded its end
 * POSTs its execution object there, signed with an HMAC-SHA256 of the body under the server's secret
 * (`X-Remex-Signature: sha256=<hex>`), and retries with back-off until the receiver answers 2xx or the
 * tries run out. It never blocks the job's completion: delivery runs beside it, a bounded number at once,
 * and a receiver that never answers costs one timer per try.
 */
import { createHmac } from 'node:crypto';
import type { Logger } from 'pino';
import { isTerminal } from '../core/model.js';
import type { EventBus } from '../events/event-bus.js';
import type { JobRecord } from '../store/ports.js';
import { executionView } from './execution-view.js';

export interface WebhookOptions {
  secret: string;
  logger: Logger;
  /** Tries per notice (the first included). */
  attempts?: number;
  /** Pause before the second try; doubled each time after. */
  firstRetryMs?: number;
  /** Longest wait for one answer. */
  timeoutMs?: number;
  /** Notices being delivered at once; more wait their turn, and past `maxQueued` the oldest waiting is dropped. */
  concurrency?: number;
  maxQueued?: number;
}

export const SIGNATURE_HEADER = 'x-remex-signature';

/** `sha256=<hex>` of `body` under `secret`: what a receiver recomputes to trust a notice. */
export function signatureOf(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

export class WebhookNotifier {
  private readonly attempts: number;
  private readonly firstRetryMs: number;
  private readonly timeoutMs: number;
  private readonly concurrency: number;
  private readonly maxQueued: number;
  private readonly waiting: JobRecord[] = [];
  private active = 0;
  private readonly inFlight = new Set<AbortController>();
  private stopped = false;
  private readonly unsubscribe: () => void;

  constructor(events: EventBus, private readonly opts: WebhookOptions) {
    this.attempts = opts.attempts ?? 6;
    this.firstRetryMs = opts.firstRetryMs ?? 1_000;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.concurrency = opts.concurrency ?? 8;
    this.maxQueued = opts.maxQueued ?? 1_000;
    // This controller's own job changes: each end is published once, by the controller that recorded it.
    this.unsubscribe = events.subscribeAll((job) => {
      if (job.notifyUrl !== null && isTerminal(job.state)) this.enqueue(job);
    });
  }

  /** Stops taking notices and abandons those under way (a stopping server). */
  close(): void {
    this.stopped = true;
    this.unsubscribe();
    for (const abort of this.inFlight) abort.abort();
    this.waiting.length = 0;
  }

  private enqueue(job: JobRecord): void {
    if (this.stopped) return;
    if (this.waiting.length >= this.maxQueued) {
      const dropped = this.waiting.shift();
      this.opts.logger.warn({ jobId: dropped?.id }, 'webhook queue full: the oldest waiting notice is dropped');
    }
    this.waiting.push(job);
    this.pump();
  }

  private pump(): void {
    while (this.active < this.concurrency && this.waiting.length > 0) {
      const job = this.waiting.shift() as JobRecord;
      this.active++;
      void this.deliver(job).finally(() => {
        this.active--;
        this.pump();
      });
    }
  }

  private async deliver(job: JobRecord): Promise<void> {
    const url = job.notifyUrl as string;
    const body = JSON.stringify({ event: 'execution.finished', execution: executionView(job) });
    const signature = signatureOf(this.opts.secret, body);
    for (let attempt = 1; attempt <= this.attempts && !this.stopped; attempt++) {
      const abort = new AbortController();
      this.inFlight.add(abort);
      const timer = setTimeout(() => abort.abort(), this.timeoutMs);
      let outcome: string;
      try {
        const res = await fetch(url, {
          method: 'POST',
          body,
          headers: { 'content-type': 'application/json', [SIGNATURE_HEADER]: signature, 'x-remex-delivery': `${job.id}/${attempt}` },
          signal: abort.signal,
          redirect: 'manual',
        });
        await res.body?.cancel();
        if (res.status >= 200 && res.status < 300) return;
        outcome = `HTTP ${res.status}`;
      } catch (err) {
        outcome = abort.signal.aborted ? `no answer within ${this.timeoutMs} ms` : (err as Error).message;
      } finally {
        clearTimeout(timer);
        this.inFlight.delete(abort);
      }
      const last = attempt === this.attempts;
      // The URL is the job owner's and may carry a token in its query: only its origin is logged.
      this.opts.logger[last ? 'error' : 'warn']({ jobId: job.id, to: new URL(url).origin, attempt, outcome }, last ? 'webhook not delivered; giving up' : 'webhook not delivered; trying again');
      if (!last) await new Promise((resolve) => setTimeout(resolve, this.firstRetryMs * 2 ** (attempt - 1)).unref());
    }
  }
}
