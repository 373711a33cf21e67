/**
 * The filesystem CAS: blobs of up to 64 KiB as rows of one SQLite database (small-blob-pack.ts, decision
 * 0014), larger ones as one read-only file each at `<root>/sha256/<first two hex>/<hash>`. A small blob
 * stored as a file by an earlier version is still found and served there.
 *
 * Packed blobs are verified when stored (as every write is) and hashed again each time they are served:
 * at 64 KiB at most that is a few microseconds. What follows is about the files.
 *
 * Writes are atomic. Bytes go to a fresh temporary file under `<root>/tmp` (the same filesystem, so the
 * final step is a rename), are hashed as they are written, and the file is renamed into place only when
 * size and hash match: a blob's path holds either nothing or the whole verified blob. Concurrent puts of
 * one blob each write their own temporary file; whichever rename lands last wins, with identical bytes.
 *
 * Durability (`fsync`, on by default here; `remex serve` turns it off unless `--cas-fsync`, see
 * docs/decisions/0009-cas-durability.md): the temporary file is fsynced before the rename, so a blob that
 * is visible survives a power loss whole. Without it a process crash still loses nothing (the page cache
 * outlives the process); a power loss may leave a blob short, absent or wrong, and each is caught: a file
 * of the wrong size is absent to every presence check, and reads hash what they serve. The directory is
 * never fsynced: a crash may forget a rename, which only makes the blob missing again, and every client
 * already handles a missing blob by uploading it.
 *
 * Reads verify. `get` hashes what it serves; `getStream` (whole or ranged) and `materialize` hash the
 * whole blob unless this store instance has hashed that file before (it stored it, or served it), and
 * trust it while its inode, size and mtime are unchanged (see `identity`). A store opened afresh, after a
 * crash say, has verified nothing. A blob whose bytes do not match its name is deleted, never served; the
 * next upload replaces it.
 *
 * Eviction (`maxBytes`, `remex serve --cas-max-bytes`): the blobs' sizes and last uses are kept in memory
 * (blob-usage.ts, learnt when the store opens). Before a write would take the store past its cap, the
 * least recently used blobs are removed until it is at {@link EVICT_TO} of the cap, never one used (stored,
 * read, or reported present by has/findMissing) less than `evictionGraceMs` ago — REAPI clients upload
 * or check, then execute — nor one the pin source names (a queued or running job's inputs). Pinned
 * blobs may keep the store over its cap; nothing else does (decision 0034).
 *
 * A full disk (ENOSPC, a full SQLite database): the write fails with InsufficientStorageError
 * (RESOURCE_EXHAUSTED, HTTP 507) and leaves nothing visible, as every failed write does; with a cap,
 * eviction runs first and a write from memory is tried once more. Reads go on.
 */
