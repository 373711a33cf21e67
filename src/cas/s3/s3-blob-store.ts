/**
 * The S3 CAS: one object per blob at `<prefix>sha256/<hash>` in a bucket of AWS S3 or of any server that
 * speaks its REST API (MinIO, Ceph RGW, R2, …). Several controllers may share one bucket.
 *
 * Writes. A blob's key holds either nothing or the whole verified blob, as with the filesystem store:
 * - `put` (bytes in hand) and `putStream` of a blob of at most `bufferedPutMaxBytes` (held in memory while
 *   read, so memory per upload is bounded by that) verify the bytes first, then write them to the final key
 *   in one PutObject with Content-MD5: S3 stores a PUT atomically and only when its body is whole.
 *   Cost: HEAD + PUT.
 * - A larger `putStream` streams to a temporary key `<prefix>tmp/<uuid>` with Content-Length set from the
 *   digest, hashing as it goes; the last chunk is held back until size and hash are known good, and on
 *   any failure the request is aborted. Only when the temporary object is whole (its size is checked) is it
 *   copied server-side to the final key (CopyObject, conditional on the temporary object's ETag), and the
 *   temporary object deleted. S3 has no rename, so the final key is written by a copy of bytes already
 *   verified, never by a stream that might still fail — whatever the server does with a broken upload.
 *   Cost: HEAD, PUT, HEAD, HEAD, COPY, DELETE, and the server copies the bytes once more. A process killed
 *   mid-upload leaves its temporary object: give the bucket a lifecycle rule expiring `<prefix>tmp/` after
 *   a day. Multipart upload would avoid the copy but needs ≥ 5 MiB parts buffered in memory and servers
 *   that support aborting uploads; a single PUT and CopyObject are limited to 5 GiB, and so is this store.
 * - Writes are idempotent: a HEAD first, and a blob already present is not uploaded again (its bytes are
 *   still read and checked, as the port promises).
 *
 * Reads. An object whose size differs from the digest's counts as absent. `get`, `materialize` and
 * whole-blob `getStream` hash what they serve (a whole stream holds its last chunk back until the hash
 * matches); a ranged read hashes the whole blob the first time this instance serves it, then trusts that
 * blob while its ETag is unchanged (reads are made conditional on it). A blob whose bytes do not match its
 * name is deleted, never served; the next upload replaces it.
 *
 * Presence. `has` and `findMissing` cost one HEAD per blob (findMissing runs `headConcurrency` at once):
 * this is S3's slow path, tens of milliseconds a round trip where the filesystem store takes microseconds.
 *
 * Errors from S3 become RemexErrors (UNAVAILABLE when worth retrying, else INTERNAL) carrying S3's error
 * name, HTTP status and request id: never the SDK's error object, whose extra fields can echo the access
 * key id, and never credentials (which come from the standard AWS sources when not given).
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { open, unlink } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { S3ClientConfig } from '@aws-sdk/client-s3';
import { CopyObjectCommand, DeleteObjectCommand, GetObjectCommand, HeadBucketCommand, HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { Digest } from '../../core/digest.js';
import { DigestBuilder, digestEquals, EMPTY_DIGEST, isValidHash, validateDigest } from '../../core/digest.js';
import { DigestMismatchError, InternalError, InvalidArgumentError, RemexError, UnavailableError } from '../../core/errors.js';
import { alreadyExists, blobNotFound, corruptBlobRemoved, corruptBlobStreamed } from '../blob-errors.js';
import type { BlobStore, ByteRange } from '../blob-store.js';
import {
  asBytes,
  CHUNK_BYTES,
  checkDigestForWrite,
  checkFileSize,
  checkMaxBlobBytes,
  drainVerifying,
  isEmptyDigest,
  isErrno,
  readVerified,
  resolveRange,
  statSourceFile,
  uniqueDigests,
  verifyBytes,
  VerifyingCounter,
  writeFully,
  writeNewFile,
} from '../blob-support.js';
import { VerifiedMemo } from '../verified-memo.js';
import type { S3Location } from './s3-url.js';
import { normalizePrefix, parseEndpoint, parseS3Url } from './s3-url.js';

export interface S3BlobStoreOptions extends S3Location {
  /** Largest blob accepted, bytes; at most {@link S3_MAX_BLOB_BYTES}. */
  maxBlobBytes: number;
  /** Explicit credentials; default: the standard AWS chain (environment, profile, instance/container role). */
  credentials?: S3ClientConfig['credentials'];
  /** Blobs of at most this many bytes are buffered by putStream and written in one PUT (default 4 MiB). */
  bufferedPutMaxBytes?: number;
  /** HEAD requests findMissing runs at once (default 32). */
  headConcurrency?: number;
  /** Blobs remembered as verified (by ETag), so ranged reads do not rehash them (default 100 000). */
  verifiedMemoEntries?: number;
}

