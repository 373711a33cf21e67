/**
 * The content-addressed store port. Blobs are named by their {@link Digest}; a blob is visible only once
 * its bytes have been checked against that digest, so a reader never sees partial or wrong content.
 * Adapters: `fs/` (the server's store, a worker's cache), `s3/` (shared by controllers), `memory/` (tests,
 * small deployments) and `remote/` (a worker's cache in front of a server's CAS).
 */
import type { Digest } from '../core/digest.js';

/** A byte range of a blob: from `offset` (default 0), at most `limit` bytes (default: to the end; 0 reads nothing). */
export interface ByteRange {
  offset?: number;
  limit?: number;
}

export interface MaterializeOptions {
  /** Share the stored file (a hard link) rather than copy it, where the backend can: see materialize. */
  shareStoredFile?: boolean;
}

export interface BlobStore {
  /** Largest blob accepted, bytes. */
  readonly maxBlobBytes: number;

  /** Whether the blob is present. The empty blob always is. */
  has(d: Digest): Promise<boolean>;

  /**
   * Size of the blob stored under this hash, or undefined when there is none: for front doors that
   * address blobs by hash alone (HTTP `GET /blobs/sha256/<hash>`). InvalidArgumentError for a malformed hash.
   */
  sizeOf(hash: string): Promise<number | undefined>;

  /** Those of `digests` not present, in their first order, duplicates collapsed. The empty blob is always present. */
  findMissing(digests: readonly Digest[]): Promise<Digest[]>;

  /**
   * Stores bytes after verifying them against `d`: DigestMismatchError when they differ, TooLargeError
   * when `d` is over {@link maxBlobBytes}; on either, nothing is stored. Idempotent.
   */
  put(d: Digest, data: Uint8Array): Promise<void>;

  /**
   * Stores a stream without holding it whole. Size and hash are verified before the blob becomes visible;
   * on any error (mismatch, too large, the source throwing) nothing is visible. Reading stops early once
   * the source has sent more bytes than `d` says.
   */
  putStream(d: Digest, source: AsyncIterable<Uint8Array>): Promise<void>;

  /** Stores a host file's bytes (streamed, not held whole) and returns their digest. */
  putFile(path: string): Promise<Digest>;

  /** The whole blob; NotFoundError when absent. For small blobs only. */
  get(d: Digest): Promise<Buffer>;

  /**
   * Streams a blob or a range of it. NotFoundError when absent is thrown by this call, not later; an
   * offset past the end is OUT_OF_RANGE. Adapters return a Node.js Readable, which is also what this type
   * promises: consume it or destroy it, or its file stays open until collected.
   */
  getStream(d: Digest, range?: ByteRange): Promise<AsyncIterable<Buffer>>;

  /**
   * Writes the blob to a new host file at `destPath` with exactly `mode` (umask does not apply), as fast
   * as the backend allows. Never replaces or follows an existing file or symlink at `destPath`.
   * NotFoundError when absent. With `shareStoredFile`, a backend that keeps blobs as read-only files may
   * instead hard-link its own file at `destPath` when `mode` has no execute bit (the file then keeps the
   * store's read-only mode and owner): for callers whose readers cannot write files they do not own.
   */
  materialize(d: Digest, destPath: string, mode: number, opts?: MaterializeOptions): Promise<void>;

  /**
   * Releases what the store holds open (a database, connections): whoever opened the store calls it once,
   * when done with it, and uses the store no more. Resolves when released; a store holding nothing open
   * resolves at once.
   */
  close(): Promise<void>;
}

/**
 * A store that can remove blobs it was told nothing references any more (the retention sweep's, decision
 * 0047): it keeps any a queued or running job needs (its pins) or that was used within its grace period.
 * The filesystem store is one; an S3 bucket is kept by its lifecycle rules instead (docs/deploy.md).
 */
export interface BlobReclaimer {
  /** Removes those of these blobs it may: how many it removed, and those present it kept for now (pinned or recent). */
  reclaim(hashes: readonly string[]): Promise<{ removed: number; kept: string[] }>;
}

export function isBlobReclaimer(store: object): store is BlobReclaimer {
  return typeof (store as Partial<BlobReclaimer>).reclaim === 'function';
}
