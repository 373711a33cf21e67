/**
 * The blob store as a network worker sees it: a local filesystem cache in front of the server's CAS.
 * Reads are served from the cache, fetching (streamed) what it lacks; writes go to both, so outputs are
 * on the server before the result that names them is committed.
 */
import { Readable } from 'node:stream';
import type { Digest } from '../../core/digest.js';
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
  /** The blob's bytes as the server streams them; a RemexError of code NOT_FOUND when it has none. */
  blobStream(digest: Digest): Promise<AsyncIterable<Uint8Array>>;
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

  async sizeOf(hash: string): Promise<number | undefined> {
    return this.cache.sizeOf(hash);
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

  private async fetchIntoCache(d: Digest): Promise<void> {
    if (await this.cache.has(d)) return;
    await this.cache.putStream(d, await this.client.blobStream(d));
  }

  private async upload(d: Digest): Promise<void> {
    if ((await this.client.findMissing([d])).length === 0) return;
    const stream = await this.cache.getStream(d);
    await this.client.putBlob(d, () => Readable.from(stream));
  }
}
