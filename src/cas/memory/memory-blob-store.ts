/**
 * An in-memory CAS for tests and small deployments. It holds its own copy of every blob, so callers may
 * reuse their buffers, and hands out copies, so callers cannot change what it holds. Streams are buffered
 * until verified: the memory store cannot stream without holding a blob whole.
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import type { Digest } from '../../core/digest.js';
import { DigestBuilder, EMPTY_DIGEST, isValidHash, validateDigest } from '../../core/digest.js';
import { InvalidArgumentError } from '../../core/errors.js';
import { blobNotFound } from '../blob-errors.js';
import type { BlobStore, ByteRange } from '../blob-store.js';
import {
  CHUNK_BYTES,
  checkDigestForWrite,
  checkFileSize,
  checkMaxBlobBytes,
  isEmptyDigest,
  readVerified,
  resolveRange,
  statSourceFile,
  uniqueDigests,
  verifyBytes,
  writeNewFile,
} from '../blob-support.js';

export interface MemoryBlobStoreOptions {
  /** Largest blob accepted, bytes (default 64 MiB). */
  maxBlobBytes?: number;
}

export class MemoryBlobStore implements BlobStore {
  readonly maxBlobBytes: number;
  /** By hash: a hash names at most one byte sequence, so the size is implied. */
  private readonly blobs = new Map<string, Buffer>();

  constructor(opts: MemoryBlobStoreOptions = {}) {
    this.maxBlobBytes = checkMaxBlobBytes(opts.maxBlobBytes ?? 64 * 1024 * 1024);
  }

  /** Holds nothing open: the blobs go with the object. */
  async close(): Promise<void> {}

  /** Blobs held, not counting the always-present empty blob. */
  get size(): number {
    return this.blobs.size;
  }

  async has(d: Digest): Promise<boolean> {
    return this.lookup(validateDigest(d)) !== undefined;
  }

  async sizeOf(hash: string): Promise<number | undefined> {
    if (!isValidHash(hash)) throw new InvalidArgumentError('hash must be 64 lower-case hex characters (SHA-256)');
    if (hash === EMPTY_DIGEST.hash) return 0;
    return this.blobs.get(hash)?.byteLength;
  }

  async findMissing(digests: readonly Digest[]): Promise<Digest[]> {
    return uniqueDigests(digests).filter((d) => this.lookup(d) === undefined);
  }

  async put(d: Digest, data: Uint8Array): Promise<void> {
    const digest = checkDigestForWrite(d, this.maxBlobBytes);
    verifyBytes(digest, data);
    this.store(digest, Buffer.from(data));
  }

  async putStream(d: Digest, source: AsyncIterable<Uint8Array>): Promise<void> {
    const digest = checkDigestForWrite(d, this.maxBlobBytes);
    this.store(digest, await readVerified(digest, source));
  }

  async putFile(path: string): Promise<Digest> {
    checkFileSize(path, (await statSourceFile(path)).size, this.maxBlobBytes);
    const builder = new DigestBuilder();
    const chunks: Buffer[] = [];
    for await (const raw of createReadStream(path, { highWaterMark: CHUNK_BYTES })) {
      const chunk = raw as Buffer;
      builder.update(chunk);
      checkFileSize(path, builder.bytesSoFar, this.maxBlobBytes);
      chunks.push(chunk);
    }
    const digest = builder.digest();
    this.store(digest, Buffer.concat(chunks));
    return digest;
  }

  async get(d: Digest): Promise<Buffer> {
    return Buffer.from(this.require(validateDigest(d)));
  }

  async getStream(d: Digest, range?: ByteRange): Promise<Readable> {
    const digest = validateDigest(d);
    const { start, end } = resolveRange(digest.sizeBytes, range);
    const data = this.require(digest);
    return Readable.from(chunksOf(data, start, end), { objectMode: false });
  }

  async materialize(d: Digest, destPath: string, mode: number): Promise<void> {
    await writeNewFile(destPath, this.require(validateDigest(d)), mode);
  }

  private lookup(d: Digest): Buffer | undefined {
    if (isEmptyDigest(d)) return EMPTY;
    const data = this.blobs.get(d.hash);
    return data !== undefined && data.byteLength === d.sizeBytes ? data : undefined;
  }

  private require(d: Digest): Buffer {
    const data = this.lookup(d);
    if (data === undefined) throw blobNotFound(d);
    return data;
  }

  private store(d: Digest, data: Buffer): void {
    if (!isEmptyDigest(d) && !this.blobs.has(d.hash)) this.blobs.set(d.hash, data);
  }
}

const EMPTY = Buffer.alloc(0);

function* chunksOf(data: Buffer, start: number, end: number): Generator<Buffer> {
  for (let at = start; at < end; at += CHUNK_BYTES) yield Buffer.from(data.subarray(at, Math.min(end, at + CHUNK_BYTES)));
}