/** The largest object one PutObject or CopyObject can write. */
export const S3_MAX_BLOB_BYTES = 5 * 1024 * 1024 * 1024;
const DEFAULT_BUFFERED_PUT_MAX_BYTES = 4 * 1024 * 1024;
const DEFAULT_HEAD_CONCURRENCY = 32;
/** Milliseconds to open a connection, and that a connection may sit idle mid-request. */
const CONNECT_TIMEOUT_MS = 10_000;
const SOCKET_IDLE_TIMEOUT_MS = 120_000;
const MAX_SOCKETS = 256;
/** Attempts at a ranged read whose blob changes under it between verification and reading. */
const RANGED_READ_ATTEMPTS = 3;
const CONTENT_TYPE = 'application/octet-stream';
/** Where this store keeps blobs, for the corrupt-blob errors. */
const IN_S3 = 'in S3';

/** The SDK logs nothing through this (its default logs a warning to the console for failed streaming requests). */
const SILENT_LOGGER = { trace() {}, debug() {}, info() {}, warn() {}, error() {} };

interface ObjectHead {
  size: number;
  etag: string | undefined;
}

interface OpenedObject {
  body: Readable;
  etag: string | undefined;
  /** Bytes of the body to skip: a server that ignored the Range header sent the whole object. */
  skip: number;
}

export class S3BlobStore implements BlobStore {
  readonly maxBlobBytes: number;
  readonly bucket: string;
  /** `''` or a prefix ending in `/`. */
  readonly prefix: string;
  private readonly client: S3Client;
  private readonly bufferedPutMaxBytes: number;
  private readonly headConcurrency: number;
  private readonly verified: VerifiedMemo;
  /** Literal secrets to scrub from messages, when they were given explicitly. */
  private readonly secrets: string[];

  /** A store for an `s3://bucket/prefix?endpoint=…` URL (see parseS3Url); the rest of the options may be added. */
  static fromUrl(url: string, opts: Omit<S3BlobStoreOptions, keyof S3Location>): S3BlobStore {
    return new S3BlobStore({ ...parseS3Url(url), ...opts });
  }

