/**
 * Keeps the first `limitBytes` of a stream and counts the rest. The stream is always drained to its
 * end: a program blocked on a full pipe would otherwise never finish, and the byte count must be true.
 */
import type { Readable } from 'node:stream';

export class BoundedCapture {
  private readonly chunks: Buffer[] = [];
  private keptBytes = 0;
  private seenBytes = 0;

  constructor(private readonly limitBytes: number) {}

  /** Starts draining `stream` into this capture. */
  attach(stream: Readable): void {
    stream.on('data', (chunk: Buffer) => this.push(chunk));
  }

  push(chunk: Buffer): void {
    this.seenBytes += chunk.byteLength;
    const room = this.limitBytes - this.keptBytes;
    if (room <= 0) return;
    const kept = chunk.byteLength <= room ? chunk : chunk.subarray(0, room);
    this.chunks.push(kept);
    this.keptBytes += kept.byteLength;
  }

  get totalBytes(): number {
    return this.seenBytes;
  }

  get truncated(): boolean {
    return this.seenBytes > this.keptBytes;
  }

  bytes(): Buffer {
    return Buffer.concat(this.chunks, this.keptBytes);
  }
}
