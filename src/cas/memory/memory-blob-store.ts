/**
 * An in-memory CAS for tests and small deployments. It holds its own copy of every blob, so callers may
 * reuse their buffers, and hands out copies, so callers cannot change what it holds. Streams are buffered
 * until verified: the memory store cannot stream without holding a blob whole.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { Digest } from '../../core/digest.js';
import { DigestBuilder, EMPTY_DIGEST, isValidHash, validateDigest } from '../../core/digest.js';
import { InvalidArgumentError, NotFoundError, TooLargeError } from '../../core/errors.js';
import type { BlobStore, ByteRange } from '../blob-store.js';
import { asBytes, CHUNK_BYTES, checkDigestForWrite, isEmptyDigest, isErrno, resolveRange, uniqueDigests, VerifyingCounter, writeNewFile } from '../blob-support.js';

export interface MemoryBlobStoreOptions {
  /** Largest blob accepted, bytes (default 64 MiB). */
  maxBlobBytes?: number;
}

export class MemoryBlobStore implements BlobStore {
  readonly maxBlobBytes: number;
  /** By hash: a hash names at most one byte sequence, so the size is implied. */
  private readonly blobs = new Map<string, Buffer>();

  constructor(opts: MemoryBlobStoreOptions = {}) {
    const max = opts.maxBlobBytes ?? 64 * 1024 * 1024;
    if (!Number.isSafeInteger(max) || max < 0) throw new InvalidArgumentError(`maxBlobBytes must be a non-negative integer, got ${max}`);
    this.maxBlobBytes = max;
  }

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
    const counter = new VerifyingCounter(digest);
    counter.update(data);
    counter.finish();
    this.store(digest, Buffer.from(data));
  }

  async putStream(d: Digest, source: AsyncIterable<Uint8Array>): Promise<void> {
    const digest = checkDigestForWrite(d, this.maxBlobBytes);
    const counter = new VerifyingCounter(digest);
    const chunks: Buffer[] = [];
    for await (const raw of source) {
      const chunk = asBytes(raw);
      counter.update(chunk);
      chunks.push(Buffer.from(chunk));
    }
    counter.finish();
    this.store(digest, Buffer.concat(chunks));
  }

  async putFile(path: string): Promise<Digest> {
    const st = await stat(path).catch((err: unknown) => {
      if (isErrno(err, 'ENOENT')) throw new NotFoundError(`no file ${path}`);
      throw err;
    });
    if (!st.isFile()) throw new InvalidArgumentError(`${path} is not a regular file`);
    const builder = new DigestBuilder();
    const chunks: Buffer[] = [];
    for await (const raw of createReadStream(path, { highWaterMark: CHUNK_BYTES })) {
      const chunk = raw as Buffer;
      builder.update(chunk);
      if (builder.bytesSoFar > this.maxBlobBytes) {
        throw new TooLargeError(`${path} is over this store's limit of ${this.maxBlobBytes} bytes`, { details: { maxBlobBytes: this.maxBlobBytes } });
      }
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
    if (data === undefined) throw new NotFoundError(`blob ${d.hash}/${d.sizeBytes} not found`, { details: { digest: d } });
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