  constructor(opts: S3BlobStoreOptions) {
    if (checkMaxBlobBytes(opts.maxBlobBytes) > S3_MAX_BLOB_BYTES) {
      throw new InvalidArgumentError(`maxBlobBytes of ${opts.maxBlobBytes} is over ${S3_MAX_BLOB_BYTES}, the most one S3 PUT or copy can write`);
    }
    if (typeof opts.bucket !== 'string' || opts.bucket === '' || opts.bucket.includes('/')) {
      throw new InvalidArgumentError('an S3 bucket name is required, without slashes');
    }
    this.maxBlobBytes = opts.maxBlobBytes;
    this.bucket = opts.bucket;
    this.prefix = normalizePrefix(opts.prefix);
    this.bufferedPutMaxBytes = nonNegative('bufferedPutMaxBytes', opts.bufferedPutMaxBytes ?? DEFAULT_BUFFERED_PUT_MAX_BYTES);
    this.headConcurrency = Math.max(1, nonNegative('headConcurrency', opts.headConcurrency ?? DEFAULT_HEAD_CONCURRENCY));
    this.verified = new VerifiedMemo(opts.verifiedMemoEntries ?? 100_000);
    const creds = opts.credentials;
    this.secrets =
      creds && typeof creds === 'object'
        ? [creds.accessKeyId, creds.secretAccessKey, creds.sessionToken].filter((s): s is string => typeof s === 'string' && s.length >= 4)
        : [];

    const endpoint = opts.endpoint === undefined ? undefined : parseEndpoint(opts.endpoint);
    const region = opts.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? (endpoint ? 'us-east-1' : undefined);
    this.client = new S3Client({
      ...(endpoint ? { endpoint } : {}),
      ...(region ? { region } : {}),
      ...(creds ? { credentials: creds } : {}),
      forcePathStyle: opts.forcePathStyle ?? endpoint !== undefined,
      // Blobs are verified against their SHA-256 here, end to end; the SDK's own CRC checksums would add
      // `aws-chunked` uploads and trailers that many S3-compatible servers do not understand.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      logger: SILENT_LOGGER,
      requestHandler: {
        connectionTimeout: CONNECT_TIMEOUT_MS,
        socketTimeout: SOCKET_IDLE_TIMEOUT_MS,
        httpAgent: { keepAlive: true, maxSockets: MAX_SOCKETS },
        httpsAgent: { keepAlive: true, maxSockets: MAX_SOCKETS },
        logger: SILENT_LOGGER,
      },
    });
  }

  /** The key of the blob with this hash (or where it would be): for diagnostics and tests. */
  keyOf(hash: string): string {
    if (!isValidHash(hash)) throw new InvalidArgumentError('hash must be 64 lower-case hex characters (SHA-256)');
    return `${this.prefix}sha256/${hash}`;
  }

  /** Where temporary objects go: `<prefix>tmp/`. */
  get tempPrefix(): string {
    return `${this.prefix}tmp/`;
  }

  /**
   * Fails (UNAVAILABLE or INTERNAL) unless the bucket exists and these credentials may use it: for start-up,
   * since a HEAD of a blob cannot tell a missing bucket from a missing blob.
   */
  async checkAccess(): Promise<void> {
    await this.client.send(new HeadBucketCommand({ Bucket: this.bucket })).catch((err: unknown) => {
      throw this.failure('HEAD bucket', '', err);
    });
  }

  /** Closes the client's connections; the store is unusable afterwards. */
  async close(): Promise<void> {
    this.client.destroy();
  }

  async has(d: Digest): Promise<boolean> {
    const digest = validateDigest(d);
    return isEmptyDigest(digest) || this.isPresent(digest);
  }

  async sizeOf(hash: string): Promise<number | undefined> {
    const key = this.keyOf(hash);
    if (hash === EMPTY_DIGEST.hash) return 0;
    return (await this.head(key))?.size;
  }

