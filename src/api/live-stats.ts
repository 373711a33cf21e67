/**
 * The dashboard's charts: throughput, queue depth and latency percentiles over the last hour, one point per
 * bucket (5 s), kept in a bounded ring in memory and pushed to watchers as each bucket closes. Fed by the
 * scheduler's observer (the jobs this controller finished) and by a sample of the shared queue at each
 * bucket's end; several controllers each chart the finishes they saw (decision 0028). Lost on restart:
 * durable, fleet-wide series are the metrics endpoint's and Prometheus's job, not this.
 */
import type { Logger } from 'pino';
import type { SchedulerObserver } from '../scheduler/observer.js';
import type { JobRecord } from '../store/ports.js';

export const DEFAULT_STATS_BUCKET_MS = 5_000;
export const DEFAULT_STATS_WINDOW_MS = 60 * 60 * 1000;
/** Latencies kept per bucket to compute its percentiles from (a uniform reservoir beyond that). */
const LATENCY_SAMPLE = 2048;

export interface StatsPoint {
  /** The end of the bucket (epoch ms). */
  atMs: number;
  /** Executions this controller finished in the bucket, and that per second. */
  finished: number;
  throughputPerS: number;
  /** Jobs queued and running in the whole store when the bucket closed. */
  queued: number;
  running: number;
  /** Submit-to-result latency of the bucket's finished executions; null when none finished. */
  p50Ms: number | null;
  p95Ms: number | null;
  p99Ms: number | null;
}

export interface LiveStatsOptions {
  /** Reads the queue depth and running count of the store at a bucket's end. */
  sample: () => Promise<{ queued: number; running: number }>;
  logger: Logger;
  bucketMs?: number;
  windowMs?: number;
  now?: () => number;
}

export type StatsListener = (point: StatsPoint) => void;

export class LiveStats {
  readonly bucketMs: number;
  private readonly capacity: number;
  private readonly ring: StatsPoint[] = [];
  private readonly listeners = new Set<StatsListener>();
  private readonly now: () => number;
  private finished = 0;
  private latencies: number[] = [];
  private timer: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;

  constructor(private readonly opts: LiveStatsOptions) {
    this.bucketMs = opts.bucketMs ?? DEFAULT_STATS_BUCKET_MS;
    this.capacity = Math.ceil((opts.windowMs ?? DEFAULT_STATS_WINDOW_MS) / this.bucketMs);
    this.now = opts.now ?? Date.now;
  }

  /** The observer to hand the scheduler. */
  readonly observer: SchedulerObserver = {
    jobFinished: (job: JobRecord) => this.record(job),
  };

  start(): void {
    this.timer ??= setInterval(() => void this.closeBucket(), this.bucketMs);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.listeners.clear();
  }

  /** The points of the window, oldest first. */
  history(): StatsPoint[] {
    return [...this.ring];
  }

  /** Called with every new point; returns the function that stops it. */
  onPoint(listener: StatsListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private record(job: JobRecord): void {
    this.finished += 1;
    const latencyMs = (job.completedAtMs ?? this.now()) - job.createdAtMs;
    if (this.latencies.length < LATENCY_SAMPLE) this.latencies.push(latencyMs);
    else {
      const slot = Math.floor(Math.random() * this.finished);
      if (slot < LATENCY_SAMPLE) this.latencies[slot] = latencyMs;
    }
  }

  /** Ends the current bucket: one point, pushed to every listener. Public for the tests' sake of no timers. */
  async closeBucket(): Promise<StatsPoint | undefined> {
    // A slow store must not let samples pile up: a bucket that closes while the last one is sampling waits.
    if (this.closing) return undefined;
    const finished = this.finished;
    const latencies = this.latencies.sort((a, b) => a - b);
    this.finished = 0;
    this.latencies = [];
    let depth = { queued: 0, running: 0 };
    const sampling = this.opts.sample().then(
      (d) => void (depth = d),
      (err: unknown) => this.opts.logger.warn({ err }, 'live stats: cannot read the queue depth'),
    );
    this.closing = sampling;
    await sampling;
    this.closing = undefined;
    const point: StatsPoint = {
      atMs: this.now(),
      finished,
      throughputPerS: finished / (this.bucketMs / 1000),
      ...depth,
      p50Ms: percentile(latencies, 0.5),
      p95Ms: percentile(latencies, 0.95),
      p99Ms: percentile(latencies, 0.99),
    };
    this.ring.push(point);
    if (this.ring.length > this.capacity) this.ring.shift();
    for (const listener of this.listeners) {
      try {
        listener(point);
      } catch (err) {
        this.opts.logger.warn({ err }, 'live stats listener failed');
      }
    }
    return point;
  }
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number;
}
