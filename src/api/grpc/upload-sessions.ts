/**
 * Resumable ByteStream uploads without buffering: each upload is one BlobStore.putStream fed chunk by chunk
 * through a {@link ChunkChannel}. When a Write stream breaks off before finishing, the putStream stays
 * open, parked with the bytes it has taken so far (its committed size), so a later Write of the same
 * resource can resume at that offset. A parked upload nobody resumes within `idleMs` is abandoned: its
 * putStream fails and nothing of it becomes visible.
 *
 * A compressed upload (`compressed-blobs/zstd/…`) is decompressed between the channel and the store,
 * bounded by the digest's size; its offsets and committed size count the compressed bytes.
 */
import type { BlobStore } from '../../cas/blob-store.js';
import { decompressZstd, maxCompressedBytes } from '../../cas/zstd.js';
import type { Digest } from '../../core/digest.js';
import { formatDigest } from '../../core/digest.js';
import { InvalidArgumentError, RemexError } from '../../core/errors.js';
import type { ResourceCompressor } from './resource-names.js';

export const DEFAULT_UPLOAD_IDLE_MS = 60_000;

/**
 * An async iterable fed by push(): push resolves once the consumer has taken the chunk, so at most one
 * chunk waits in memory. end() finishes the iteration; fail() makes the consumer's next read throw.
 */
export class ChunkChannel implements AsyncIterable<Uint8Array> {
  private pending: { chunk: Uint8Array; taken: () => void; dropped: (err: Error) => void } | undefined;
  private waiting: ((result: IteratorResult<Uint8Array>) => void) | undefined;
  private waitingFail: ((err: Error) => void) | undefined;
  private ended = false;
  private failure: Error | undefined;
  /** Set when the consumer stopped reading (it had enough or failed); pushes then reject with this. */
  private stopped: Error | undefined;

  push(chunk: Uint8Array): Promise<void> {
    if (this.stopped) return Promise.reject(this.stopped);
    if (this.ended || this.failure) return Promise.reject(new RemexError('FAILED_PRECONDITION', 'upload already finished'));
    if (this.pending) return Promise.reject(new RemexError('ABORTED', 'a chunk is already waiting'));
    return new Promise((taken, dropped) => {
      const waiting = this.waiting;
      if (waiting) {
        this.waiting = undefined;
        this.waitingFail = undefined;
        waiting({ value: chunk, done: false });
        taken();
      } else this.pending = { chunk, taken, dropped };
    });
  }

  end(): void {
    this.ended = true;
    this.wakeConsumer();
  }