  async findMissing(digests: readonly Digest[]): Promise<Digest[]> {
    const unique = uniqueDigests(digests).filter((d) => !isEmptyDigest(d));
    const present = new Array<boolean>(unique.length).fill(false);
    let next = 0;
    let failed = false;
    const worker = async (): Promise<void> => {
      while (!failed && next < unique.length) {
        const i = next++;
        try {
          present[i] = await this.isPresent(unique[i] as Digest);
        } catch (err) {
          failed = true;
          throw err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.headConcurrency, unique.length) }, worker));
    return unique.filter((_, i) => !present[i]);
  }

  async put(d: Digest, data: Uint8Array): Promise<void> {
    const digest = checkDigestForWrite(d, this.maxBlobBytes);
    verifyBytes(digest, data);
    if (isEmptyDigest(digest) || (await this.isPresent(digest))) return;
    await this.putVerified(digest, data);
  }

  async putStream(d: Digest, source: AsyncIterable<Uint8Array>): Promise<void> {
    const digest = checkDigestForWrite(d, this.maxBlobBytes);
    if (isEmptyDigest(digest) || (await this.isPresent(digest))) {
      // Still read and check it: the caller learns of bad bytes whether or not the store needed them.
      await drainVerifying(digest, source);
      return;
    }
    await this.upload(digest, source);
  }

  async putFile(path: string): Promise<Digest> {
    checkFileSize(path, (await statSourceFile(path)).size, this.maxBlobBytes);
    // Hash first, so a blob already present costs a local read and one HEAD, then upload with the
    // digest known (the key and Content-Length need it); the upload checks the bytes again.
    const builder = new DigestBuilder();
    for await (const chunk of createReadStream(path, { highWaterMark: CHUNK_BYTES })) {
      builder.update(chunk as Buffer);
      checkFileSize(path, builder.bytesSoFar, this.maxBlobBytes);
    }
    const digest = builder.digest();
    if (isEmptyDigest(digest) || (await this.isPresent(digest))) return digest;
    try {
      await this.upload(digest, createReadStream(path, { highWaterMark: CHUNK_BYTES }));
    } catch (err) {
      if (err instanceof DigestMismatchError) {
        throw new RemexError('ABORTED', `${path} changed while it was being stored; nothing was stored`, { details: { path } });
      }
      throw err;
    }
    return digest;
  }

  async get(d: Digest): Promise<Buffer> {
    const digest = validateDigest(d);
    if (isEmptyDigest(digest)) return Buffer.alloc(0);
    const chunks: Buffer[] = [];
    await this.readWhole(digest, chunks);
    return Buffer.concat(chunks);
  }

  async getStream(d: Digest, range?: ByteRange): Promise<Readable> {
    const digest = validateDigest(d);
    const { start, end } = resolveRange(digest.sizeBytes, range);
    if (isEmptyDigest(digest) || start === end) {
      if (!(await this.has(digest))) throw blobNotFound(digest);
      return Readable.from([], { objectMode: false });
    }
    if (start === 0 && end === digest.sizeBytes) {
      const opened = await this.openObject(digest);
      if (!opened) throw blobNotFound(digest);
      return toReadable(opened.body, this.verifiedChunks(opened, digest));
    }
    for (let attempt = 1; ; attempt++) {
      const opened = await this.openObject(digest, { start, end });
      if (!opened) throw blobNotFound(digest);
      if (this.verified.has(digest.hash, opened.etag)) return toReadable(opened.body, bodyChunks(opened.body, digest, opened.skip, end - start));
      opened.body.destroy();
      // Not verified by this instance yet: hash the whole blob once, then read the range of exactly that
      // version (conditional on its ETag). Lost races with a rewrite of the object are tried again.
      const etag = await this.readWhole(digest);
      const again = await this.openObject(digest, { start, end }, etag);
      if (again === 'changed') {
        if (attempt >= RANGED_READ_ATTEMPTS) throw new UnavailableError(`blob ${digest.hash}/${digest.sizeBytes} kept changing while being read`);
        continue;
      }
      if (!again) throw blobNotFound(digest);
      return toReadable(again.body, bodyChunks(again.body, digest, again.skip, end - start));
    }
  }

  async materialize(d: Digest, destPath: string, mode: number): Promise<void> {
    const digest = validateDigest(d);
    if (isEmptyDigest(digest)) {
      await writeNewFile(destPath, new Uint8Array(0), mode);
      return;
    }
    const opened = await this.openObject(digest);
    if (!opened) throw blobNotFound(digest);
    let handle: FileHandle;
    try {
      handle = await open(destPath, 'wx', mode).catch((err: unknown) => {
        throw isErrno(err, 'EEXIST') ? alreadyExists(destPath, err) : err;
      });
    } catch (err) {
      opened.body.destroy();
      throw err;
    }
    let complete = false;
    let corrupt = false;
    try {
      const builder = new DigestBuilder();
      for await (const chunk of bodyChunks(opened.body, digest, 0, digest.sizeBytes)) {
        builder.update(chunk);
        await writeFully(handle, chunk);
      }
      if (!digestEquals(builder.digest(), digest)) {
        corrupt = true;
        throw corruptBlobRemoved(digest, IN_S3);
      }
      await handle.chmod(mode);
      complete = true;
    } finally {
      opened.body.destroy();
      await handle.close();
      if (!complete) await unlink(destPath).catch(() => undefined);
      if (corrupt) await this.evict(digest);
    }
    this.verified.add(digest.hash, opened.etag);
  }

  // ---- writes -----------------------------------------------------------------------------------------

  /** Stores a stream not yet known to be present: buffered and PUT when small, through a temporary key when large. */
  private async upload(digest: Digest, source: AsyncIterable<Uint8Array>): Promise<void> {
    if (digest.sizeBytes <= this.bufferedPutMaxBytes) {
      await this.putVerified(digest, await readVerified(digest, source));
      return;
    }
    await this.uploadThroughTemp(digest, source);
  }

  /** One PUT of bytes already verified, straight to the final key; Content-MD5 makes S3 refuse a damaged body. */
  private async putVerified(digest: Digest, data: Uint8Array): Promise<void> {
    const key = this.keyOf(digest.hash);
    const out = await this.client
      .send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: data,
          ContentLength: data.byteLength,
          ContentMD5: createHash('md5').update(data).digest('base64'),
          ContentType: CONTENT_TYPE,
        }),
      )
      .catch((err: unknown) => {
        throw this.failure('PUT', key, err);
      });
    this.verified.add(digest.hash, out.ETag);
  }

  private async uploadThroughTemp(digest: Digest, source: AsyncIterable<Uint8Array>): Promise<void> {
    const temp = `${this.tempPrefix}${randomUUID()}`;
    const abort = new AbortController();
    let sourceError: unknown;
    async function* verifiedSource(): AsyncGenerator<Uint8Array> {
      try {
        yield* withholdingLast(digest, source);
      } catch (err) {
        sourceError = err;
        abort.abort();
        throw err;
      }
    }
    const body = Readable.from(verifiedSource(), { objectMode: false });
    // Errors reach the caller through sourceError; an unhandled 'error' event must not crash the process.
    body.on('error', () => undefined);
    try {
      await this.client
        .send(
          new PutObjectCommand({ Bucket: this.bucket, Key: temp, Body: body, ContentLength: digest.sizeBytes, ContentType: CONTENT_TYPE }),
          { abortSignal: abort.signal },
        )
        .catch((err: unknown) => {
          throw sourceError ?? this.failure('PUT', temp, err);
        });
      if (sourceError !== undefined) throw sourceError;
      // The server acknowledged the whole body; check it kept all of it before copying.
      const kept = await this.head(temp);
      if (kept?.size !== digest.sizeBytes) {
        throw new UnavailableError(`S3 kept ${kept?.size ?? 'none'} of the ${digest.sizeBytes} bytes uploaded to ${temp}; nothing was stored`);
      }
      if (await this.isPresent(digest)) return; // a concurrent upload won
      const key = this.keyOf(digest.hash);
      const copied = await this.client
        .send(
          new CopyObjectCommand({
            Bucket: this.bucket,
            Key: key,
            CopySource: `${this.bucket}/${encodeKey(temp)}`,
            ...(kept.etag ? { CopySourceIfMatch: kept.etag } : {}),
          }),
        )
        .catch((err: unknown) => {
          throw this.failure('COPY', key, err);
        });
      this.verified.add(digest.hash, copied.CopyObjectResult?.ETag);
    } finally {
      body.destroy();
      await this.deleteQuietly(temp);
    }
  }

  // ---- reads ------------------------------------------------------------------------------------------

  private async isPresent(digest: Digest): Promise<boolean> {
    return (await this.head(this.keyOf(digest.hash)))?.size === digest.sizeBytes;
  }

  private async head(key: string): Promise<ObjectHead | undefined> {
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { size: out.ContentLength ?? -1, etag: out.ETag };
    } catch (err) {
      if (isMissingObject(err)) return undefined;
      throw this.failure('HEAD', key, err);
    }
  }

  /**
   * GETs a blob (or a range of it) when an object of the digest's size is at its key; undefined when
   * none is, 'changed' when `ifMatch` no longer matches. The caller owns (and must destroy) the body.
   */
  private async openObject(digest: Digest, range?: { start: number; end: number }): Promise<OpenedObject | undefined>;
  private async openObject(digest: Digest, range: { start: number; end: number }, ifMatch: string | undefined): Promise<OpenedObject | 'changed' | undefined>;
  private async openObject(digest: Digest, range?: { start: number; end: number }, ifMatch?: string): Promise<OpenedObject | 'changed' | undefined> {
    const key = this.keyOf(digest.hash);
    let out;
    try {
      out = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: key,
          ...(range ? { Range: `bytes=${range.start}-${range.end - 1}` } : {}),
          ...(ifMatch ? { IfMatch: ifMatch } : {}),
        }),
      );
    } catch (err) {
      if (isMissingObject(err) || s3Name(err) === 'InvalidRange') return undefined;
      if (s3Name(err) === 'PreconditionFailed' || statusOf(err) === 412) return 'changed';
      throw this.failure('GET', key, err);
    }
    const body = out.Body;
    if (!(body instanceof Readable)) throw new InternalError(`S3 GET of ${key} returned no readable body`);
    let size = out.ContentLength;
    let skip = 0;
    if (range && out.ContentRange !== undefined) {
      const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(out.ContentRange);
      if (!m || Number(m[1]) !== range.start || Number(m[2]) !== range.end - 1) {
        body.destroy();
        throw new InternalError(`S3 GET of ${key} answered range ${out.ContentRange} to a request for ${range.start}-${range.end - 1}`);
      }
      size = Number(m[3]);
    } else if (range) {
      skip = range.start; // the whole object came back
    }
    if (size !== digest.sizeBytes) {
      body.destroy();
      return undefined;
    }
    return { body, etag: out.ETag, skip };
  }

  /**
   * Hashes the whole blob, its chunks pushed onto `keep` when given; its ETag when good. NotFoundError when
   * absent, or corrupt (then it is deleted).
   */
  private async readWhole(digest: Digest, keep?: Buffer[]): Promise<string | undefined> {
    const opened = await this.openObject(digest);
    if (!opened) throw blobNotFound(digest);
    const builder = new DigestBuilder();
    try {
      for await (const chunk of bodyChunks(opened.body, digest, 0, digest.sizeBytes)) {
        builder.update(chunk);
        keep?.push(chunk);
      }
    } finally {
      opened.body.destroy();
    }
    if (!digestEquals(builder.digest(), digest)) {
      await this.evict(digest);
      throw corruptBlobRemoved(digest, IN_S3);
    }
    this.verified.add(digest.hash, opened.etag);
    return opened.etag;
  }

  /** The whole blob's bytes, the last chunk held back until the hash is known good: a corrupt blob never ends cleanly. */
  private async *verifiedChunks(opened: OpenedObject, digest: Digest): AsyncGenerator<Buffer> {
    const builder = new DigestBuilder();
    let pending: Buffer | undefined;
    for await (const chunk of bodyChunks(opened.body, digest, 0, digest.sizeBytes)) {
      builder.update(chunk);
      if (pending) yield pending;
      pending = chunk;
    }
    if (!digestEquals(builder.digest(), digest)) {
      await this.evict(digest);
      throw corruptBlobStreamed(digest, IN_S3);
    }
    this.verified.add(digest.hash, opened.etag);
    if (pending) yield pending;
  }

  // ---- housekeeping -----------------------------------------------------------------------------------

  /** Deletes a blob found corrupt. A concurrent good upload may lose to this: the blob is then just missing. */
  private async evict(digest: Digest): Promise<void> {
    this.verified.delete(digest.hash);
    await this.deleteQuietly(this.keyOf(digest.hash));
  }

  /** Best effort: what it fails to delete, a lifecycle rule (tmp/) or the next upload (a corrupt blob) deals with. */
  private async deleteQuietly(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key })).catch(() => undefined);
  }

  /** An SDK error as a RemexError that carries nothing of the SDK's error object but its name, status and request id. */
  private failure(op: string, key: string, err: unknown): RemexError {
    if (err instanceof RemexError) return err;
    const name = s3Name(err) ?? 'Error';
    const status = statusOf(err);
    const requestId = (err as { $metadata?: { requestId?: string } } | undefined)?.$metadata?.requestId;
    // A HEAD's error has no body: the SDK can only say "UnknownError"; the status is all there is.
    const raw = name === 'Unknown' || name === 'NotFound' ? httpMeaning(status) : err instanceof Error ? err.message : String(err);
    let text = raw.replace(/\b(AKIA|ASIA)[A-Z0-9]{12,}\b/g, '<access key id>');
    for (const secret of this.secrets) text = text.split(secret).join('<redacted>');
    const message = `S3 ${op} of s3://${this.bucket}/${key} failed: ${name}${status ? ` (HTTP ${status})` : ''}: ${text}`;
    const details = { s3Error: name, ...(status ? { httpStatus: status } : {}), ...(requestId ? { requestId } : {}) };
    const retryable = status === undefined || status >= 500 || status === 429 || status === 408 || ['SlowDown', 'RequestTimeout', 'TimeoutError'].includes(name);
    return retryable ? new UnavailableError(message, { details }) : new InternalError(message, { details });
  }
}

