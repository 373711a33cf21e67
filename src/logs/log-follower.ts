/**
 * Follows a job's output: what is stored first (the live log while it runs, its result in the CAS once it
 * ended), then the chunks as the bus brings them, then whatever the result holds beyond what was seen — in
 * offset order, each byte once. A chunk that arrives past what was seen (the bus lost one on a connection
 * gap) is preceded by the missing bytes, read from the store. A run started again (attempt + 1) starts its
 * streams from offset 0. Used by `GET /v1/executions/<id>/logs` and the WebSocket's `follow`.
 */
import type { BlobStore } from '../cas/blob-store.js';
import { isTerminal } from '../core/model.js';
import { MAX_LOG_CHUNK_BYTES } from '../events/bus-events.js';
import type { LogStream, ProgressEvent } from '../events/bus-events.js';
import type { EventBus } from '../events/event-bus.js';
import type { JobRecord } from '../store/ports.js';
import type { LogStore } from './log-store.js';

export interface LogBytes {
  attempt: number;
  stream: LogStream;
  offset: number;
  data: Buffer;
}

export interface LogSources {
  logs: LogStore;
  events: EventBus;
  blobs: Pick<BlobStore, 'getStream'>;
  getJob(id: string): Promise<JobRecord | null | undefined>;
}

export interface FollowOptions {
  streams: readonly LogStream[];
  /** Where to start in each stream of the run current when the follow starts (0 by default). */
  from?: Partial<Record<LogStream, number>>;
  /** Keep going until the job ends; otherwise end after what is stored now. */
  follow: boolean;
  onBytes(bytes: LogBytes): void;
  /**
   * Resolves when the reader can take more (its connection drained): awaited between reads of what is
   * stored, so catching up on a long log holds at most a read ahead of a slow reader. Live chunks are not
   * held back (the reader decides what a reader that falls too far behind gets).
   */
  ready?(): Promise<void> | undefined;
  /** The job as it stands when the follow starts, unless it has ended already or is unknown. */
  onStart?(job: JobRecord): void;
  /** A change of the job short of its end (following only). */
  onJob?(job: JobRecord): void;
  onProgress?(event: ProgressEvent): void;
  /** The end: the job as it then is (ended when following), or null for an unknown job. Nothing follows it. */
  onEnd(job: JobRecord | null): void;
  onError(err: unknown): void;
}