import { randomBytes } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { closeSync, constants, existsSync, openSync, readSync, statSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { chmod, copyFile, link, mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setImmediate } from 'node:timers/promises';
import type { Digest } from '../../core/digest.js';
import { DigestBuilder, digestEquals, EMPTY_DIGEST, isValidHash, validateDigest } from '../../core/digest.js';
import { InsufficientStorageError, InternalError, InvalidArgumentError } from '../../core/errors.js';
import { alreadyExists, blobNotFound, corruptBlobRemoved, corruptBlobStreamed } from '../blob-errors.js';
import type { BlobReclaimer, BlobStore, ByteRange, MaterializeOptions } from '../blob-store.js';
import {
  asBytes,
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
  writeNewFileSync,
} from '../blob-support.js';
import { VerifiedMemo } from '../verified-memo.js';
import { BlobUsage } from './blob-usage.js';
import type { PinSource } from './blob-usage.js';
import { PACKED_MAX_BYTES, SmallBlobPack } from './small-blob-pack.js';

export interface FsBlobStoreOptions {
  /** Directory holding the store; created on first write. */
  root: string;
  /** Largest blob accepted, bytes. */
  maxBlobBytes: number;
  /** fsync each blob before it becomes visible (default true). A disposable cache may turn it off. */
  fsync?: boolean;
  /** Blobs remembered as verified, so whole and ranged reads and materialize do not rehash them (default 100 000). */
  verifiedMemoEntries?: number;
  /** Keep the blobs under this many bytes in all, evicting the least recently used (default: no cap). */
  maxBytes?: number;
  /** With a cap: never evict a blob used less than this long ago (default {@link DEFAULT_EVICTION_GRACE_MS}). */
  evictionGraceMs?: number;
  /** With a cap: blobs never evicted whatever their age (a queued or running job's inputs). */
  pins?: PinSource;
  /**
   * Keep each blob's last use in memory even without a cap, so that {@link FsBlobStore.reclaim} can honour
   * the grace period (the server's store: the retention sweep reclaims). Default: only with a cap.
   */
  trackUsage?: boolean;
  /** The clock of last uses (tests). */
  now?: () => number;
}

/** How long a blob stays safe from eviction after it was last used: 10 minutes. */
export const DEFAULT_EVICTION_GRACE_MS = 10 * 60_000;
/** An eviction pass frees down to this share of the cap, so passes (and their pin lookups) stay rare. */
export const EVICT_TO = 0.9;

const BLOB_MODE = 0o444;
/** Where this store keeps blobs, for the corrupt-blob errors. */
const ON_DISK = 'on disk';
/**
 * Read size of streamed reads and of hashing a file: 1 MiB. Reads from the page cache run at several
 * GB/s, so the per-call cost of a thread-pool round trip and a promise dominates small reads (256 KiB
 * reads streamed a blob at ~650 MiB/s here, 1 MiB ones at ~1 GiB/s, hashing included).
 */
const STREAM_CHUNK_BYTES = 1024 * 1024;
/** Smallest read buffer when hashing a file: small files are hashed with one buffer of about their size. */
const MIN_HASH_CHUNK_BYTES = 4 * 1024;
/** Presence checks findMissing makes between two yields to the event loop (~1-3 ms of stats). */
const STATS_PER_SLICE = 512;

export class FsBlobStore implements BlobStore, BlobReclaimer {
  readonly root: string;
  readonly maxBlobBytes: number;
  private readonly fsync: boolean;
  private readonly verified: VerifiedMemo;
  private readonly tmpDir: string;
  /** `<root>/sha256`, the parent of the shard directories. */
  private readonly blobDir: string;
  private tmpReady: Promise<void> | undefined;
  private readonly shardsReady = new Set<string>();
  private readonly pack: SmallBlobPack;
  /** Set with a cap: what is stored and when it was last used. */
  private readonly usage: BlobUsage | undefined;
  private readonly usageReady: Promise<void> | undefined;
  private evicting: Promise<void> | undefined;
  private readonly maxBytes: number | undefined;
  private readonly graceMs: number;
  private readonly pins: PinSource | undefined;
  private readonly now: () => number;

  constructor(opts: FsBlobStoreOptions) {
    this.root = opts.root;
    if (opts.maxBytes !== undefined && !(Number.isSafeInteger(opts.maxBytes) && opts.maxBytes > 0)) {
      throw new InvalidArgumentError(`the store's cap must be a positive number of bytes, not ${opts.maxBytes}`);
    }
    // A blob larger than the whole store could never be kept: refused as too large (and advertised so).
    this.maxBlobBytes = checkMaxBlobBytes(Math.min(opts.maxBlobBytes, opts.maxBytes ?? Number.POSITIVE_INFINITY));
    this.maxBytes = opts.maxBytes;
    this.graceMs = opts.evictionGraceMs ?? DEFAULT_EVICTION_GRACE_MS;
    this.pins = opts.pins;
    this.now = opts.now ?? Date.now;
    this.fsync = opts.fsync ?? true;
    this.verified = new VerifiedMemo(opts.verifiedMemoEntries ?? 100_000);
    this.tmpDir = join(opts.root, 'tmp');
    this.blobDir = join(opts.root, 'sha256');
    // Checked before this instance writes anything: a root with blobs already may hold small ones as files.
    this.pack = new SmallBlobPack({ root: opts.root, fsync: this.fsync, smallFilesBefore: existsSync(this.blobDir) });
    if (opts.maxBytes !== undefined || opts.trackUsage === true) {
      this.usage = new BlobUsage();
      this.usageReady = this.learnUsage(this.usage);
      // Awaited by every write; observed here so a failure is not unhandled meanwhile.
      this.usageReady.catch(() => undefined);
    }
  }

  /** Bytes held, as eviction counts them (undefined without a cap). */
  async usedBytes(): Promise<number | undefined> {
    await this.usageReady;
    return this.usage?.bytes;
  }

  /** Closes the small-blob database; the store is unusable afterwards. */
  async close(): Promise<void> {
    this.pack.close();
  }

  /** Where the blob with this hash lives (or would): for diagnostics and tests. */
  pathOf(hash: string): string {
    if (!isValidHash(hash)) throw new InvalidArgumentError('hash must be 64 lower-case hex characters (SHA-256)');
    return join(this.root, 'sha256', hash.slice(0, 2), hash);
  }

  async has(d: Digest): Promise<boolean> {
    const digest = validateDigest(d);
    if (isEmptyDigest(digest)) return true;
    const present = this.isPresent(digest);
    if (present) this.usage?.touch(digest.hash, this.now());
    return present;
  }

  async sizeOf(hash: string): Promise<number | undefined> {
    const path = this.pathOf(hash);
    if (hash === EMPTY_DIGEST.hash) return 0;
    const packed = this.pack.sizeOf(hash);
    if (packed !== undefined) return packed;
    const st = await stat(path).catch(ifMissing(undefined));
    return st?.isFile() ? st.size : undefined;
  }

  async findMissing(digests: readonly Digest[]): Promise<Digest[]> {
    const unique = uniqueDigests(digests);
    const missing: Digest[] = [];
    for (let from = 0; from < unique.length; from += STATS_PER_SLICE) {
      // A long list gives the event loop back now and then (see isPresent).
      if (from > 0) await setImmediate();
      const slice = unique.slice(from, from + STATS_PER_SLICE);
      // The packed ones in one statement; files (and small blobs an earlier version left as files) by stat.
      const packable = slice.filter(isPackable);
      const packed = packable.length > 0 ? this.pack.sizesOf(packable.map((d) => d.hash)) : undefined;
      for (const d of slice) {
        if (isEmptyDigest(d)) continue;
        if (isPackable(d)) {
          if (packed?.get(d.hash) === d.sizeBytes) continue;
          if (!this.pack.smallFilesPossible) {
            missing.push(d);
            continue;
          }
        }
        if (!this.isFilePresent(d)) missing.push(d);
      }
    }
    // Reported present: safe from eviction for the grace period (the client will use them next).
    if (this.usage) {
      const now = this.now();
      const absent = new Set(missing.map((d) => d.hash));
      for (const d of unique) if (!absent.has(d.hash)) this.usage.touch(d.hash, now);
    }
    return missing;
  }

  async put(d: Digest, data: Uint8Array): Promise<void> {
    const digest = checkDigestForWrite(d, this.maxBlobBytes);
    verifyBytes(digest, data);
    // The synchronous stat (see isPresent): most small puts (Directory blobs of every submit) find the blob stored.
    if (isEmptyDigest(digest) || this.isPresent(digest)) {
      this.usage?.touch(digest.hash, this.now());
      return;
    }
    // Bytes in memory can be written again once eviction has made room on a full disk.
    await this.withSpace(digest, true, async () => {
      if (isPackable(digest)) {
        this.packPut(digest, data);
        return;
      }
      await this.writeAtomically(digest, async (handle) => {
        await handle.writeFile(data);
      });
    });
  }

  async putStream(d: Digest, source: AsyncIterable<Uint8Array>): Promise<void> {
    const digest = checkDigestForWrite(d, this.maxBlobBytes);
    if (isEmptyDigest(digest) || this.isPresent(digest)) {
      this.usage?.touch(digest.hash, this.now());
      // Still read and check it: the caller learns of bad bytes whether or not the store needed them.
      await drainVerifying(digest, source);
      return;
    }
    if (isPackable(digest)) {
      // At most 64 KiB: gathered, verified, then stored in one statement (an overlong stream is stopped).
      const data = await readVerified(digest, source);
      await this.withSpace(digest, true, async () => this.packPut(digest, data));
      return;
    }
    const write = async (handle: FileHandle): Promise<void> => {
      const counter = new VerifyingCounter(digest);
      for await (const raw of source) {
        const chunk = asBytes(raw);
        // The write runs on the thread pool while this thread hashes the same (unchanging) bytes, so an
        // upload costs max(hash, write) per chunk rather than their sum. An overlong chunk still fails the
        // upload: the temporary file it went into is removed and nothing becomes visible.
        const writing = writeFully(handle, chunk);
        try {
          counter.update(chunk);
        } finally {
          await writing;
        }
      }
      counter.finish();
    };
    // A stream is read once: on a full disk it fails after eviction has made room for the client's retry.
    await this.withSpace(digest, false, () => this.writeAtomically(digest, write));
  }

  async putFile(path: string): Promise<Digest> {
    const source = await statSourceFile(path);
    checkFileSize(path, source.size, this.maxBlobBytes);
    // A small file is read whole (synchronously: one open, read and close of at most 64 KiB instead of
    // four thread-pool round trips) and stored by the digest of exactly those bytes. One that grew since
    // the stat is stored as a file below.
    const small = source.size <= PACKED_MAX_BYTES ? readAtMost(path, source.size) : undefined;
    if (small) {
      // Its digest is of exactly these bytes, so there is nothing left to verify.
      const digest = digestOfBytes(small);
      if (!isEmptyDigest(digest) && !this.isPresent(digest)) await this.withSpace(digest, true, async () => this.packPut(digest, small));
      else this.usage?.touch(digest.hash, this.now());
      return digest;
    }
    await this.makeRoom(source.size);
    const tmp = await this.newTempPath('file');
    let published = false;
    try {
      // Copy first (a clone where the filesystem can), then hash the copy: the digest is of exactly the
      // bytes stored, even if the source changes meanwhile.
      await copyFile(path, tmp, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE).catch(async (err: unknown) => {
        if (isDiskFull(err)) await this.freeAfterDiskFull(source.size);
        throw diskFullOr(err);
      });
      const handle = await open(tmp, 'r');
      try {
        const digest = await hashHandle(handle, source.size, (size) => checkFileSize(path, size, this.maxBlobBytes));
        if (isEmptyDigest(digest) || this.isPresent(digest)) return digest;
        if (this.fsync) await handle.sync().catch((err: unknown) => Promise.reject(diskFullOr(err)));
        await handle.chmod(BLOB_MODE);
        await this.publish(tmp, digest);
        published = true;
        return digest;
      } finally {
        await handle.close();
      }
    } finally {
      // Renamed into place, the temporary name is gone: unlinking it would only fail.
      if (!published) await unlink(tmp).catch(ifMissing(undefined));
    }
  }

  async get(d: Digest): Promise<Buffer> {
    const digest = validateDigest(d);
    if (isEmptyDigest(digest)) return Buffer.alloc(0);
    this.usage?.touch(digest.hash, this.now());
    const packed = this.packed(digest);
    if (packed) return packed;
    const { handle } = await this.openBlob(digest);
    let data: Buffer;
    try {
      data = await handle.readFile();
    } finally {
      await handle.close();
    }
    const actual = digestOfBytes(data);
    if (!digestEquals(actual, digest)) {
      await this.evict(digest);
      throw corruptBlobRemoved(digest, ON_DISK);
    }
    return data;
  }

  async getStream(d: Digest, range?: ByteRange): Promise<Readable> {
    const digest = validateDigest(d);
    const { start, end } = resolveRange(digest.sizeBytes, range);
    if (isEmptyDigest(digest) || start === end) {
      if (!(await this.has(digest))) throw blobNotFound(digest);
      return Readable.from([], { objectMode: false });
    }
    this.usage?.touch(digest.hash, this.now());
    const packed = this.packed(digest);
    if (packed) return Readable.from([packed.subarray(start, end)], { objectMode: false });
    const { handle, st } = await this.openBlob(digest);
    let verify: boolean;
    try {
      // A whole blob is hashed as it streams, unless this instance has hashed this very file before (the
      // upload that stored it hashed what it wrote, or an earlier read hashed the file); a range is checked
      // whole first, by the same rule.
      verify = !this.verified.has(digest.hash, identity(st));
      if (verify && !(start === 0 && end === digest.sizeBytes)) {
        await this.verifyOnce(handle, digest);
        verify = false;
      }
    } catch (err) {
      await handle.close();
      throw err;
    }
    const stream = Readable.from(this.readChunks(handle, digest, start, end, verify), { objectMode: false });
    // A stream destroyed before its first read never enters the generator, whose finally would close it.
    stream.once('close', () => void handle.close().catch(() => undefined));
    return stream;
  }

  async materialize(d: Digest, destPath: string, mode: number, opts: MaterializeOptions = {}): Promise<void> {
    const digest = validateDigest(d);
    if (isEmptyDigest(digest)) {
      await writeNewFile(destPath, new Uint8Array(0), mode);
      return;
    }
    this.usage?.touch(digest.hash, this.now());
    const packed = this.packed(digest);
    if (packed) {
      // At most 64 KiB, usually into a run directory being staged: synchronous, as stageTree's mkdirs are.
      writeNewFileSync(destPath, packed, mode);
      return;
    }
    const path = this.pathOf(digest.hash);
    const st = this.statBlob(digest);
    if (!st) throw blobNotFound(digest);
    if (opts.shareStoredFile && (mode & 0o111) === 0 && (await this.linkStored(digest, path, destPath, st))) return;
    await copyFile(path, destPath, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE).catch(async (err: unknown) => {
      if (isErrno(err, 'EEXIST')) throw alreadyExists(destPath, err);
      if (isMissing(err) && !this.statBlob(digest)) throw blobNotFound(digest);
      throw err;
    });
    await chmod(destPath, mode);
    if (this.verified.has(digest.hash, identity(st))) return;
    // Hash the copy rather than the store file: it is what the caller gets.
    const handle = await open(destPath, 'r');
    let actual: Digest;
    try {
      actual = await hashHandle(handle, digest.sizeBytes);
    } finally {
      await handle.close();
    }
    if (!digestEquals(actual, digest)) {
      await unlink(destPath).catch(ifMissing(undefined));
      await this.evict(digest);
      throw corruptBlobRemoved(digest, ON_DISK);
    }
    this.verified.add(digest.hash, identity(st));
  }

  // ---- internals --------------------------------------------------------------------------------------

  /**
   * Whether a regular file of the digest's size is at its path, by a synchronous stat. Presence checks are
   * the hot path of action-cache hits and FindMissingBlobs, and a stat of a local file is a few
   * microseconds, where the thread-pool round trip of an asynchronous one costs several times that in
   * promise and scheduling overhead on the event loop alone. Files are never cached: a blob file deleted
   * behind the store's back is missing at the next check (the pack's presence is remembered, but reread
   * whenever the database changes: see SmallBlobPack).
   */
  private isPresent(digest: Digest): boolean {
    if (isPackable(digest)) {
      if (this.pack.sizeOf(digest.hash) === digest.sizeBytes) return true;
      if (!this.pack.smallFilesPossible) return false;
    }
    return this.isFilePresent(digest);
  }

  /** Whether the blob is a file of its size in its shard (see isPresent). */
  private isFilePresent(digest: Digest): boolean {
    const st = statSync(`${this.blobDir}/${digest.hash.slice(0, 2)}/${digest.hash}`, { throwIfNoEntry: false });
    return st !== undefined && st.isFile() && st.size === digest.sizeBytes;
  }

  /**
   * The blob's stats when a regular file of the digest's size is at its path; a size mismatch counts as
   * absent. Synchronous for the reasons isPresent gives (and no Error is made for an absent blob).
   */
  private statBlob(digest: Digest): BigIntStats | undefined {
    const st = statSync(this.pathOf(digest.hash), { bigint: true, throwIfNoEntry: false });
    return st?.isFile() && st.size === BigInt(digest.sizeBytes) ? st : undefined;
  }

  /**
   * The blob's bytes when the pack has it, verified; undefined when it is not packed (it may be a file). A
   * row whose bytes do not match its hash is deleted and reported as corrupt.
   */
  private packed(digest: Digest): Buffer | undefined {
    if (!isPackable(digest)) return undefined;
    const data = this.pack.get(digest.hash);
    if (!data || data.byteLength !== digest.sizeBytes) return undefined;
    if (!digestEquals(digestOfBytes(data), digest)) {
      this.pack.delete(digest.hash);
      throw corruptBlobRemoved(digest, ON_DISK);
    }
    return data;
  }

  /** Opens the blob's file for reading, with its stats; NotFound unless it is a regular file of the digest's size. */
  private async openBlob(digest: Digest): Promise<{ handle: FileHandle; st: BigIntStats }> {
    const handle = await open(this.pathOf(digest.hash), 'r').catch((err: unknown) => {
      if (isMissing(err)) throw blobNotFound(digest);
      throw err;
    });
    const st = await handle.stat({ bigint: true }).catch(async (err: unknown) => {
      await handle.close();
      throw err;
    });
    if (!st.isFile() || st.size !== BigInt(digest.sizeBytes)) {
      await handle.close();
      throw blobNotFound(digest);
    }
    return { handle, st };
  }

  /**
   * Hard-links the stored file at `destPath` (no data copied, no inode made), verified as every read is.
   * False when this filesystem cannot (another device, no hard links): the caller copies instead.
   */
  private async linkStored(digest: Digest, path: string, destPath: string, st: BigIntStats): Promise<boolean> {
    try {
      await link(path, destPath);
    } catch (err) {
      if (isErrno(err, 'EEXIST')) throw alreadyExists(destPath, err);
      if (isMissing(err) && !this.statBlob(digest)) throw blobNotFound(digest);
      if (isErrno(err, 'EXDEV') || isErrno(err, 'EPERM') || isErrno(err, 'EMLINK') || isErrno(err, 'ENOTSUP')) return false;
      throw err;
    }
    if (this.verified.has(digest.hash, identity(st))) return true;
    const handle = await open(path, 'r');
    try {
      await this.verifyOnce(handle, digest);
    } catch (err) {
      await unlink(destPath).catch(ifMissing(undefined));
      throw err;
    } finally {
      await handle.close();
    }
    return true;
  }

  /** Hashes the whole blob through `handle` unless this instance already has; evicts and throws when corrupt. */
  private async verifyOnce(handle: FileHandle, digest: Digest): Promise<void> {
    const st = await handle.stat({ bigint: true });
    if (this.verified.has(digest.hash, identity(st))) return;
    const actual = await hashHandle(handle, digest.sizeBytes);
    if (!digestEquals(actual, digest)) {
      await this.evict(digest);
      throw corruptBlobRemoved(digest, ON_DISK);
    }
    this.verified.add(digest.hash, identity(st));
  }

  /**
   * The bytes [start, end) in chunks of up to {@link STREAM_CHUNK_BYTES}, hashed on the way when `verify`.
   * One read runs ahead: the next chunk is requested from the thread pool before this one is hashed and
   * handed on, so disk (or page cache) and hashing overlap. At most two chunks are held at a time.
   */
  private async *readChunks(handle: FileHandle, digest: Digest, start: number, end: number, verify: boolean): AsyncGenerator<Buffer> {
    const readAt = (position: number): Promise<Buffer> => {
      const read = readChunk(handle, digest, position, Math.min(STREAM_CHUNK_BYTES, end - position));
      // Observed at once: a read failing while the consumer holds the previous chunk is reported when
      // the loop reaches it, not as an unhandled rejection.
      read.catch(() => undefined);
      return read;
    };
    let ahead: Promise<Buffer> | undefined;
    try {
      const builder = new DigestBuilder();
      let position = start;
      ahead = readAt(position);
      while (ahead) {
        const chunk = await ahead;
        position += chunk.byteLength;
        ahead = position < end ? readAt(position) : undefined;
        if (verify) {
          builder.update(chunk);
          // The last chunk waits until the whole blob is known good: a corrupt blob never ends cleanly.
          if (position === end) await this.checkStreamed(handle, digest, builder.digest());
        }
        yield chunk;
      }
    } finally {
      // A consumer that stops early leaves a read in flight: let it finish before the handle closes.
      await ahead?.catch(() => undefined);
      await handle.close();
    }
  }

  private async checkStreamed(handle: FileHandle, digest: Digest, actual: Digest): Promise<void> {
    if (!digestEquals(actual, digest)) {
      await this.evict(digest);
      throw corruptBlobStreamed(digest, ON_DISK);
    }
    this.verified.add(digest.hash, identity(await handle.stat({ bigint: true })));
  }

  /** Writes a blob through `write` into a temporary file, then renames it into place; cleans up on any error. */
  private async writeAtomically(digest: Digest, write: (handle: FileHandle) => Promise<void>): Promise<void> {
    const tmp = await this.newTempPath(digest.hash.slice(0, 16));
    let published = false;
    try {
      const handle = await open(tmp, 'wx', BLOB_MODE);
      try {
        await write(handle);
        if (this.fsync) await handle.sync();
      } finally {
        await handle.close();
      }
      await this.publish(tmp, digest);
      published = true;
    } finally {
      if (!published) await unlink(tmp).catch(ifMissing(undefined));
    }
  }

  private async publish(tmp: string, digest: Digest): Promise<void> {
    const dest = this.pathOf(digest.hash);
    const shard = join(this.root, 'sha256', digest.hash.slice(0, 2));
    if (!this.shardsReady.has(shard)) {
      await mkdir(shard, { recursive: true });
      this.shardsReady.add(shard);
    }
    await rename(tmp, dest);
    // Remembered as verified: its bytes were hashed as they arrived. Sound without fsync too: the memory
    // lives only as long as this process, and until a power loss (which ends the process and the memory)
    // the file reads back what was written. Synchronous, as isPresent: its inode is in memory.
    const st = statSync(dest, { bigint: true, throwIfNoEntry: false });
    if (st) this.verified.add(digest.hash, identity(st));
    this.usage?.add(digest.hash, digest.sizeBytes, this.now());
  }

  private async newTempPath(label: string): Promise<string> {
    this.tmpReady ??= mkdir(this.tmpDir, { recursive: true }).then(() => undefined);
    try {
      await this.tmpReady;
    } catch (err) {
      this.tmpReady = undefined;
      throw err;
    }
    return join(this.tmpDir, `${label}-${process.pid}-${randomBytes(8).toString('hex')}.tmp`);
  }

  /** Removes a blob found corrupt. A concurrent good upload may lose its rename to this: it is then just missing. */
  private async evict(digest: Digest): Promise<void> {
    this.verified.delete(digest.hash);
    this.pack.delete(digest.hash);
    this.usage?.remove(digest.hash);
    await unlink(this.pathOf(digest.hash)).catch(ifMissing(undefined));
  }

  // ---- eviction and a full disk -----------------------------------------------------------------------

  /** Stores a small blob in the pack and counts it. */
  private packPut(digest: Digest, data: Uint8Array): void {
    this.pack.put(digest.hash, data);
    this.usage?.add(digest.hash, digest.sizeBytes, this.now());
  }

  /**
   * Runs a write after making room for it under the cap. On a full disk: eviction frees what it may,
   * then a `repeatable` write (its bytes are in memory) is tried once more; otherwise, or when that fails
   * too, InsufficientStorageError. The write itself leaves nothing visible when it fails.
   */
  private async withSpace(digest: Digest, repeatable: boolean, write: () => Promise<void>): Promise<void> {
    await this.makeRoom(digest.sizeBytes);
    try {
      await write();
      return;
    } catch (err) {
      if (!isDiskFull(err)) throw err;
      const freed = await this.freeAfterDiskFull(digest.sizeBytes);
      if (!repeatable || freed === 0) throw diskFullOr(err);
    }
    await write().catch((err: unknown) => Promise.reject(diskFullOr(err)));
  }

  /** Under a cap: evicts least recently used blobs until `incoming` more bytes fit (see the module comment). */
  private async makeRoom(incoming: number): Promise<void> {
    if (!this.usage || this.maxBytes === undefined) return;
    await this.usageReady;
    if (this.usage.bytes + incoming <= this.maxBytes) return;
    const target = Math.max(0, Math.floor(this.maxBytes * EVICT_TO) - incoming);
    await this.evictDownTo(target);
  }

  /** The disk is full: frees the incoming size and a tenth of what is held, if eviction may. Bytes freed. */
  private async freeAfterDiskFull(incoming: number): Promise<number> {
    if (!this.usage || this.maxBytes === undefined) return 0;
    await this.usageReady;
    const before = this.usage.bytes;
    await this.evictDownTo(Math.max(0, before - incoming - Math.ceil(before / 10)));
    return before - this.usage.bytes;
  }

  /** One eviction pass at a time; callers arriving meanwhile wait for it, then try their own. */
  private async evictDownTo(target: number): Promise<void> {
    while (this.evicting) await this.evicting;
    const usage = this.usage;
    if (!usage || usage.bytes <= target) return;
    const pass = (async () => {
      const pinned = (await this.pins?.pinnedHashes()) ?? new Set<string>();
      const usedBefore = this.now() - this.graceMs;
      const victims: Array<[string, number]> = [];
      let bytes = usage.bytes;
      for (const [hash, entry] of usage.oldestFirst()) {
        if (bytes <= target) break;
        // Oldest use first: every blob after this one was used within the grace period too.
        if (entry.usedAtMs > usedBefore) break;
        if (pinned.has(hash)) continue;
        victims.push([hash, entry.size]);
        bytes -= entry.size;
      }
      for (const [hash, size] of victims) await this.remove(hash, size);
    })();
    this.evicting = pass;
    try {
      await pass;
    } finally {
      this.evicting = undefined;
    }
  }

  /**
   * Removes blobs the retention sweep found unreferenced (decision 0047), except those pinned or used
   * within the grace period (a client was just told they are present, or is about to name them). Without
   * usage tracking the store cannot tell: it removes nothing. Runs between eviction passes.
   */
  async reclaim(hashes: readonly string[]): Promise<{ removed: number; kept: string[] }> {
    const usage = this.usage;
    if (!usage || hashes.length === 0) return { removed: 0, kept: [] };
    await this.usageReady;
    while (this.evicting) await this.evicting;
    const pass = (async () => {
      const pinned = (await this.pins?.pinnedHashes()) ?? new Set<string>();
      const usedBefore = this.now() - this.graceMs;
      let removed = 0;
      const kept: string[] = [];
      for (const hash of hashes) {
        const entry = usage.get(hash);
        if (!entry) continue;
        if (entry.usedAtMs > usedBefore || pinned.has(hash)) {
          kept.push(hash);
          continue;
        }
        await this.remove(hash, entry.size);
        removed++;
      }
      return { removed, kept };
    })();
    this.evicting = pass.then(() => undefined);
    try {
      return await pass;
    } finally {
      this.evicting = undefined;
    }
  }

  /** Removes one blob for eviction. A reader that has it open keeps reading (the inode lives on). */
  private async remove(hash: string, size: number): Promise<void> {
    this.usage?.remove(hash);
    this.verified.delete(hash);
    if (size > 0 && size <= PACKED_MAX_BYTES) {
      this.pack.delete(hash);
      if (!this.pack.smallFilesPossible) return;
    }
    await unlink(this.pathOf(hash)).catch(ifMissing(undefined));
  }

  /**
   * What the store holds, learnt when it opens: packed rows first (their last use is unknown: they go
   * first), then files by their access time.
   */
  private async learnUsage(usage: BlobUsage): Promise<void> {
    const found: Array<{ hash: string; size: number; usedAtMs: number }> = [];
    for (const { hash, size } of this.pack.allSizes()) found.push({ hash, size, usedAtMs: 0 });
    const shards = await readdir(this.blobDir).catch(ifMissing([] as string[]));
    for (const shard of shards) {
      const names = await readdir(join(this.blobDir, shard)).catch(ifMissing([] as string[]));
      for (const name of names) {
        if (!isValidHash(name)) continue;
        const st = await stat(join(this.blobDir, shard, name)).catch(ifMissing(undefined));
        if (st?.isFile()) found.push({ hash: name, size: st.size, usedAtMs: st.atimeMs });
      }
    }
    found.sort((a, b) => a.usedAtMs - b.usedAtMs);
    // Blobs stored or used while this ran are already counted, as the most recent.
    usage.addOlder(found);
  }

}

/**
 * What must stay the same for a verified blob to be trusted again: the file (device, inode), its size and
 * its modification time, which any write moves. Not ctime: a hard link made or removed (materialize may
 * share stored files) moves it too, and would make every shared use rehash. Stored files are read-only
 * and owned by the store; only their owner could write them and then set the old mtime back.
 */
function identity(st: BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`;
}

/**
 * Reads `length` (> 0) bytes at `position` into a fresh buffer; a short read (the file shrank under us)
 * is an InternalError, since the caller has already checked the size.
 */
async function readChunk(handle: FileHandle, digest: Digest, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await handle.read(buf, filled, length - filled, position + filled);
    if (bytesRead === 0) throw new InternalError(`blob ${digest.hash}/${digest.sizeBytes} shrank while being read`);
    filled += bytesRead;
  }
  return buf;
}

/**
 * Digest of everything readable through `handle`; `onSize` may veto a growing size. Two buffers take
 * turns, so the next read is in flight while the previous chunk is hashed. `expectedBytes` (what the
 * caller knows of the size) only sizes the buffers: most blobs are a few KiB, and two fresh 1 MiB buffers
 * per hash were most of the server's garbage (external memory that forced old-space collections) and of
 * its page faults. A file larger than expected is still read to its end.
 */
async function hashHandle(handle: FileHandle, expectedBytes: number, onSize?: (size: number) => void): Promise<Digest> {
  const builder = new DigestBuilder();
  // +1: the read that finds the end of a file of the expected size fits in the same buffer.
  const chunkBytes = Math.min(STREAM_CHUNK_BYTES, Math.max(MIN_HASH_CHUNK_BYTES, expectedBytes + 1));
  let current: Buffer = Buffer.allocUnsafe(chunkBytes);
  let spare: Buffer | undefined;
  let position = 0;
  let ahead = handle.read(current, 0, chunkBytes, 0);
  try {
    for (;;) {
      const { bytesRead } = await ahead;
      if (bytesRead === 0) break;
      position += bytesRead;
      onSize?.(position);
      const chunk = current.subarray(0, bytesRead);
      if (bytesRead < chunkBytes) {
        // A short read: almost surely the end. Hash it, then check with one more read into the same buffer.
        builder.update(chunk);
        ahead = handle.read(current, 0, chunkBytes, position);
        continue;
      }
      spare ??= Buffer.allocUnsafe(chunkBytes);
      [current, spare] = [spare, current];
      ahead = handle.read(current, 0, chunkBytes, position);
      builder.update(chunk);
    }
  } finally {
    // On a veto the last read may still be running: the caller closes the handle after this returns.
    await ahead.catch(() => undefined);
  }
  return builder.digest();
}

/** The whole file when it holds at most `size` bytes; undefined when it has more. */
function readAtMost(path: string, size: number): Buffer | undefined {
  const buf = Buffer.allocUnsafe(size + 1);
  const fd = openSync(path, 'r');
  try {
    let filled = 0;
    for (;;) {
      const n = readSync(fd, buf, filled, buf.byteLength - filled, null);
      if (n === 0) break;
      filled += n;
      if (filled === buf.byteLength) break;
    }
    return filled <= size ? buf.subarray(0, filled) : undefined;
  } finally {
    closeSync(fd);
  }
}

/** Whether the blob belongs in the pack (the empty blob is stored nowhere). */
function isPackable(digest: Digest): boolean {
  return digest.sizeBytes > 0 && digest.sizeBytes <= PACKED_MAX_BYTES;
}

function digestOfBytes(data: Uint8Array): Digest {
  return new DigestBuilder().update(data).digest();
}

/** A write refused for want of space: ENOSPC, a quota, or SQLite's "database or disk is full". */
function isDiskFull(err: unknown): boolean {
  return isErrno(err, 'ENOSPC') || isErrno(err, 'EDQUOT') || (err as { code?: unknown } | null)?.code === 'SQLITE_FULL';
}

/** A full disk as InsufficientStorageError; any other error as it is. */
function diskFullOr(err: unknown): unknown {
  if (!isDiskFull(err)) return err;
  return new InsufficientStorageError('the blob store is out of disk space; nothing of this blob was stored', { cause: err });
}

function isMissing(err: unknown): boolean {
  return isErrno(err, 'ENOENT');
}

/** A catch handler turning "no such file" into `value` and rethrowing anything else. */
function ifMissing<T>(value: T): (err: unknown) => T {
  return (err) => {
    if (isMissing(err)) return value;
    throw err;
  };
}
