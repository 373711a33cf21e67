/**
 * The server's metrics: one prom-client registry per server, rendered in the Prometheus text format by
 * `GET /metrics` (and `--metrics-port`). Components register what they measure through this wrapper, so
 * nothing else depends on prom-client's registry; gauges that are read from the store or a component are
 * `collect`ed when scraped, never kept up to date on the hot path. Names follow Prometheus's conventions:
 * `remex_` prefix, units in the name (`_seconds`, `_bytes`), counters end in `_total`; no label ever
 * carries a job id (docs/metrics.md lists every metric).
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

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

  /** With `processMetrics`, the Node.js process's own (CPU, memory, event-loop lag) as `remex_process_*`/`remex_nodejs_*`. */
  constructor(opts: { processMetrics?: boolean } = {}) {
    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'remex_' });
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
}