/** Starts following; the returned function stops it (nothing is called after). */
export function followLogs(sources: LogSources, jobId: string, opts: FollowOptions): () => void {
  let stopped = false;
  let unsubscribe: () => void = () => undefined;
  const stop = (): void => {
    stopped = true;
    unsubscribe();
  };
  let attempt = 0;
  const seen: Record<LogStream, number> = { stdout: opts.from?.stdout ?? 0, stderr: opts.from?.stderr ?? 0 };
  const wanted = new Set(opts.streams);

  const emit = (stream: LogStream, offset: number, data: Buffer): void => {
    // Only bytes not seen yet, in order.
    const end = offset + data.byteLength;
    if (stopped || end <= seen[stream] || offset > seen[stream]) return;
    const fresh = data.subarray(seen[stream] - offset);
    seen[stream] = end;
    opts.onBytes({ attempt, stream, offset: end - fresh.byteLength, data: fresh });
  };
  const newRun = (next: number): void => {
    if (next <= attempt) return;
    // The offsets asked for belong to the run current at the start; a later run is followed from its start.
    if (attempt !== 0) seen.stdout = seen.stderr = 0;
    attempt = next;
  };
  /** Stored bytes of `stream` from what was seen up to `until` (the end if absent). */
  const catchUp = async (stream: LogStream, until = Number.MAX_SAFE_INTEGER): Promise<void> => {
    while (!stopped && seen[stream] < until) {
      const at = seen[stream];
      await opts.ready?.();
      if (stopped) return;
      const data = await sources.logs.read({ jobId, attempt, stream }, at, Math.min(MAX_LOG_CHUNK_BYTES, until - at));
      if (data.byteLength === 0) return;
      emit(stream, at, data);
    }
  };
  /** The ended job's result holds each stream whole (up to its ceiling): what was not seen yet comes from there. */
  const finish = async (job: JobRecord): Promise<void> => {
    newRun(job.attempt);
    const result = job.result;
    if (result) {
      for (const stream of wanted) {
        const output = result[stream];
        const kept = output.digest.sizeBytes;
        if (seen[stream] >= kept) continue;
        let at = seen[stream];
        for await (const piece of await sources.blobs.getStream(output.digest, { offset: at, limit: kept - at })) {
          for (let i = 0; i < piece.byteLength; i += MAX_LOG_CHUNK_BYTES) emit(stream, at + i, piece.subarray(i, i + MAX_LOG_CHUNK_BYTES));
          at += piece.byteLength;
          await opts.ready?.();
          if (stopped) return;
        }
      }
    }
    if (!stopped) {
      stop();
      opts.onEnd(job);
    }
  };
  const start = async (): Promise<void> => {
    const job = await sources.getJob(jobId);
    if (stopped) return;
    if (!job) {
      stop();
      return opts.onEnd(null);
    }
    if (isTerminal(job.state)) return finish(job);
    opts.onStart?.(job);
    newRun(job.attempt);
    if (attempt > 0) for (const stream of wanted) await catchUp(stream);
    if (!opts.follow && !stopped) {
      stop();
      opts.onEnd(job);
    }
  };

  const fail = (err: unknown): void => {
    if (stopped) return;
    stop();
    opts.onError(err);
  };
  // Subscribed before the store is read, so nothing published meanwhile is missed; handled after it, in order.
  let queue: Promise<void> = start().catch(fail);
  const enqueue = (task: () => Promise<void>): void => {
    queue = queue.then(() => (stopped ? undefined : task())).catch(fail);
  };
  if (opts.follow) {
    unsubscribe = sources.events.subscribeJobEvents(jobId, (event) => {
      if (event.kind === 'log') {
        if (!wanted.has(event.stream)) return;
        return enqueue(async () => {
          if (event.attempt < attempt) return;
          newRun(event.attempt);
          if (event.offset > seen[event.stream]) await catchUp(event.stream, event.offset);
          emit(event.stream, event.offset, Buffer.from(event.data.buffer, event.data.byteOffset, event.data.byteLength));
        });
      }
      if (event.kind === 'progress') return enqueue(async () => opts.onProgress?.(event));
      return enqueue(async () => {
        if (isTerminal(event.job.state)) return finish(event.job);
        newRun(event.job.attempt);
        opts.onJob?.(event.job);
      });
    });
  }
  return stop;
}

/**
 * Bytes to UTF-8 text without splitting a character: a sequence cut at a chunk's end waits for the next
 * chunk, and the text's offset is its first byte's. One per stream of a run.
 */
export class Utf8Chunks {
  private carry = Buffer.alloc(0);

  /** The text of `data` (bytes from `offset`), with the offset of its first byte; null when it is all carried. */
  push(offset: number, data: Buffer): { offset: number; text: string } | null {
    const whole = this.carry.byteLength > 0 ? Buffer.concat([this.carry, data]) : data;
    const start = offset - this.carry.byteLength;
    const cut = completeLength(whole);
    this.carry = Buffer.from(whole.subarray(cut));
    return cut === 0 ? null : { offset: start, text: whole.subarray(0, cut).toString('utf8') };
  }

  /** What is still carried (an incomplete character at the very end), as text with replacement characters. */
  flush(nextOffset: number): { offset: number; text: string } | null {
    if (this.carry.byteLength === 0) return null;
    const out = { offset: nextOffset - this.carry.byteLength, text: this.carry.toString('utf8') };
    this.carry = Buffer.alloc(0);
    return out;
  }
}

/** The length of `b` without an incomplete UTF-8 sequence at its end. */
function completeLength(b: Buffer): number {
  for (let back = 1; back <= Math.min(3, b.byteLength); back++) {
    const byte = b[b.byteLength - back] as number;
    if ((byte & 0xc0) === 0x80) continue; // a continuation byte: look further back
    const needed = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return needed > back ? b.byteLength - back : b.byteLength;
  }
  return b.byteLength;
}
