/**
 * The worker's end of a run's progress channel: a regular file the channel creates in the run's input root
 * (the program finds its sandbox path in `REMEX_PROGRESS` and appends lines to it), read incrementally by
 * polling. It promises:
 * - nothing the program does with the channel can block it, kill it or slow it down;
 * - the worker never opens anything the program put at the path: the file is created exclusively
 *   (O_CREAT|O_EXCL|O_NOFOLLOW) before the program starts and read through that one descriptor until
 *   `close()`; a symlink, FIFO or directory planted later is never followed, only reported (`problem`);
 * - bounded memory and bounded work per poll whatever is written: a partial line is held up to
 *   `maxLineBytes` (longer lines are dropped whole and counted `truncated`), a poll reads at most
 *   `maxReadBytesPerPoll` bytes (a writer further ahead is caught up by jumping to the tail: the latest
 *   lines are what matter; the bytes passed over are counted `skippedBytes`), the history is a ring;
 * - at most one update delivered per `minIntervalMs`, the latest winning (superseded ones counted `dropped`),
 *   and on `close()` a final read, a last line without its newline, and the update still waiting, at once.
 *
 * Why a file and not a FIFO: a FIFO's writer blocks in open() until a reader is there and in write() once
 * 64 KiB are unread, and is killed by SIGPIPE when the reader goes away — so a worker that reads late, a
 * flood, or the end of the run would stall or kill the job; a program that opens and closes per update
 * (`echo 42 >> "$REMEX_PROGRESS"`) would hand the reader an EOF each time. A file has none of that: writes
 * never wait for the worker, any open/close pattern works, and the last line is still there for the final
 * read after the program exited. Its cost is the disk the program writes, which counts against the run's
 * storage like any file it writes; a line every 100 ms is about a megabyte a day.
 *
 * Wiring: open it in the run's input root (`<run>/root`, bound at SANDBOX_ROOT inside the sandbox) before the
 * program starts, with `fileOwner` set to the sandbox's uid and gid when the worker is root, and give the
 * program `REMEX_PROGRESS=<SANDBOX_ROOT>/<fileName>` ({@link PROGRESS_ENV_VAR}); close it when the run ended,
 * before outputs are collected and the run directory removed.
 *
 * A program that rewrites rather than appends (`echo 42 > "$REMEX_PROGRESS"`) is followed too: a file that
 * shrank, whose byte before the read position changed, or whose size stayed while its mtime moved, is read
 * again from the start (`rewinds`).
 */
