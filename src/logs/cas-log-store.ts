/**
 * LogStore shared by the controllers of one database (decision 0043): each appended piece is a CAS blob,
 * recorded in the store's LogPieceIndex at the stream's end, so a follower on any controller reads what
 * another took in, stored then live. Appends to one log run one at a time in this process; two controllers
 * appending the same bytes at once keep one piece (the index takes a piece only at the end). Pieces stay in
 * the CAS once the job ends, as any blob no result names: evicted with the rest (`--cas-max-bytes`, a
 * bucket's lifecycle rule).
 */
import type { BlobStore } from '../cas/blob-store.js';
import { digestOf } from '../core/digest.js';
import type { LogPieceIndex } from '../store/ports.js';
import type { LogKey, LogStore } from './log-store.js';
import { SerialByKey } from './serial-by-key.js';

/** Pieces looked up per read at most (a read asks for at most a bus chunk, 64 KiB: one or two pieces). */
const PIECES_PER_READ = 16;

export class CasLogStore implements LogStore {
  /** Appends to one log never interleave. */
  private readonly appends = new SerialByKey();

  constructor(
    private readonly blobs: Pick<BlobStore, 'put' | 'getStream'>,
    private readonly index: LogPieceIndex,
  ) {}

  append(key: LogKey, offset: number, data: Uint8Array): Promise<number> {
    const name = `${key.jobId}\n${key.attempt}\n${key.stream}`;
    return this.appends.run(name, () => this.appendNow(key, offset, data));
  }

  private async appendNow(key: LogKey, offset: number, data: Uint8Array): Promise<number> {
    const end = await this.index.end(key.jobId, key.attempt, key.stream);
    if (offset > end || offset + data.byteLength <= end) return end;
    const fresh = data.subarray(end - offset);
    const digest = digestOf(fresh);
    await this.blobs.put(digest, fresh);
    return this.index.append(key.jobId, key.attempt, key.stream, { offset: end, sizeBytes: fresh.byteLength, hash: digest.hash });
  }

  async read(key: LogKey, offset: number, maxBytes: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let at = offset;
    const until = offset + maxBytes;
    for (const piece of await this.index.pieces(key.jobId, key.attempt, key.stream, offset, PIECES_PER_READ)) {
      if (piece.offset > at || at >= until) break;
      const from = at - piece.offset;
      const limit = Math.min(piece.sizeBytes - from, until - at);
      for await (const chunk of await this.blobs.getStream({ hash: piece.hash, sizeBytes: piece.sizeBytes }, { offset: from, limit })) parts.push(chunk);
      at += limit;
    }
    return Buffer.concat(parts);
  }

  size(key: LogKey): Promise<number> {
    return this.index.end(key.jobId, key.attempt, key.stream);
  }

  remove(jobId: string): Promise<void> {
    return this.index.remove(jobId);
  }

  async close(): Promise<void> {
    await this.appends.idle();
  }
}
