/**
 * The events an EventBus carries, and their bounds. Every event is small by construction (a log chunk at
 * most {@link MAX_LOG_CHUNK_BYTES}, a progress message and its metrics capped), so a bus never holds or
 * sends more than a bounded amount per event; `checkEvent` enforces the bounds at publish and on what a
 * networked bus receives, so a listener can trust an event's shape.
 */
import { InvalidArgumentError } from '../core/errors.js';
import type { JobRecord } from '../store/ports.js';

/** A job's state changed: the record as it now is. */
export interface JobEvent {
  readonly kind: 'job';
  readonly job: JobRecord;
}

/** How far a running job has got, as its program said. */
export interface ProgressEvent {
  readonly kind: 'progress';
  readonly jobId: string;
  /** Which run of the job (JobRecord.attempt): a job run again starts its progress afresh. */
  readonly attempt: number;
  /** 0 to 100. */
  readonly percent: number;
  /** At most {@link MAX_PROGRESS_MESSAGE_CHARS} characters. */
  readonly message?: string;
  /** Named figures (`triad_mbps`), at most {@link MAX_PROGRESS_METRICS}; names match {@link METRIC_NAME}, values are finite. */
  readonly metrics?: Readonly<Record<string, number>>;
  /** When the program reported it (epoch ms). */
  readonly atMs: number;
}

export type LogStream = 'stdout' | 'stderr';

/** A chunk of a running job's output: bytes `offset` to `offset + data.length` of one stream of one run. */
export interface LogEvent {
  readonly kind: 'log';
  readonly jobId: string;
  /** Which run of the job: a run again writes its streams from offset 0. */
  readonly attempt: number;
  readonly stream: LogStream;
  /** Of the chunk's first byte in the stream; a listener that sees a gap knows it missed a chunk. */
  readonly offset: number;
  /**
   * 1 to {@link MAX_LOG_CHUNK_BYTES} bytes. A networked bus may hand them on in smaller consecutive chunks:
   * the bytes and offsets are kept, chunk boundaries are not.
   */
  readonly data: Uint8Array;
  readonly atMs: number;
}

export type WorkerEventState = 'registered' | 'draining' | 'drained' | 'gone';

/** A worker joined, was asked to drain, finished draining, or left (unregistered or its lease lapsed). */
export interface WorkerEvent {
  readonly kind: 'worker';
  readonly workerId: string;
  readonly state: WorkerEventState;
  readonly atMs: number;
}

export type BusEvent = JobEvent | ProgressEvent | LogEvent | WorkerEvent;
export type EventKind = BusEvent['kind'];
export type EventOfKind<K extends EventKind> = Extract<BusEvent, { kind: K }>;
/** The events that belong to one job: what a follower of that job hears. */
export type JobScopedEvent = JobEvent | ProgressEvent | LogEvent;

export const EVENT_KINDS: readonly EventKind[] = ['job', 'progress', 'log', 'worker'];
export const WORKER_EVENT_STATES: readonly WorkerEventState[] = ['registered', 'draining', 'drained', 'gone'];

/** Small enough that a publisher batching a fast stream holds little, large enough that a chunk per heartbeat keeps up. */
export const MAX_LOG_CHUNK_BYTES = 64 * 1024;
export const MAX_PROGRESS_MESSAGE_CHARS = 256;
export const MAX_PROGRESS_METRICS = 16;
/** A letter first: no `__proto__`, and names read as identifiers in a table or a JSON path. */
export const METRIC_NAME = /^[A-Za-z][A-Za-z0-9_.:-]{0,63}$/;
/** Of a job id or worker id in an event other than `job` (a job's record is the store's). */
export const MAX_EVENT_ID_CHARS = 256;

/** The job an event belongs to, or undefined for a worker event. */
export function jobIdOf(event: BusEvent): string | undefined {
  switch (event.kind) {
    case 'job':
      return event.job.id;
    case 'progress':
    case 'log':
      return event.jobId;
    case 'worker':
      return undefined;
  }
}

/**
 * Throws InvalidArgumentError unless `event` is well formed and within its bounds. Checks the types too, not
 * only what TypeScript already promises: a networked bus runs it on what another controller sent.
 */
export function checkEvent(event: BusEvent): void {
  const bad = (what: string): never => {
    throw new InvalidArgumentError(`${String((event as { kind?: unknown }).kind)} event: ${what}`);
  };
  const timeOk = (ms: unknown): boolean => Number.isSafeInteger(ms) && (ms as number) >= 0;
  switch (event.kind) {
    case 'job':
      if (typeof event.job?.id !== 'string') bad('no job record');
      return;
    case 'progress':
      checkId(event.jobId, 'jobId', bad);
      if (!isCount(event.attempt) || event.attempt < 1) bad('attempt must be a positive integer');
      if (typeof event.percent !== 'number' || !(event.percent >= 0 && event.percent <= 100)) bad('percent must be between 0 and 100');
      if (event.message !== undefined && (typeof event.message !== 'string' || event.message.length > MAX_PROGRESS_MESSAGE_CHARS)) {
        bad(`message must be a string of at most ${MAX_PROGRESS_MESSAGE_CHARS} characters`);
      }
      if (event.metrics !== undefined) checkMetrics(event.metrics, bad);
      if (!timeOk(event.atMs)) bad('atMs must be a time in epoch milliseconds');
      return;
    case 'log':
      checkId(event.jobId, 'jobId', bad);
      if (!isCount(event.attempt) || event.attempt < 1) bad('attempt must be a positive integer');
      if (event.stream !== 'stdout' && event.stream !== 'stderr') bad('stream must be stdout or stderr');
      if (!isCount(event.offset)) bad('offset must be a non-negative integer');
      if (!(event.data instanceof Uint8Array) || event.data.byteLength === 0 || event.data.byteLength > MAX_LOG_CHUNK_BYTES) {
        bad(`data must be 1 to ${MAX_LOG_CHUNK_BYTES} bytes`);
      }
      if (!timeOk(event.atMs)) bad('atMs must be a time in epoch milliseconds');
      return;
    case 'worker':
      checkId(event.workerId, 'workerId', bad);
      if (!WORKER_EVENT_STATES.includes(event.state)) bad(`state must be one of ${WORKER_EVENT_STATES.join(', ')}`);
      if (!timeOk(event.atMs)) bad('atMs must be a time in epoch milliseconds');
      return;
    default:
      bad(`kind must be one of ${EVENT_KINDS.join(', ')}`);
  }
}

function checkId(id: unknown, name: string, bad: (what: string) => never): void {
  if (typeof id !== 'string' || id.length === 0 || id.length > MAX_EVENT_ID_CHARS) bad(`${name} must be 1 to ${MAX_EVENT_ID_CHARS} characters`);
}

function checkMetrics(metrics: unknown, bad: (what: string) => never): void {
  if (typeof metrics !== 'object' || metrics === null || Array.isArray(metrics)) bad('metrics must be an object');
  const entries = Object.entries(metrics as Record<string, unknown>);
  if (entries.length > MAX_PROGRESS_METRICS) bad(`at most ${MAX_PROGRESS_METRICS} metrics`);
  for (const [name, value] of entries) {
    if (!METRIC_NAME.test(name)) bad(`metric name ${JSON.stringify(name.slice(0, 80))} must match ${METRIC_NAME.source}`);
    if (typeof value !== 'number' || !Number.isFinite(value)) bad(`metric ${name} must be a finite number`);
  }
}

function isCount(n: unknown): n is number {
  return Number.isSafeInteger(n) && (n as number) >= 0;
}
