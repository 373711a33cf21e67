/**
 * What the dashboard watches on the event relay's socket, beside `subscribe` and `follow`:
 *
 * - `watch: jobs` — every job change on any controller, as compact summaries batched per
 *   {@link JOBS_FLUSH_MS} (the latest state of each job changed in that time):
 *   `{"event":"jobs","jobs":[{id,state,platform,name,labels,createdAt,attempt,worker,code,execTime}]}`.
 *   Past {@link MAX_PENDING_JOBS} changes waiting on a slow socket it sends `{"event":"jobs","jobs":[],
 *   "overflow":true}` once and drops the rest: the page reads the list again.
 * - `watch: workers` — `{"event":"worker","workerId","state","atMs"}` as workers register, drain and leave.
 * - `watch: stats` — the last hour's points at once, `{"event":"stats","bucketMs","points":[…]}`, then each
 *   new point alone in the same shape (live-stats.ts).
 * - `unwatch: <topic>` stops one.
 */
import type { WebSocket } from 'ws';
import type { JobRecord } from '../../store/ports.js';
import type { Scheduler } from '../../scheduler/scheduler.js';
import type { LiveStats } from '../live-stats.js';

export const JOBS_FLUSH_MS = 200;
export const MAX_PENDING_JOBS = 20_000;
/** A socket with more than this unsent is slow: job batches wait for it (and merge meanwhile). */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

const TOPICS = ['jobs', 'workers', 'stats'] as const;
type Topic = (typeof TOPICS)[number];

export interface JobSummary {
  id: string;
  state: JobRecord['state'];
  platform: string;
  name: string | null;
  labels: Record<string, string>;
  createdAt: string;
  attempt: number;
  worker: string | null;
  code: number | null;
  execTime: number | null;
}

export function jobSummary(job: JobRecord): JobSummary {
  const r = job.result;
  return {
    id: job.id,
    state: job.state,
    platform: job.platform,
    name: job.name,
    labels: job.labels,
    createdAt: new Date(job.createdAtMs).toISOString(),
    attempt: job.attempt,
    worker: r?.worker ?? job.leaseOwner,
    code: r ? (r.exitCode ?? -1) : null,
    execTime: r ? r.wallTimeMs : null,
  };
}

export class DashboardFeed {
  private readonly watching = new Map<Topic, () => void>();
  private pending = new Map<string, JobRecord>();
  private overflowed = false;
  private flushTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly ws: WebSocket,
    private readonly scheduler: Scheduler,
    private readonly stats: LiveStats | undefined,
    private readonly refuse: (detail: string) => void,
  ) {}

  /** Handles `watch: <topic>` and `unwatch: <topic>`; false for any other message. */
  handle(text: string): boolean {
    const m = /^(watch|unwatch):\s*(\S+)$/.exec(text);
    if (!m) return false;
    const [, verb, topic] = m as unknown as [string, string, string];
    if (!(TOPICS as readonly string[]).includes(topic)) {
      this.refuse(`no topic ${JSON.stringify(topic)} to ${verb}: expected ${TOPICS.join(', ')}`);
      return true;
    }
    if (verb === 'unwatch') this.stop(topic as Topic);
    else if (!this.watching.has(topic as Topic)) this.watching.set(topic as Topic, this.start(topic as Topic));
    return true;
  }

  close(): void {
    for (const topic of [...this.watching.keys()]) this.stop(topic);
  }

  private stop(topic: Topic): void {
    this.watching.get(topic)?.();
    this.watching.delete(topic);
  }

  private start(topic: Topic): () => void {
    switch (topic) {
      case 'jobs': {
        const stop = this.scheduler.events.subscribeKind('job', (event) => this.queue(event.job));
        this.flushTimer = setInterval(() => this.flush(), JOBS_FLUSH_MS);
        return () => {
          stop();
          clearInterval(this.flushTimer);
          this.pending.clear();
        };
      }
      case 'workers':
        return this.scheduler.events.subscribeKind('worker', ({ workerId, state, atMs }) => this.send({ event: 'worker', workerId, state, atMs }));
      case 'stats': {
        const stats = this.stats;
        if (!stats) {
          this.send({ event: 'stats', bucketMs: 0, points: [] });
          return () => undefined;
        }
        this.send({ event: 'stats', bucketMs: stats.bucketMs, points: stats.history() });
        return stats.onPoint((point) => this.send({ event: 'stats', bucketMs: stats.bucketMs, points: [point] }));
      }
    }
  }

  private queue(job: JobRecord): void {
    if (this.overflowed) return;
    // Events come in publish order (never an older version after a newer one): the last one stands.
    if (!this.pending.has(job.id) && this.pending.size >= MAX_PENDING_JOBS) {
      this.overflowed = true;
      this.pending.clear();
      return this.send({ event: 'jobs', jobs: [], overflow: true });
    }
    this.pending.set(job.id, job);
  }

  private flush(): void {
    if (this.ws.bufferedAmount > MAX_BUFFERED_BYTES) return;
    // After an overflow the page reads the list again: changes from now on are news to it.
    this.overflowed = false;
    if (this.pending.size === 0) return;
    const jobs = [...this.pending.values()].map(jobSummary);
    this.pending = new Map();
    this.send({ event: 'jobs', jobs });
  }

  private send(frame: object): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(JSON.stringify(frame));
  }
}
