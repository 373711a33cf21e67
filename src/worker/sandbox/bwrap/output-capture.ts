/**
 * Keeps the first `limitBytes` of a stream and counts the rest. The stream is always drained to its
 * end: a program blocked on a full pipe would otherwise never finish, and the byte count must be true.
 * With a file descriptor, the kept bytes are written there as they come instead of held (a long job's
 * live log); if the file cannot take more (a full disk), the rest is only counted.
 */
import { writeSync } from 'node:fs';
import type { Readable } from 'node:stream';

export class BoundedCapture {
  private readonly chunks: Buffer[] = [];
  private keptBytes = 0;
  private seenBytes = 0;

  constructor(
    private limitBytes: number,
    private readonly file?: number,
  ) {}

  /** Starts draining `stream` into this capture. */
  attach(stream: Readable): void {
    stream.on('data', (chunk: Buffer) => this.push(chunk));
  }

  push(chunk: Buffer): void {
    this.seenBytes += chunk.byteLength;
    const room = this.limitBytes - this.keptBytes;
    if (room <= 0) return;
    const kept = chunk.byteLength <= room ? chunk : chunk.subarray(0, room);
    if (this.file !== undefined) {
      let done = 0;
      try {
        while (done < kept.byteLength) done += writeSync(this.file, kept, done);
      } catch {
        this.limitBytes = this.keptBytes + done;
      }
      this.keptBytes += done;
      return;
    }
    this.chunks.push(kept);
    this.keptBytes += kept.byteLength;
  }

  get totalBytes(): number {
    return this.seenBytes;
  }

  get truncated(): boolean {
    return this.seenBytes > this.keptBytes;
  }

  /** The kept bytes; none when they went to a file. */
  bytes(): Buffer {
    if (this.file !== undefined) return Buffer.alloc(0);
    return Buffer.concat(this.chunks, this.keptBytes);
  }
}
