/**
 * Checks and stream plumbing every BlobStore adapter needs, so they agree on digests, ranges, limits and
 * verification down to the error raised.
 */
import type { Stats } from 'node:fs';
import { closeSync, fchmodSync, openSync, writeSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { open, stat } from 'node:fs/promises';
import type { Digest } from '../core/digest.js';
import { DigestBuilder, digestEquals, EMPTY_DIGEST, validateDigest } from '../core/digest.js';
import { DigestMismatchError, InvalidArgumentError, NotFoundError, RemexError, TooLargeError } from '../core/errors.js';
import { alreadyExists } from './blob-errors.js';
import type { ByteRange } from './blob-store.js';

/** Bytes read or streamed at a time. */
export const CHUNK_BYTES = 256 * 1024;

/** An adapter's `maxBlobBytes` option, checked: a non-negative integer. */
export function checkMaxBlobBytes(value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new InvalidArgumentError(`maxBlobBytes must be a non-negative integer, got ${value}`);
  return value;
}

/** Validates a digest's shape (a hash that is safe to use in a path) and checks it against the size limit. */
export function checkDigestForWrite(d: Digest, maxBlobBytes: number): Digest {
  const digest = validateDigest(d);
  if (digest.sizeBytes > maxBlobBytes) {
    throw new TooLargeError(`blob of ${digest.sizeBytes} bytes is over this store's limit of ${maxBlobBytes}`, {
      details: { digest, maxBlobBytes },
    });
  }
  return digest;
}

/**
 * TooLargeError when a host file being stored (putFile) has `size` bytes, more than `maxBlobBytes`. Called
 * with its size when opened and again with the bytes read so far, for a file that grows meanwhile.
 */
export function checkFileSize(path: string, size: number, maxBlobBytes: number): void {
  if (size > maxBlobBytes) {
    throw new TooLargeError(`${path} is ${size} bytes, over this store's limit of ${maxBlobBytes}`, {
      details: { sizeBytes: size, maxBlobBytes },
    });
  }
}

/** The stats of a host file about to be stored (putFile): NotFoundError when absent, InvalidArgumentError unless a regular file. */
export async function statSourceFile(path: string): Promise<Stats> {
  const st = await stat(path).catch((err: unknown) => {
    if (isErrno(err, 'ENOENT')) throw new NotFoundError(`no file ${path}`, { cause: err });
    throw err;
  });
  if (!st.isFile()) throw new InvalidArgumentError(`${path} is not a regular file`);
  return st;
}

export function isEmptyDigest(d: Digest): boolean {
  return digestEquals(d, EMPTY_DIGEST);
}

export function digestKey(d: Digest): string {
  return `${d.hash}/${d.sizeBytes}`;
}

/** Validated digests, duplicates removed, first occurrences in order. */
export function uniqueDigests(digests: readonly Digest[]): Digest[] {
  const seen = new Map<string, Digest>();
  for (const raw of digests) {
    const d = validateDigest(raw);
    const key = digestKey(d);
    if (!seen.has(key)) seen.set(key, d);
  }
  return [...seen.values()];
}

/** A validated range of a blob of `size` bytes as [start, end). */
export function resolveRange(size: number, range: ByteRange | undefined): { start: number; end: number } {
  const offset = range?.offset ?? 0;
  const limit = range?.limit;
  if (!Number.isSafeInteger(offset) || offset < 0) throw new InvalidArgumentError(`range offset must be a non-negative integer, got ${offset}`);
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 0)) {
    throw new InvalidArgumentError(`range limit must be a non-negative integer, got ${limit}`);
  }
  if (offset > size) {
    throw new RemexError('OUT_OF_RANGE', `range offset ${offset} is past the end of a ${size}-byte blob`, { details: { offset, size } });
  }
  return { start: offset, end: limit === undefined ? size : Math.min(size, offset + limit) };
}

/** A source chunk as bytes; strings (a Readable with an encoding set) would be hashed differently from what was sent. */
export function asBytes(chunk: unknown): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  throw new InvalidArgumentError(`blob streams must yield bytes (Uint8Array), got ${typeof chunk}`);
}

/**
 * Tracks a stream against the digest it claims: throws DigestMismatchError as soon as it runs longer than
 * `expected`, and at {@link finish} when size or hash differ.
 */
export class VerifyingCounter {
  private readonly builder = new DigestBuilder();

  constructor(private readonly expected: Digest) {}

  update(chunk: Uint8Array): void {
    if (this.builder.bytesSoFar + chunk.byteLength > this.expected.sizeBytes) {
      // The true digest of an overlong stream is unknowable without reading it all; report what was read.
      this.builder.update(chunk);
      throw new DigestMismatchError(this.expected, this.builder.digest());
    }
    this.builder.update(chunk);
  }

  finish(): void {
    const actual = this.builder.digest();
    if (!digestEquals(actual, this.expected)) throw new DigestMismatchError(this.expected, actual);
  }
}

/** Checks bytes in hand against `d`: DigestMismatchError when size or hash differ. */
export function verifyBytes(d: Digest, data: Uint8Array): void {
  const counter = new VerifyingCounter(d);
  counter.update(data);
  counter.finish();
}

/**
 * A source read whole and checked against `d` (which the caller has checked against its size limit), for
 * adapters that store small blobs in one piece. Each chunk is copied as it arrives: a source may reuse its
 * buffer once it has handed it over, and the bytes kept must be the bytes hashed.
 */
export async function readVerified(d: Digest, source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const counter = new VerifyingCounter(d);
  const chunks: Buffer[] = [];
  for await (const raw of source) {
    const chunk = asBytes(raw);
    counter.update(chunk);
    chunks.push(Buffer.from(chunk));
  }
  counter.finish();
  return Buffer.concat(chunks);
}

/** Consumes a source that must match `d` without storing it (the empty blob, or a blob already present). */
export async function drainVerifying(d: Digest, source: AsyncIterable<Uint8Array>): Promise<void> {
  const counter = new VerifyingCounter(d);
  for await (const chunk of source) counter.update(asBytes(chunk));
  counter.finish();
}

export function isErrno(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}

/** Writes all of `chunk` at the handle's position: one write may take only part of it. */
export async function writeFully(handle: FileHandle, chunk: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < chunk.byteLength) {
    const { bytesWritten } = await handle.write(chunk, offset, chunk.byteLength - offset);
    offset += bytesWritten;
  }
}

/** Creates a new file holding `data` with exactly `mode`; ALREADY_EXISTS when anything is at `path`. */
export async function writeNewFile(path: string, data: Uint8Array, mode: number): Promise<void> {
  const handle = await open(path, 'wx', mode).catch((err: unknown) => {
    throw isErrno(err, 'EEXIST') ? alreadyExists(path, err) : err;
  });
  try {
    await handle.writeFile(data);
    await handle.chmod(mode);
  } finally {
    await handle.close();
  }
}

/**
 * writeNewFile with synchronous calls, for small data going into a directory being built (a run's input
 * tree): four calls of microseconds each, where their asynchronous forms cost a thread-pool round trip each.
 */
export function writeNewFileSync(path: string, data: Uint8Array, mode: number): void {
  let fd: number;
  try {
    fd = openSync(path, 'wx', mode);
  } catch (err) {
    throw isErrno(err, 'EEXIST') ? alreadyExists(path, err) : err;
  }
  try {
    for (let at = 0; at < data.byteLength; ) at += writeSync(fd, data, at, data.byteLength - at);
    fchmodSync(fd, mode);
  } finally {
    closeSync(fd);
  }
}
