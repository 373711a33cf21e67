/**
 * Where workers' log chunks arrive on the server: each is stored (the LogStore, so a follower who joins late
 * and a restarted controller have it), then published on the event bus as a `log` event (the bytes newly
 * stored only, so a chunk sent again is not heard twice). A job's logs are forgotten once it ends on this
 * controller: its output is then in its result, in the CAS.
 */
import { isTerminal } from '../core/model.js';
import type { EventBus } from '../events/event-bus.js';
import { MAX_LOG_CHUNK_BYTES } from '../events/bus-events.js';
import type { LogAck, LogChunk } from '../scheduler/worker-link.js';
import type { LogStore } from './log-store.js';

export class LogIntake {
  private readonly stopListening: () => void;

  constructor(
    readonly store: LogStore,
    private readonly events: EventBus,
    private readonly now: () => number = Date.now,
    onError: (err: unknown, jobId: string) => void = () => undefined,
  ) {
    this.stopListening = events.subscribeAll((job) => {
      if (job.spec.logs && isTerminal(job.state)) store.remove(job.id).catch((err: unknown) => onError(err, job.id));
    });
  }

  /** Stores the chunks in order and answers, per stream sent, how much the server holds. */
  async append(chunks: readonly LogChunk[]): Promise<LogAck[]> {
    const acks = new Map<string, LogAck>();
    for (const chunk of coalesce(chunks)) {
      const key = { jobId: chunk.jobId, attempt: chunk.attempt, stream: chunk.stream };
      const before = await this.store.size(key);
      const storedBytes = await this.store.append(key, chunk.offset, chunk.data);
      acks.set(`${chunk.jobId}\n${chunk.attempt}\n${chunk.stream}`, { ...key, storedBytes });
      // Only what was not stored before is news.
      for (let at = before; at < storedBytes; at += MAX_LOG_CHUNK_BYTES) {
        const end = Math.min(storedBytes, at + MAX_LOG_CHUNK_BYTES);
        const data = chunk.data.subarray(at - chunk.offset, end - chunk.offset);
        this.events.publishEvent({ kind: 'log', jobId: chunk.jobId, attempt: chunk.attempt, stream: chunk.stream, offset: at, data, atMs: this.now() });
      }
    }
    return [...acks.values()];
  }

  close(): void {
    this.stopListening();
  }
}

/** The bytes end to end: a view when they lie end to end in one buffer already (a worker in this process), else a copy. */
function joined(parts: readonly Uint8Array[]): Uint8Array {
  const first = parts[0] as Uint8Array;
  let end = first.byteOffset + first.byteLength;
  for (const p of parts.slice(1)) {
    if (p.buffer !== first.buffer || p.byteOffset !== end) return Buffer.concat(parts);
    end += p.byteLength;
  }
  return new Uint8Array(first.buffer, first.byteOffset, end - first.byteOffset);
}

/** Consecutive chunks of one stream that follow each other, as one (one write to the store, not one each). */
function coalesce(chunks: readonly LogChunk[]): LogChunk[] {
  const out: LogChunk[] = [];
  let run: LogChunk[] = [];
  const flush = (): void => {
    const first = run[0];
    if (!first) return;
    out.push(run.length === 1 ? first : { ...first, data: joined(run.map((c) => c.data)) });
    run = [];
  };
  for (const chunk of chunks) {
    const last = run.at(-1);
    if (last && !(last.jobId === chunk.jobId && last.attempt === chunk.attempt && last.stream === chunk.stream && last.offset + last.data.byteLength === chunk.offset)) flush();
    run.push(chunk);
  }
  flush();
  return out;
}
