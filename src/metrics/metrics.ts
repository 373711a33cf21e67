/**
 * The server's metrics: one prom-client registry per server, rendered in the Prometheus text format by
 * `GET /metrics` (and `--metrics-port`). Components register what they measure through this wrapper, so
 * nothing else depends on prom-client's registry; gauges that are read from the store or a component are
 * `collect`ed when scraped, never kept up to date on the hot path. Names follow Prometheus's conventions:
 * `remex_` prefix, units in the name (`_seconds`, `_bytes`), counters end in `_total`; no label ever
 * carries a job id (docs/metrics.md lists every metric).
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export type { Counter, Gauge, Histogram } from 'prom-client';

/** What a gauge's scrape-time reading sets: `set(labels, value)` for each series it reports. */
export type GaugeReading<L extends string> = (set: (labels: Partial<Record<L, string>>, value: number) => void) => void | Promise<void>;

export interface MetricDefinition<L extends string> {
  /** Prometheus name, with the `remex_` prefix and its unit. */
  name: string;
  help: string;
  labelNames?: readonly L[];
}

/** Latency buckets from a millisecond to a minute, in seconds (requests, staging, collection). */
export const LATENCY_BUCKETS_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Job time buckets from 10 ms to a day, in seconds (queue, execution, end to end). */
export const JOB_BUCKETS_SECONDS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600];

export class Metrics {
  private readonly registry = new Registry();

  /** With `processMetrics` (default), the process's own: CPU, memory, event-loop delay. */
  constructor(opts: { processMetrics?: boolean } = {}) {
    if (opts.processMetrics ?? true) this.processMetrics();
  }

  /** The Content-Type of {@link render}'s text. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Every registered metric in the Prometheus text format (gauges with a reading are read now). */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  counter<L extends string>(def: MetricDefinition<L>): Counter<L> {
    return new Counter<L>({ name: def.name, help: def.help, labelNames: def.labelNames ?? [], registers: [this.registry] });
  }

  histogram<L extends string>(def: MetricDefinition<L> & { buckets: readonly number[] }): Histogram<L> {
    return new Histogram<L>({ name: def.name, help: def.help, labelNames: def.labelNames ?? [], buckets: [...def.buckets], registers: [this.registry] });
  }

  /**
   * A gauge. With `read`, its series are what `read` sets at each scrape (series it no longer sets are
   * dropped): for values another component owns, such as the autoscaler's desired and actual workers.
   */
  gauge<L extends string>(def: MetricDefinition<L> & { read?: GaugeReading<L> }): Gauge<L> {
    const read = def.read;
    return new Gauge<L>({
      name: def.name,
      help: def.help,
      labelNames: def.labelNames ?? [],
      registers: [this.registry],
      ...(read
        ? {
            async collect(this: Gauge<L>) {
              this.reset();
              await read((labels, value) => this.set(labels, value));
            },
          }
        : {}),
    });
  }

  /**
   * A few of the process's own (prom-client's default set names some gauges `_total`, which promtool refuses):
   * CPU seconds, resident and heap bytes, and the event loop's delay (a busy controller answers late).
   */
  private processMetrics(): void {
    const delay = monitorEventLoopDelay({ resolution: 20 });
    delay.enable();
    // Never keeps the process alive: the histogram's timer is unref'd by Node.
    new Counter({
      name: 'remex_process_cpu_seconds_total',
      help: 'CPU time of this process (user and system), seconds.',
      registers: [this.registry],
      collect(this: Counter) {
        const usage = process.cpuUsage();
        this.reset();
        this.inc((usage.user + usage.system) / 1e6);
      },
    });
    this.gauge({ name: 'remex_process_resident_memory_bytes', help: 'Resident memory of this process.', read: (set) => set({}, process.memoryUsage.rss()) });
    this.gauge({ name: 'remex_process_heap_used_bytes', help: 'JavaScript heap in use.', read: (set) => set({}, process.memoryUsage().heapUsed) });
    this.gauge({
      name: 'remex_process_event_loop_delay_seconds',
      help: 'The event loop’s delay since the last scrape: its 99th percentile.',
      read: (set) => {
        set({}, Number.isFinite(delay.percentile(99)) ? delay.percentile(99) / 1e9 : 0);
        delay.reset();
      },
    });
  }
}