/**
 * Passes a source on, checked against `digest`; the last chunk only once size and hash have matched, so a
 * request carrying it (Content-Length set from the digest) can only complete with verified bytes.
 */
async function* withholdingLast(digest: Digest, source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const counter = new VerifyingCounter(digest);
  let pending: Uint8Array | undefined;
  for await (const raw of source) {
    const chunk = asBytes(raw);
    counter.update(chunk);
    if (pending) yield pending;
    // A copy: the source may reuse its buffer once it has handed it over.
    pending = Buffer.from(chunk);
  }
  counter.finish();
  if (pending) yield pending;
}

/**
 * A response body as Buffers: `skip` bytes dropped, exactly `take` passed on. A body that ends short is
 * an error (UNAVAILABLE), never a short blob; one that runs long is cut.
 */
async function* bodyChunks(body: Readable, digest: Digest, skip: number, take: number): AsyncGenerator<Buffer> {
  let toSkip = skip;
  let left = take;
  for await (const raw of body) {
    let chunk = Buffer.isBuffer(raw) ? raw : Buffer.from(raw as Uint8Array);
    if (toSkip > 0) {
      const n = Math.min(toSkip, chunk.byteLength);
      chunk = chunk.subarray(n);
      toSkip -= n;
    }
    if (chunk.byteLength > left) chunk = chunk.subarray(0, left);
    if (chunk.byteLength === 0) {
      if (left === 0) break;
      continue;
    }
    left -= chunk.byteLength;
    yield chunk;
    if (left === 0) break;
  }
  if (left > 0) throw new UnavailableError(`S3 sent ${take - left} of ${take} bytes of blob ${digest.hash}/${digest.sizeBytes}`);
}

/** A Readable over `chunks` that releases the response body however it ends, even if never read. */
function toReadable(body: Readable, chunks: AsyncIterable<Buffer>): Readable {
  const stream = Readable.from(chunks, { objectMode: false });
  stream.once('close', () => body.destroy());
  return stream;
}

/** A key for x-amz-copy-source: each segment URL-encoded, slashes kept. */
function encodeKey(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}

function s3Name(err: unknown): string | undefined {
  return err instanceof Error ? err.name : undefined;
}

function statusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

/**
 * No object at the key. A GET names a missing bucket (NoSuchBucket), which is an error; a HEAD's bare 404
 * cannot tell the two apart, so a missing bucket makes blobs look absent until an upload or read fails.
 */
function isMissingObject(err: unknown): boolean {
  const name = s3Name(err);
  if (name === 'NoSuchKey' || name === 'NotFound') return true;
  return statusOf(err) === 404 && name !== 'NoSuchBucket';
}

function httpMeaning(status: number | undefined): string {
  if (status === 401 || status === 403) return 'access denied: check the credentials and the bucket policy';
  if (status === 404) return 'not found (no such bucket?)';
  return status === undefined ? 'no response' : `HTTP ${status}`;
}

function nonNegative(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer, got ${value}`);
  return value;
}
