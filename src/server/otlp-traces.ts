/**
 * OpenTelemetry trace export, when configured (`OTEL_EXPORTER_OTLP_ENDPOINT`): each finished execution
 * becomes one span under the submitting request's span (its `traceparent`), with a child span per phase of
 * its timeline, sent in batches as OTLP/HTTP JSON to `<endpoint>/v1/traces`. A scheduler observer: when
 * not configured it is not made at all, so it costs nothing. No SDK (decision 0026): the spans are built
 * from marks remex already keeps. A batch the collector refuses is logged (never with its headers, which
 * may carry credentials) and dropped: tracing never gets in an execution's way.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { executionTimeline } from '../api/execution-timeline.js';
import { parseTraceparent } from '../core/trace-context.js';
import type { SchedulerObserver } from '../scheduler/observer.js';
import type { JobRecord } from '../store/ports.js';

export interface OtlpTraceOptions {
  /** Where spans are POSTed: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`. */
  url: string;
  /** `OTEL_EXPORTER_OTLP_HEADERS` (`k=v,k=v`), sent with every export; never logged. */
  headers: Record<string, string>;
  /** `OTEL_SERVICE_NAME`, default `remex`. */
  serviceName: string;
}

/** The exporter's configuration from the OpenTelemetry environment variables; undefined when none is set. */
export function otlpTraceOptionsOf(env: NodeJS.ProcessEnv): OtlpTraceOptions | undefined {
  const traces = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  const url = traces ? traces : base ? `${base.replace(/\/+$/, '')}/v1/traces` : undefined;
  if (url === undefined) return undefined;
  const headers: Record<string, string> = {};
  for (const pair of (env.OTEL_EXPORTER_OTLP_TRACES_HEADERS ?? env.OTEL_EXPORTER_OTLP_HEADERS ?? '').split(',')) {
    const at = pair.indexOf('=');
    if (at > 0) headers[decodeURIComponent(pair.slice(0, at).trim())] = decodeURIComponent(pair.slice(at + 1).trim());
  }
  return { url, headers, serviceName: env.OTEL_SERVICE_NAME?.trim() || 'remex' };
}

/** Spans held before a batch goes at once; beyond MAX_HELD the oldest are dropped. */
const BATCH_SPANS = 512;
const MAX_HELD = 8192;
const FLUSH_INTERVAL_MS = 2_000;

type Attribute = { key: string; value: { stringValue: string } | { intValue: string } | { boolValue: boolean } };

interface Span {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: Attribute[];
  status: { code: number; message?: string };
}

const SPAN_KIND_INTERNAL = 1;
const SPAN_KIND_SERVER = 2;
const STATUS_OK = 1;
const STATUS_ERROR = 2;

export interface OtlpTraceExporter extends SchedulerObserver {
  /** Sends what is held and stops. */
  close(): Promise<void>;
}

export function otlpTraceExporter(opts: OtlpTraceOptions, logger: Logger): OtlpTraceExporter {
  let held: Span[] = [];
  let sending: Promise<void> = Promise.resolve();
  let closed = false;
  const send = (spans: Span[]): Promise<void> => {
    const body = JSON.stringify({
      resourceSpans: [{ resource: { attributes: [str('service.name', opts.serviceName)] }, scopeSpans: [{ scope: { name: 'remex' }, spans }] }],
    });
    return fetch(opts.url, { method: 'POST', headers: { ...opts.headers, 'content-type': 'application/json' }, body, signal: AbortSignal.timeout(10_000) })
      .then(async (res) => {
        await res.arrayBuffer().catch(() => undefined);
        if (!res.ok) logger.warn({ status: res.status, spans: spans.length }, 'the OTLP collector refused spans; dropped');
      })
      .catch((err: unknown) => logger.warn({ err: err instanceof Error ? err.message : String(err), spans: spans.length }, 'cannot send spans to the OTLP collector; dropped'));
  };
  const flush = (): Promise<void> => {
    if (held.length === 0) return sending;
    const batch = held;
    held = [];
    // One export at a time, in order.
    sending = sending.then(() => send(batch));
    return sending;
  };
  const timer = setInterval(() => void flush(), FLUSH_INTERVAL_MS);
  timer.unref();
  return {
    jobFinished(job) {
      if (closed) return;
      held.push(...spansOf(job));
      if (held.length > MAX_HELD) held.splice(0, held.length - MAX_HELD);
      if (held.length >= BATCH_SPANS) void flush();
    },
    async close() {
      closed = true;
      clearInterval(timer);
      await flush();
    },
  };
}

/** One execution's spans: itself, under the caller's span, and one per phase of its timeline. */
export function spansOf(job: JobRecord): Span[] {
  const caller = parseTraceparent(job.spec.traceparent);
  const traceId = caller?.traceId ?? randomBytes(16).toString('hex');
  const spanId = randomBytes(8).toString('hex');
  const timeline = executionTimeline(job);
  const start = timeline[0]?.atMs ?? job.createdAtMs;
  const end = job.completedAtMs ?? Date.now();
  const failed = job.state !== 'completed';
  const attributes = [
    str('remex.job_id', job.id),
    str('remex.platform', job.platform),
    str('remex.state', job.state),
    { key: 'remex.cached', value: { boolValue: job.cached } },
    { key: 'remex.attempt', value: { intValue: String(job.attempt) } },
    ...(job.result ? [str('remex.worker', job.result.worker), { key: 'remex.exit_code', value: { intValue: String(job.result.exitCode ?? -1) } }] : []),
    ...(job.failure ? [str('remex.failure', job.failure.code)] : []),
  ];
  const root: Span = {
    traceId,
    spanId,
    ...(caller ? { parentSpanId: caller.spanId } : {}),
    name: 'remex execution',
    kind: SPAN_KIND_SERVER,
    startTimeUnixNano: nanos(start),
    endTimeUnixNano: nanos(Math.max(start, end)),
    attributes,
    status: failed ? { code: STATUS_ERROR, message: job.failure?.message ?? job.state } : { code: STATUS_OK },
  };
  const phases = timeline
    .filter((e) => e.durationMs !== undefined)
    .map(
      (e): Span => ({
        traceId,
        spanId: randomBytes(8).toString('hex'),
        parentSpanId: spanId,
        name: e.phase,
        kind: SPAN_KIND_INTERNAL,
        startTimeUnixNano: nanos(e.atMs),
        endTimeUnixNano: nanos(e.atMs + (e.durationMs ?? 0)),
        attributes: [],
        status: { code: STATUS_OK },
      }),
    );
  return [root, ...phases];
}

function str(key: string, value: string): Attribute {
  return { key, value: { stringValue: value } };
}

function nanos(ms: number): string {
  return `${BigInt(Math.round(ms)) * 1_000_000n}`;
}
