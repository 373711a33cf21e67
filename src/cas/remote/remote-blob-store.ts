/**
 * The blob store as a network worker sees it: a local filesystem cache in front of the server's CAS.
 * Reads are served from the cache, fetching (streamed) what it lacks; writes go to both, so outputs are
 * on the server before the result that names them is committed. Presence and size are the union of the
 * two: a blob is here if either holds it. Verification is the cache's (it checks what it stores and what
 * it serves) and the server's store's.
 */
import { Readable } from 'node:stream';
import type { Digest } from '../../core/digest.js';
import { DigestMismatchError, InternalError, isRemexError } from '../../core/errors.js';
import { blobNotFound } from '../blob-errors.js';
import type { BlobStore, ByteRange, MaterializeOptions } from '../blob-store.js';

/**
 * The server's CAS as this store reaches it: the few calls it makes. The HTTP client (`RemexClient`)
 * has them, so the worker's composition root passes its client in; the CAS never imports the client.
 */
export interface BlobServer {
  /** Those of `digests` the server lacks. */
  findMissing(digests: readonly Digest[]): Promise<Digest[]>;
  /** Uploads a blob; a stream is given as a factory, so that it can be sent again (to another controller). */
  putBlob(digest: Digest, data: Uint8Array | (() => Readable)): Promise<void>;
  /**
   * The bytes the server holds under the digest's hash, whatever their size; a RemexError of code
   * NOT_FOUND when it holds none.
   */
  blobStream(digest: Digest): Promise<AsyncIterable<Uint8Array>>;
  /** Size of the blob the server holds under this (valid) hash, or undefined when it holds none. */
  blobSize(hash: string): Promise<number | undefined>;
}

export class RemoteBlobStore implements BlobStore {
  /** `cache`: a store of this worker's own, which this one owns from now on (see close). */
  constructor(
    private readonly client: BlobServer,
    private readonly cache: BlobStore,
  ) {}

  get maxBlobBytes(): number {
    return this.cache.maxBlobBytes;
  }

  async has(d: Digest): Promise<boolean> {
    return (await this.findMissing([d])).length === 0;
  }

  /** The cache's answer when it holds the blob, else the server's (the cache checks the hash first). */
  async sizeOf(hash: string): Promise<number | undefined> {
    return (await this.cache.sizeOf(hash)) ?? this.client.blobSize(hash);
  }

  /** Missing from both the cache and the server. */
  async findMissing(digests: readonly Digest[]): Promise<Digest[]> {
    const notCached = await this.cache.findMissing(digests);
    return notCached.length === 0 ? [] : this.client.findMissing(notCached);
  }

  async put(d: Digest, data: Uint8Array): Promise<void> {
    await this.cache.put(d, data);
    if ((await this.client.findMissing([d])).length > 0) await this.client.putBlob(d, data);
  }

  async putStream(d: Digest, source: AsyncIterable<Uint8Array>): Promise<void> {
    await this.cache.putStream(d, source);
    await this.upload(d);
  }

  async putFile(path: string): Promise<Digest> {
    const d = await this.cache.putFile(path);
    await this.upload(d);
    return d;
  }

  async get(d: Digest): Promise<Buffer> {
    await this.fetchIntoCache(d);
    return this.cache.get(d);
  }

  async getStream(d: Digest, range?: ByteRange): Promise<AsyncIterable<Buffer>> {
    await this.fetchIntoCache(d);
    return this.cache.getStream(d, range);
  }

  async materialize(d: Digest, destPath: string, mode: number, opts?: MaterializeOptions): Promise<void> {
    await this.fetchIntoCache(d);
    await this.cache.materialize(d, destPath, mode, opts);
  }

  /** Closes the cache, which this store owns once given; not the client, which the worker's link shares. */
  async close(): Promise<void> {
    await this.cache.close();
  }

  /** Makes the cache hold `d`, downloading it: NotFoundError when the server holds no blob of that digest. */
  private async fetchIntoCache(d: Digest): Promise<void> {
    if (await this.cache.has(d)) return;
    let source: AsyncIterable<Uint8Array>;
    try {
      source = await this.client.blobStream(d);
    } catch (err) {
      throw isRemexError(err) && err.code === 'NOT_FOUND' ? blobNotFound(d, err) : err;
    }
    try {
      await this.cache.putStream(d, ofSize(d, source));
    } catch (err) {
      // Its size was right (ofSize): the server sent other bytes than it holds, not the caller's fault.
      if (err instanceof DigestMismatchError) throw new InternalError(`the bytes the server sent for blob ${d.hash}/${d.sizeBytes} do not match it`, { cause: err });
      throw err;
    }
  }

  private async upload(d: Digest): Promise<void> {
    if ((await this.client.findMissing([d])).length === 0) return;
    // Each call of the factory reads the cache afresh: the client calls it again to send the blob again
    // (over a new connection, or to the next controller), and a stream it has read from cannot be.
    await this.client.putBlob(d, () => Readable.from(this.cachedBytes(d), { objectMode: false }));
  }

  /** The cached blob, opened only once read: a body the client never sends opens nothing. */
  private async *cachedBytes(d: Digest): AsyncGenerator<Buffer> {
    yield* await this.cache.getStream(d);
  }
}

/**
 * The server's bytes for `d`, which it finds by hash alone: a blob of another size there is not `d`, and
 * so absent (NotFoundError, as the port promises), rather than bytes that fail to match.
 */
async function* ofSize(d: Digest, source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  let received = 0;
  for await (const chunk of source) {
    received += chunk.byteLength;
    // Stops the download at once: the rest is of no use.
    if (received > d.sizeBytes) throw blobNotFound(d);
    yield chunk;
  }
  if (received < d.sizeBytes) throw blobNotFound(d);
}
