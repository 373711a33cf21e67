/**
 * What the front doors, the backends and the local worker pool count: HTTP requests and gRPC calls by
 * method and code with their latency, the CAS bytes that come in and go out through the doors, the event
 * bus's lag and the database's connection pool, and the pool's settled results and failed calls. Each is a plain callback or observer the composition root hands to its
 * component, so the doors never import prom-client.
 */
import type { BlobStore } from '../cas/blob-store.js';
import type { WorkerObserver } from '../worker/observer.js';
import { LATENCY_BUCKETS_SECONDS } from './metrics.js';
import type { Metrics } from './metrics.js';

/** Told when an HTTP request was answered: its route pattern (never the path: no ids in labels). */
export type HttpRequestRecorder = (method: string, route: string, statusCode: number, seconds: number) => void;
/** Told when a gRPC call ended: its full method path and its status code's name. */
export type GrpcCallRecorder = (method: string, code: string, seconds: number) => void;

export function httpRequestMetrics(metrics: Metrics): HttpRequestRecorder {
  const requests = metrics.counter({ name: 'remex_http_requests_total', help: 'HTTP requests answered, by method, route and status code.', labelNames: ['method', 'route', 'code'] });
  const latency = metrics.histogram({ name: 'remex_http_request_duration_seconds', help: 'HTTP request latency, by method and route.', labelNames: ['method', 'route'], buckets: LATENCY_BUCKETS_SECONDS });
  return (method, route, statusCode, seconds) => {
    requests.inc({ method, route, code: String(statusCode) });
    latency.observe({ method, route }, seconds);
  };
}

export function grpcCallMetrics(metrics: Metrics): GrpcCallRecorder {
  const calls = metrics.counter({ name: 'remex_grpc_requests_total', help: 'gRPC calls ended, by method and status code.', labelNames: ['method', 'code'] });
  const latency = metrics.histogram({ name: 'remex_grpc_request_duration_seconds', help: 'gRPC call latency, by method.', labelNames: ['method'], buckets: LATENCY_BUCKETS_SECONDS });
  return (method, code, seconds) => {
    calls.inc({ method, code });
    latency.observe({ method }, seconds);
  };
}

/**
 * The doors' view of the blob store, counting what comes in (stored) and goes out (read) through it; every
 * other call, and every property, is the store's own.
 */
export function meteredBlobStore(metrics: Metrics, blobs: BlobStore): BlobStore {
  const bytesIn = metrics.counter({ name: 'remex_cas_bytes_in_total', help: 'Blob bytes stored through the front doors.' });
  const bytesOut = metrics.counter({ name: 'remex_cas_bytes_out_total', help: 'Blob bytes read through the front doors (whole blobs or ranges).' });
  const stored = metrics.counter({ name: 'remex_cas_blobs_stored_total', help: 'Blobs stored through the front doors (idempotent puts of present blobs included).' });
  const metered: Partial<BlobStore> = {
    async put(d, data) {
      await blobs.put(d, data);
      bytesIn.inc(data.byteLength);
      stored.inc();
    },
    async putStream(d, source) {
      await blobs.putStream(d, source);
      bytesIn.inc(d.sizeBytes);
      stored.inc();
    },
    async putFile(path) {
      const d = await blobs.putFile(path);
      bytesIn.inc(d.sizeBytes);
      stored.inc();
      return d;
    },
    async get(d) {
      const data = await blobs.get(d);
      bytesOut.inc(data.byteLength);
      return data;
    },
    async getStream(d, range) {
      const offset = range?.offset ?? 0;
      const length = Math.max(0, Math.min(d.sizeBytes - offset, range?.limit ? range.limit : Infinity));
      const stream = await blobs.getStream(d, range);
      bytesOut.inc(length);
      return stream;
    },
  };
  const bound = new Map<string | symbol, unknown>();
  return new Proxy(blobs, {
    get(target, key) {
      const own = (metered as Record<string | symbol, unknown>)[key];
      if (own !== undefined) return own;
      const value: unknown = Reflect.get(target, key, target);
      if (typeof value !== 'function') return value;
      let fn = bound.get(key);
      if (fn === undefined) bound.set(key, (fn = (value as (...args: unknown[]) => unknown).bind(target)));
      return fn;
    },
  });
}

/** The event bus's lag between controllers: how late a job change announced by another controller arrived. */
export function eventBusLagMetric(metrics: Metrics): (ms: number) => void {
  const lag = metrics.histogram({ name: 'remex_event_bus_lag_seconds', help: 'How late job changes announced by other controllers arrived (NOTIFY, by the controllers’ clocks).', buckets: LATENCY_BUCKETS_SECONDS });
  return (ms) => lag.observe(ms / 1000);
}

/** The database's connection pool (PostgreSQL), read when scraped. */
export function storePoolMetric(metrics: Metrics, poolStats: () => { total: number; idle: number; waiting: number }): void {
  metrics.gauge({
    name: 'remex_store_connections',
    help: 'The database connection pool: connections idle and in use, and callers waiting for one.',
    labelNames: ['state'],
    read: (set) => {
      const p = poolStats();
      set({ state: 'idle' }, p.idle);
      set({ state: 'busy' }, p.total - p.idle);
      set({ state: 'waiting' }, p.waiting);
    },
  });
}

/** The local pool's results and failed calls (a remote worker's show in the fleet gauges and the executions it completes). */
export function workerMetrics(metrics: Metrics): WorkerObserver {
  const settled = metrics.counter({ name: 'remex_worker_results_total', help: 'Results of the local pool by fate: committed, stale (the lease was no longer its), abandoned.', labelNames: ['how'] });
  const failedCalls = metrics.counter({ name: 'remex_worker_call_failures_total', help: 'Calls of the local pool to the scheduler that failed, by call.', labelNames: ['call'] });
  for (const how of ['committed', 'stale', 'abandoned']) settled.inc({ how }, 0);
  return {
    resultSettled(_jobId, _attempt, how) {
      settled.inc({ how });
    },
    callFailed(call) {
      failedCalls.inc({ call });
    },
  };
}
