/**
 * The JSON shape of one execution, shared by the HTTP API and the WebSocket events. It carries
 * Compiler Explorer's result fields (guid, code, stdout/stderr as [{text}], execTime, timedOut, truncated,
 * okToCache) beside remex's own.
 */
import { costOf, isCacheable } from '../core/model.js';
import { traceIdOf } from '../core/trace-context.js';
import type { LimitKind } from '../core/limits.js';
import type { HostInfo, JobFailure, JobProgress, OutputStream } from '../core/model.js';
import type { JobRecord } from '../store/ports.js';
import { executionTimeline } from './execution-timeline.js';
import type { TimelineEntry } from './execution-timeline.js';

export interface OutputView {
  digest: { hash: string; sizeBytes: number };
  /** Bytes kept, base64, when small enough to travel inline; otherwise fetch the blob by digest. */
  base64: string | null;
  totalBytes: number;
  truncated: boolean;
}

export interface ExecutionView {
  id: string;
  guid: string;
  state: JobRecord['state'];
  platform: string;
  attempt: number;
  cached: boolean;
  createdAt: string;
  queueTimeMs: number;
  worker: string | null;
  emulated: boolean | null;
  // Compiler Explorer's result fields; present once the run has ended.
  code: number | null;
  stdout: Array<{ text: string }>;
  stderr: Array<{ text: string }>;
  execTime: number | null;
  timedOut: boolean;
  truncated: boolean;
  okToCache: boolean;
  // remex's own.
  signal: string | null;
  cpuTimeMs: number | null;
  maxRssKb: number | null;
  limitExceeded: LimitKind | null;
  output: { stdout: OutputView; stderr: OutputView } | null;
  outputFiles: Array<{ path: string; digest: { hash: string; sizeBytes: number }; isExecutable: boolean }>;
  /** The machine it ran on, and what its worker costs per hour. */
  host: HostInfo | null;
  /** price per hour × run time × its share of the worker's slots; null without a price. */
  cost: number | null;
  /** Output directories as REAPI Tree blobs (the results directory among them, as `.remex-results`). */
  outputDirectories: Array<{ path: string; treeDigest: { hash: string; sizeBytes: number } }>;
  failure: JobFailure | null;
  name: string | null;
  labels: Record<string, string>;
  /** Runs at most once (a lost worker fails it as LOST). */
  noRetry: boolean;
  /** What the program last said of its progress (jobs with a progress channel), with earlier percentages. */
  progress: JobProgress | null;
  /** When its current attempt started running, and when it ended (ISO 8601). */
  startedAt: string | null;
  completedAt: string | null;
  /** The command line it runs (argv; the program first). */
  arguments: string[];
  /** Where its time went: each phase reached (queued, leased, staged, running, outputs_stored, completed), in order. */
  timeline: TimelineEntry[];
  /** The W3C trace id of the request that submitted it (core/trace-context.ts), for finding its log lines. */
  traceId: string | null;
}

function lines(stream: OutputStream | undefined): Array<{ text: string }> {
  if (!stream || stream.inlineBase64 === null) return [];
  const text = Buffer.from(stream.inlineBase64, 'base64').toString('utf8');
  if (text === '') return [];
  const parts = text.split('\n');
  if (parts[parts.length - 1] === '') parts.pop();
  return parts.map((t) => ({ text: t }));
}

function outputView(s: OutputStream): OutputView {
  return { digest: { hash: s.digest.hash, sizeBytes: s.digest.sizeBytes }, base64: s.inlineBase64, totalBytes: s.totalBytes, truncated: s.truncated };
}

export function executionView(job: JobRecord): ExecutionView {
  const r = job.result;
  const cost = r ? costOf(r) : null;
  return {
    id: job.id,
    guid: job.id,
    state: job.state,
    platform: job.platform,
    attempt: job.attempt,
    cached: job.cached,
    createdAt: new Date(job.createdAtMs).toISOString(),
    queueTimeMs: job.state === 'queued' ? Math.max(0, Date.now() - job.queuedAtMs) + job.queueTimeMs : job.queueTimeMs,
    worker: r?.worker ?? job.leaseOwner,
    emulated: r ? r.emulated : null,
    code: r ? (r.exitCode ?? -1) : null,
    stdout: lines(r?.stdout),
    stderr: lines(r?.stderr),
    execTime: r ? r.wallTimeMs : null,
    timedOut: r?.timedOut ?? job.state === 'timed_out',
    truncated: r ? r.stdout.truncated || r.stderr.truncated : false,
    okToCache: job.state === 'completed' && r !== null && !job.spec.doNotCache && isCacheable(r),
    signal: r?.signal ?? null,
    cpuTimeMs: r?.cpuTimeMs ?? null,
    maxRssKb: r?.maxRssKb ?? null,
    limitExceeded: r?.limitExceeded ?? null,
    output: r ? { stdout: outputView(r.stdout), stderr: outputView(r.stderr) } : null,
    outputFiles: r?.outputFiles ?? [],
    outputDirectories: r?.outputDirectories ?? [],
    host: r?.host ?? null,
    // A cached result ran nothing now: it costs nothing (where the worker has a price at all).
    cost: job.cached && cost !== null ? 0 : cost,
    failure: job.failure,
    name: job.name,
    labels: job.labels,
    noRetry: job.noRetry,
    progress: job.progress,
    startedAt: job.startedAtMs !== null ? new Date(job.startedAtMs).toISOString() : null,
    completedAt: job.completedAtMs !== null ? new Date(job.completedAtMs).toISOString() : null,
    arguments: job.spec.command.arguments,
    timeline: executionTimeline(job),
    traceId: traceIdOf(job.spec.traceparent) ?? null,
  };
}