  fail(err: Error): void {
    this.failure ??= err;
    this.pending?.dropped(err);
    this.pending = undefined;
    this.wakeConsumer();
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return {
      next: () => {
        if (this.pending) {
          const { chunk, taken } = this.pending;
          this.pending = undefined;
          taken();
          return Promise.resolve({ value: chunk, done: false });
        }
        if (this.failure) return Promise.reject(this.failure);
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => {
          this.waiting = resolve;
          this.waitingFail = reject;
        });
      },
      return: () => {
        this.stop(new InvalidArgumentError('the store stopped reading this upload'));
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  /** The consumer is gone: later pushes fail with `err`. */
  stop(err: Error): void {
    this.stopped ??= err;
    this.pending?.dropped(err);
    this.pending = undefined;
  }

  private wakeConsumer(): void {
    const waiting = this.waiting;
    const waitingFail = this.waitingFail;
    this.waiting = undefined;
    this.waitingFail = undefined;
    if (this.failure) waitingFail?.(this.failure);
    else if (this.ended) waiting?.({ value: undefined, done: true });
  }
}

/** One upload in progress: its digest, bytes taken so far, and the store's verdict once it ends. */
export class UploadSession {
  committed = 0;
  /** The Write stream feeding it now; a newer stream takes over from an older one. */
  owner: symbol | undefined;
  private readonly channel = new ChunkChannel();
  /** Settles when the store has the blob (or refused it). Never left unobserved: see constructor. */
  readonly stored: Promise<void>;
  private idleTimer: NodeJS.Timeout | undefined;

  /** Most bytes this upload may send: the digest's size, or zstd's bound for it when compressed. */
  private readonly maxBytes: number;

  constructor(
    readonly key: string,
    readonly digest: Digest,
    blobs: BlobStore,
    private readonly onGone: (session: UploadSession) => void,
    readonly compressor?: ResourceCompressor,
  ) {
    this.maxBytes = compressor ? maxCompressedBytes(digest.sizeBytes) : digest.sizeBytes;
    const what = `the zstd upload of ${formatDigest(digest)}`;
    this.stored = blobs.putStream(digest, compressor ? decompressZstd(this.channel, digest.sizeBytes, what) : this.channel);
    // The error is reported to whichever Write awaits it; an abandoned upload's failure is expected.
    this.stored.catch(() => undefined).finally(() => this.onGone(this));
  }

  /** Feeds one chunk at `offset`, which must be the committed size. Resolves once the store has taken it. */
  async write(owner: symbol, offset: number, data: Uint8Array): Promise<void> {
    if (this.owner !== owner) throw new RemexError('ABORTED', `another Write stream took over the upload of ${formatDigest(this.digest)}`);
    if (offset !== this.committed) throw new InvalidArgumentError(`write_offset ${offset} is not the committed size ${this.committed}`);
    if (data.byteLength === 0) return;
    if (this.committed + data.byteLength > this.maxBytes) {
      const err = new InvalidArgumentError(`upload of ${formatDigest(this.digest)} sent more than ${this.maxBytes} ${this.compressor ? 'compressed ' : ''}bytes`);
      this.abandon(err);
      throw err;
    }
    // Counted once the store has taken the chunk. Should the store fail after that, the whole upload
    // ends, so a resumed Write never builds on a byte the store lost.
    await Promise.race([this.channel.push(data), this.stored.then(() => undefined)]);
    this.committed += data.byteLength;
  }

  /** All bytes sent: waits for the store's verification. */
  async finish(): Promise<void> {
    this.channel.end();
    await this.stored;
  }

  /** The Write stream went away without finishing: keep the upload for `idleMs`, then give it up. */
  park(idleMs: number): void {
    this.owner = undefined;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.abandon(new RemexError('ABORTED', 'upload abandoned: no Write resumed it')), idleMs);
    this.idleTimer.unref();
  }

  attach(owner: symbol): void {
    clearTimeout(this.idleTimer);
    this.owner = owner;
  }

  abandon(err: Error): void {
    clearTimeout(this.idleTimer);
    this.channel.fail(err);
  }
}

/** Uploads in progress, by resource name. */
export class UploadSessions {
  private readonly sessions = new Map<string, UploadSession>();

  constructor(
    private readonly blobs: BlobStore,
    readonly idleMs = DEFAULT_UPLOAD_IDLE_MS,
  ) {}

  get(key: string): UploadSession | undefined {
    return this.sessions.get(key);
  }

  /** A fresh upload under `key`, replacing (and abandoning) any earlier one. */
  start(key: string, digest: Digest, compressor?: ResourceCompressor): UploadSession {
    this.sessions.get(key)?.abandon(new RemexError('ABORTED', 'upload restarted from offset 0'));
    const session = new UploadSession(
      key,
      digest,
      this.blobs,
      (s) => {
        if (this.sessions.get(s.key) === s) this.sessions.delete(s.key);
      },
      compressor,
    );
    this.sessions.set(key, session);
    return session;
  }

  /** Gives up every upload in progress (server shutdown). */
  closeAll(): void {
    for (const session of this.sessions.values()) session.abandon(new RemexError('UNAVAILABLE', 'server shutting down'));
    this.sessions.clear();
  }
}