import { constants, fstatSync } from 'node:fs';
import type { BigIntStats } from 'node:fs';
import { lstat, open, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { InternalError, InvalidArgumentError } from '../../core/errors.js';
import { MAX_PROGRESS_LINE_CHARS, parseProgressLine } from './progress-line.js';
import type { ProgressUpdate } from './progress-line.js';

/** The environment variable that tells the program its channel's path inside the sandbox. */
export const PROGRESS_ENV_VAR = 'REMEX_PROGRESS';
/** Where in the directory given to {@link ProgressChannel.open} the file goes: a dot file, out of a listing's way. */
export const DEFAULT_PROGRESS_FILE_NAME = '.remex-progress';
export const DEFAULT_POLL_INTERVAL_MS = 100;
export const DEFAULT_MIN_INTERVAL_MS = 1000;
/** A valid line is never longer in bytes than the parser's limit in characters. */
export const DEFAULT_MAX_LINE_BYTES = MAX_PROGRESS_LINE_CHARS;
/** About 10 ms of parsing of short lines: a flood costs the worker little per poll. */
export const DEFAULT_MAX_READ_BYTES_PER_POLL = 256 * 1024;
export const DEFAULT_HISTORY_LIMIT = 32;

export interface ProgressChannelOptions {
  /**
   * Called with each delivered update (at most one per `minIntervalMs`) and the time its line was read.
   * An update without a percent carries the last percent an earlier line gave, if any. Must not throw
   * (a throw is counted in `listenerErrors` and otherwise ignored).
   */
  onUpdate?: (update: ProgressUpdate, atMs: number) => void;
  /** A single path segment. Default {@link DEFAULT_PROGRESS_FILE_NAME}. */
  fileName?: string;
  /**
   * Who owns the file. Give the sandbox's uid and gid when the worker runs as root and the program as
   * another uid: the file is created mode 0600, so only its owner (and root) can write it. Default: this
   * process's, which is the program's when the sandbox runs unprivileged.
   */
  fileOwner?: { uid: number; gid: number };
  pollIntervalMs?: number;
  minIntervalMs?: number;
  maxLineBytes?: number;
  maxReadBytesPerPoll?: number;
  historyLimit?: number;
  /** Clock for `atMs` and the rate limit (epoch ms). Default Date.now. */
  now?: () => number;
}

/** One delivered update and when its line was read (epoch ms). */
export interface ProgressRecord {
  readonly update: ProgressUpdate;
  readonly atMs: number;
}

export interface ProgressChannelStats {
  /** Complete lines parsed (valid or not); over-long and skipped ones are not among them. */
  readonly lines: number;
  readonly malformed: number;
  /** Valid updates superseded by a later one before they could be delivered. */
  readonly dropped: number;
  /** Lines longer than `maxLineBytes`, dropped whole (a line whose start a jump passed over counts only if the rest is too long). */
  readonly truncated: number;
  /** Bytes passed over to catch up with a writer more than a poll's budget ahead. */
  readonly skippedBytes: number;
  /** Times the file was read again from the start because the program rewrote it. */
  readonly rewinds: number;
  readonly listenerErrors: number;
}

interface CompiledOptions {
  onUpdate: ((update: ProgressUpdate, atMs: number) => void) | undefined;
  fileName: string;
  fileOwner: { uid: number; gid: number } | undefined;
  pollIntervalMs: number;
  minIntervalMs: number;
  maxLineBytes: number;
  maxReadBytesPerPoll: number;
  historyLimit: number;
  now: () => number;
}

const NEWLINE = 0x0a;
const PATH_CHECK_INTERVAL_MS = 1000;

export class ProgressChannel {
  /** The file on the host. The program's `REMEX_PROGRESS` is the same file seen from inside the sandbox. */
  readonly path: string;
  readonly fileName: string;

  private readonly opts: CompiledOptions;
  private readonly fh: FileHandle;
  private readonly ino: bigint;
  private readonly dev: bigint;

  private offset = 0;
  private lastByte: number | undefined;
  private mtimeMs: number;
  /** The start of a line not yet ended, at most maxLineBytes. */
  private readonly partial: Buffer;
  private partialLength = 0;
  /** Inside a line already counted as truncated (or entered mid-way after a jump): skip to its end. */
  private discarding = false;
  private buffer: Buffer = Buffer.alloc(0);

  private lastPercent: number | undefined;
  private pending: ProgressRecord | undefined;
  private lastDeliveredAtMs = Number.NEGATIVE_INFINITY;
  private deliveryTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> = Promise.resolve();
  private closing: Promise<void> | undefined;

  private readonly ring: ProgressRecord[] = [];
  private latestRecord: ProgressRecord | undefined;
  private counts = { lines: 0, malformed: 0, dropped: 0, truncated: 0, skippedBytes: 0, rewinds: 0, listenerErrors: 0 };
  private lastRejection: { reason: string; atMs: number } | undefined;
  private problemText: string | undefined;
  private pathCheckedAtMs = Number.NEGATIVE_INFINITY;

  private constructor(path: string, fh: FileHandle, st: BigIntStats, opts: CompiledOptions) {
    this.path = path;
    this.fileName = opts.fileName;
    this.fh = fh;
    this.opts = opts;
    this.ino = st.ino;
    this.dev = st.dev;
    this.mtimeMs = fstatSync(fh.fd).mtimeMs;
    this.partial = Buffer.alloc(opts.maxLineBytes);
  }

  /**
   * Creates the channel's file in `dir` (which must not hold one already: InvalidArgumentError) and starts
   * polling it. Call before the program starts; `close()` after it ended.
   */
  static async open(dir: string, options: ProgressChannelOptions = {}): Promise<ProgressChannel> {
    const opts = compileOptions(options);
    const path = join(dir, opts.fileName);
    let fh: FileHandle;
    try {
      fh = await open(path, constants.O_RDONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW | constants.O_NONBLOCK, 0o600);
    } catch (err) {
      if (errorCode(err) === 'EEXIST') {
        const what = await describePath(path);
        throw new InvalidArgumentError(`the run's directory already holds ${what} named ${opts.fileName}, where the progress channel goes`, {
          cause: err,
          details: { fileName: opts.fileName },
        });
      }
      throw new InternalError(`cannot create the progress channel ${path}`, { cause: err });
    }
    try {
      // The mode given to open() is filtered by the umask; the program's writes need exactly 0600.
      await fh.chmod(0o600);
      if (opts.fileOwner !== undefined) await fh.chown(opts.fileOwner.uid, opts.fileOwner.gid);
      const st = await fh.stat({ bigint: true });
      const channel = new ProgressChannel(path, fh, st, opts);
      channel.schedulePoll();
      return channel;
    } catch (err) {
      await fh.close().catch(() => undefined);
      // Before the program starts nothing else can be at the path: this removes our own empty file.
      await unlink(path).catch(() => undefined);
      throw new InternalError(`cannot prepare the progress channel ${path}`, { cause: err });
    }
  }

  /** The last delivered update, or undefined before the first. */
  get latest(): ProgressRecord | undefined {
    return this.latestRecord;
  }

  /** The last `historyLimit` delivered updates, oldest first. */
  get history(): readonly ProgressRecord[] {
    return this.ring.slice();
  }

  get stats(): ProgressChannelStats {
    return { ...this.counts };
  }

  /** Why the last malformed line was refused, for a person reading the run's status. */
  get lastMalformed(): { readonly reason: string; readonly atMs: number } | undefined {
    return this.lastRejection;
  }

  /** Something wrong with the channel itself (the path replaced or removed, a read that failed), or undefined. */
  get problem(): string | undefined {
    return this.problemText;
  }

  /** Stops polling, reads what is left, delivers the waiting update at once. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.finish();
    return this.closing;
  }

  private async finish(): Promise<void> {
    clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
    await this.inFlight;
    await this.readSafely();
    await this.checkPath();
    if (!this.discarding && this.partialLength > 0) this.handleLine(this.partial.toString('utf8', 0, this.partialLength));
    this.partialLength = 0;
    clearTimeout(this.deliveryTimer);
    this.deliveryTimer = undefined;
    this.deliverPending();
    await this.fh.close().catch(() => undefined);
  }

  private schedulePoll(): void {
    if (this.closing !== undefined) return;
    this.pollTimer = setTimeout(() => {
      // Most polls find nothing: they cost one fstat and no promise.
      if (this.unchanged()) this.schedulePoll();
      else this.inFlight = this.readSafely().then(() => this.schedulePoll());
    }, this.opts.pollIntervalMs);
    this.pollTimer.unref();
  }

  /** True when the file is as last read and the path is not due for a check. */
  private unchanged(): boolean {
    if (performance.now() - this.pathCheckedAtMs >= PATH_CHECK_INTERVAL_MS) return false;
    try {
      const st = fstatSync(this.fh.fd);
      return st.size === this.offset && st.mtimeMs === this.mtimeMs;
    } catch {
      return false;
    }
  }

  /** One poll; never rejects (a failure becomes `problem`, and the next poll tries again). */
  private async readSafely(): Promise<void> {
    try {
      // A rewind found while reading starts the read over once; another waits for the next poll.
      if ((await this.readOnce()) === 'rewound') await this.readOnce();
    } catch (err) {
      this.problemText = `cannot read the progress file: ${errorCode(err) ?? String(err)}`;
    }
  }

  private async readOnce(): Promise<'done' | 'rewound'> {
    // Synchronous and without BigInts: fstat of a descriptor held on a local file never waits on the disk,
    // and this costs about 2 µs against 25 µs through the thread pool — most polls find nothing new, and
    // 50 runs poll 500 times a second. mtimeMs keeps sub-microsecond precision: enough to see a change.
    const st = fstatSync(this.fh.fd);
    const size = st.size;
    if (size < this.offset || (size === this.offset && this.offset > 0 && st.mtimeMs !== this.mtimeMs)) this.rewind();
    this.mtimeMs = st.mtimeMs;
    if (size === this.offset) {
      // Nothing new: the moment to notice a program that writes somewhere else now (once a second: an
      // lstat costs more than the poll).
      if (performance.now() - this.pathCheckedAtMs >= PATH_CHECK_INTERVAL_MS) await this.checkPath();
      return 'done';
    }
    let start = this.offset;
    let jumped = false;
    if (size - start > this.opts.maxReadBytesPerPoll) {
      const tail = size - this.opts.maxReadBytesPerPoll;
      this.counts.skippedBytes += tail - start;
      start = tail;
      jumped = true;
    }
    // One byte before the new ones: it must be the one read last, else the file was rewritten; after a
    // jump it says whether the tail starts a line.
    const from = start > 0 ? start - 1 : 0;
    const buf = this.readBuffer(size - from);
    const { bytesRead } = await this.fh.read(buf, 0, size - from, from);
    let pos = 0;
    if (start > 0) {
      if (bytesRead === 0) return 'done';
      pos = 1;
      if (jumped) {
        this.partialLength = 0;
        if (buf[0] === NEWLINE) {
          this.discarding = false;
        } else {
          // The tail starts inside a line whose start was passed over. It is truncated only if what is
          // left of it is already too long (and not the line counted before the jump, as far as we know).
          const nl = buf.indexOf(NEWLINE, 1);
          const rest = (nl === -1 || nl >= bytesRead ? bytesRead : nl) - 1;
          if (!this.discarding && rest > this.opts.maxLineBytes) this.counts.truncated++;
          this.discarding = true;
        }
      } else if (buf[0] !== this.lastByte) {
        this.rewind();
        return 'rewound';
      }
    }
    if (bytesRead > pos) {
      this.consume(buf, pos, bytesRead);
      this.lastByte = buf[bytesRead - 1];
    }
    this.offset = from + bytesRead;
    return 'done';
  }

  /** One buffer for every read, grown as needed up to a poll's budget: no garbage per poll. */
  private readBuffer(bytes: number): Buffer {
    if (this.buffer.length < bytes) this.buffer = Buffer.allocUnsafe(Math.min(Math.max(bytes, this.buffer.length * 2), this.opts.maxReadBytesPerPoll + 1));
    return this.buffer;
  }

  private rewind(): void {
    this.offset = 0;
    this.lastByte = undefined;
    this.partialLength = 0;
    this.discarding = false;
    this.counts.rewinds++;
  }

  private consume(buf: Buffer, start: number, end: number): void {
    const max = this.opts.maxLineBytes;
    let pos = start;
    while (pos < end) {
      const nl = buf.indexOf(NEWLINE, pos);
      const lineEnd = nl === -1 || nl >= end ? end : nl;
      const length = lineEnd - pos;
      if (this.discarding) {
        // Already counted.
      } else if (this.partialLength + length > max) {
        this.counts.truncated++;
        this.partialLength = 0;
        this.discarding = true;
      } else if (lineEnd === nl) {
        if (this.partialLength === 0) {
          this.handleLine(buf.toString('utf8', pos, lineEnd));
        } else {
          buf.copy(this.partial, this.partialLength, pos, lineEnd);
          this.handleLine(this.partial.toString('utf8', 0, this.partialLength + length));
        }
      } else {
        buf.copy(this.partial, this.partialLength, pos, lineEnd);
        this.partialLength += length;
      }
      if (lineEnd !== nl) return;
      this.partialLength = 0;
      this.discarding = false;
      pos = nl + 1;
    }
  }

  private handleLine(text: string): void {
    this.counts.lines++;
    const result = parseProgressLine(text);
    const atMs = this.opts.now();
    if (!result.ok) {
      this.counts.malformed++;
      this.lastRejection = { reason: result.reason, atMs };
      return;
    }
    let update = result.update;
    if (update.percent === undefined && this.lastPercent !== undefined) update = { percent: this.lastPercent, ...update };
    this.lastPercent = update.percent;
    if (this.pending !== undefined) this.counts.dropped++;
    this.pending = { update, atMs };
    const wait = this.lastDeliveredAtMs + this.opts.minIntervalMs - atMs;
    if (wait <= 0) {
      this.deliverPending();
    } else if (this.deliveryTimer === undefined && this.closing === undefined) {
      this.deliveryTimer = setTimeout(() => {
        this.deliveryTimer = undefined;
        this.deliverPending();
      }, wait);
      this.deliveryTimer.unref();
    }
  }

  private deliverPending(): void {
    const record = this.pending;
    if (record === undefined) return;
    this.pending = undefined;
    this.lastDeliveredAtMs = this.opts.now();
    this.latestRecord = record;
    this.ring.push(record);
    if (this.ring.length > this.opts.historyLimit) this.ring.shift();
    try {
      this.opts.onUpdate?.(record.update, record.atMs);
    } catch {
      this.counts.listenerErrors++;
    }
  }

  /** Notes (never follows) something other than our file at the path. */
  private async checkPath(): Promise<void> {
    this.pathCheckedAtMs = performance.now();
    let st: BigIntStats;
    try {
      st = await lstat(this.path, { bigint: true });
    } catch (err) {
      this.problemText = errorCode(err) === 'ENOENT' ? 'the progress file was removed; lines written to a new file there are not read' : `cannot check the progress path: ${errorCode(err) ?? String(err)}`;
      return;
    }
    if (st.ino === this.ino && st.dev === this.dev) return;
    this.problemText = `the progress path was replaced by ${kindOf(st)}; it is never opened, only the file remex created is read`;
  }
}

function compileOptions(o: ProgressChannelOptions): CompiledOptions {
  const fileName = o.fileName ?? DEFAULT_PROGRESS_FILE_NAME;
  if (fileName === '' || fileName === '.' || fileName === '..' || fileName.includes('/') || fileName.includes('\0')) {
    throw new InvalidArgumentError(`progress file name ${JSON.stringify(fileName)} must be a single path segment`);
  }
  const positive = (name: string, value: number | undefined, fallback: number): number => {
    const v = value ?? fallback;
    if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got ${String(v)}`);
    return v;
  };
  const minIntervalMs = o.minIntervalMs ?? DEFAULT_MIN_INTERVAL_MS;
  if (!Number.isSafeInteger(minIntervalMs) || minIntervalMs < 0) throw new InvalidArgumentError(`minIntervalMs must be a non-negative integer, got ${String(minIntervalMs)}`);
  const maxLineBytes = positive('maxLineBytes', o.maxLineBytes, DEFAULT_MAX_LINE_BYTES);
  const maxReadBytesPerPoll = positive('maxReadBytesPerPoll', o.maxReadBytesPerPoll, DEFAULT_MAX_READ_BYTES_PER_POLL);
  if (maxReadBytesPerPoll < maxLineBytes) throw new InvalidArgumentError('maxReadBytesPerPoll must be at least maxLineBytes, or a jump could cut every line');
  if (o.fileOwner !== undefined && !(isId(o.fileOwner.uid) && isId(o.fileOwner.gid))) throw new InvalidArgumentError('fileOwner needs a numeric uid and gid');
  return {
    onUpdate: o.onUpdate,
    fileName,
    fileOwner: o.fileOwner,
    pollIntervalMs: positive('pollIntervalMs', o.pollIntervalMs, DEFAULT_POLL_INTERVAL_MS),
    minIntervalMs,
    maxLineBytes,
    maxReadBytesPerPoll,
    historyLimit: positive('historyLimit', o.historyLimit, DEFAULT_HISTORY_LIMIT),
    now: o.now ?? Date.now,
  };
}

function isId(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

function kindOf(st: BigIntStats): string {
  if (st.isSymbolicLink()) return 'a symlink';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isDirectory()) return 'a directory';
  if (st.isSocket()) return 'a socket';
  if (st.isFile()) return 'another file';
  return 'a device';
}

async function describePath(path: string): Promise<string> {
  try {
    return kindOf(await lstat(path, { bigint: true }));
  } catch {
    return 'something';
  }
}

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}
