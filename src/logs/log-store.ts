/**
 * The live logs of running jobs, as a port: what a job's program has written to stdout and stderr so far,
 * one byte sequence per stream and attempt, appended by the chunk as a worker sends it and read back by
 * offset (a late follower, `remex logs`). Appends are idempotent by offset, so a worker may send a chunk
 * again after a lost answer, and a chunk past the stored end is refused with that end, so a worker whose
 * last chunk a restart lost sends it again (decision 0021). Adapter: `FsLogStore` (files under the data
 * directory).
 */
import type { LogStream } from '../events/bus-events.js';

export type { LogStream } from '../events/bus-events.js';

export interface LogKey {
  jobId: string;
  attempt: number;
  stream: LogStream;
}

export interface LogStore {
  /**
   * Stores `data` as the bytes from `offset` on, and answers how many bytes the log then holds. Bytes the log
   * holds already are skipped (a chunk sent again); a chunk that starts past the end stores nothing (the
   * answer tells the sender where to resume).
   */
  append(key: LogKey, offset: number, data: Uint8Array): Promise<number>;
  /** Up to `maxBytes` from `offset`; empty at or past the end, and for a log that does not exist. */
  read(key: LogKey, offset: number, maxBytes: number): Promise<Buffer>;
  /** Bytes the log holds (0 when there is none). */
  size(key: LogKey): Promise<number>;
  /** Forgets every log of a job (it ended: its output is in its result, in the CAS). */
  remove(jobId: string): Promise<void>;
  close(): Promise<void>;
}

export const LOG_STREAMS: readonly LogStream[] = ['stdout', 'stderr'];

/** A LogStore that holds nothing (a server without live logs): readers then get a job's output from its result. */
export const EMPTY_LOG_STORE: LogStore = Object.freeze({
  append: async () => 0,
  read: async () => Buffer.alloc(0),
  size: async () => 0,
  remove: async () => undefined,
  close: async () => undefined,
});
