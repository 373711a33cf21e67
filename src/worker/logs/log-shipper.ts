/**
 * A worker's live logs: for each run of a long job (`spec.logs`), the sandbox writes stdout and stderr to
 * two files in the run directory as they come (bounded by the job's ceiling: the spawner counts the rest and
 * keeps no more); this shipper reads their new bytes every `pollMs` and sends them to the server in chunks
 * of at most MAX_LOG_CHUNK_BYTES (`WorkerLink.appendLogs`), all of this worker's runs in one call, one call
 * at a time. Nothing is held between calls: what was not acknowledged is read from the file again, so
 * memory is bounded by one call (`maxBytesPerCall`) whatever the program writes, and a server that lost
 * the last chunk (it restarted) gets it again — its answer says how much it holds, and the shipper goes on
 * from there. When more is waiting than a call carries, the next call goes at once.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { Logger } from 'pino';
import { MAX_LOG_CHUNK_BYTES } from '../../events/bus-events.js';
import type { LogAck, LogChunk } from '../../scheduler/worker-link.js';

export interface LogFiles {
  stdoutPath: string;
  stderrPath: string;
}

export interface LogShipperOptions {
  send(chunks: readonly LogChunk[]): Promise<LogAck[]>;
  pollMs: number;
  /** Bytes read and sent in one call at most, over every run. */
  maxBytesPerCall: number;
  logger: Logger;
}

interface ShippedStream {
  stream: 'stdout' | 'stderr';
  path: string;
  fd: number | null;
  /** Bytes the server holds. */
  sent: number;
}

interface ShippedRun {
  jobId: string;
  attempt: number;
  streams: [ShippedStream, ShippedStream];
  /** Set once the program has ended: resolved when everything in the files is sent, or given up on. */
  finished?: () => void;
  failuresWhileFinishing: number;
}

/** Failed calls in a row after which the rest of an ended run's log is not sent live (its result has it all). */
const MAX_FAILURES_WHILE_FINISHING = 3;

export class LogShipper {
  private readonly runs = new Map<string, ShippedRun>();
  private timer: NodeJS.Timeout | undefined;
  private sending = false;
  private warnedAtMs = 0;

  constructor(private readonly opts: LogShipperOptions) {}

  /** Starts shipping a run's log files (they appear when the sandbox starts the program). */
  open(jobId: string, attempt: number, files: LogFiles): void {
    const stream = (name: 'stdout' | 'stderr', path: string): ShippedStream => ({ stream: name, path, fd: null, sent: 0 });
    this.runs.set(jobId, { jobId, attempt, streams: [stream('stdout', files.stdoutPath), stream('stderr', files.stderrPath)], failuresWhileFinishing: 0 });
    this.schedule(this.opts.pollMs);
  }

  /**
   * The program has ended (its files are whole): resolves once they are sent, then forgets the run. A
   * backlog larger than one call (a program that flooded faster than the server took it) is not sent live:
   * the result, in the CAS, carries the whole output, and followers get what they did not see from it.
   */
  finish(jobId: string): Promise<void> {
    const run = this.runs.get(jobId);
    if (!run) return Promise.resolve();
    if (this.backlogOf(run) > this.opts.maxBytesPerCall) {
      this.opts.logger.debug({ jobId }, 'the rest of a live log is left to the result');
      this.forget(run);
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      run.finished = resolve;
      this.schedule(0);
    });
  }

  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const run of [...this.runs.values()]) this.forget(run);
  }

  private schedule(delayMs: number): void {
    if (this.sending) return; // the call under way schedules the next
    if (this.timer && delayMs > 0) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), delayMs);
  }

  private async tick(): Promise<void> {
    this.timer = undefined;
    this.sending = true;
    let more = false;
    try {
      const chunks = this.collect();
      if (chunks.length > 0) more = await this.ship(chunks);
    } catch (err) {
      this.opts.logger.error({ err }, 'reading live logs failed');
    } finally {
      this.sending = false;
    }
    this.settleFinished();
    if (this.runs.size > 0) this.schedule(more ? 0 : this.opts.pollMs);
  }

  /** New bytes of every stream, up to the call's budget. */
  private collect(): LogChunk[] {
    const chunks: LogChunk[] = [];
    let budget = this.opts.maxBytesPerCall;
    for (const run of this.runs.values()) {
      for (const s of run.streams) {
        if (budget <= 0) return chunks;
        s.fd ??= openIfThere(s.path);
        if (s.fd === null) continue;
        const size = fstatSync(s.fd).size;
        if (size <= s.sent) continue;
        // One read per stream; the chunks are views of it (a server in this process appends them as one).
        const wanted = Math.min(size - s.sent, budget);
        const data = Buffer.allocUnsafe(wanted);
        const read = readSync(s.fd, data, 0, wanted, s.sent);
        for (let i = 0; i < read; i += MAX_LOG_CHUNK_BYTES) {
          chunks.push({ jobId: run.jobId, attempt: run.attempt, stream: s.stream, offset: s.sent + i, data: data.subarray(i, Math.min(read, i + MAX_LOG_CHUNK_BYTES)) });
        }
        budget -= read;
      }
    }
    return chunks;
  }

  /** Sends the chunks; true when the server took them all (more may be waiting). */
  private async ship(chunks: LogChunk[]): Promise<boolean> {
    try {
      const acks = await this.opts.send(chunks);
      for (const ack of acks) {
        const run = this.runs.get(ack.jobId);
        if (ack.leaseLost) {
          // The run is no longer this worker's: its log is not either (the heartbeat stops the run).
          if (run?.attempt === ack.attempt) this.forget(run);
          continue;
        }
        const s = run?.attempt === ack.attempt ? run.streams.find((x) => x.stream === ack.stream) : undefined;
        if (s) s.sent = ack.storedBytes;
        if (run) run.failuresWhileFinishing = 0;
      }
      return true;
    } catch (err) {
      const now = Date.now();
      if (now - this.warnedAtMs > 10_000) {
        this.warnedAtMs = now;
        this.opts.logger.warn({ err }, 'sending live logs failed; sending them again');
      }
      for (const run of this.runs.values()) if (run.finished) run.failuresWhileFinishing++;
      return false;
    }
  }

  /** Ended runs whose files are all sent (or that keep failing) are done. */
  private settleFinished(): void {
    for (const run of this.runs.values()) {
      if (!run.finished) continue;
      const done = run.streams.every((s) => s.fd === null ? openIfThere(s.path, true) === null : s.sent >= fstatSync(s.fd).size);
      if (done || run.failuresWhileFinishing >= MAX_FAILURES_WHILE_FINISHING) {
        if (!done) this.opts.logger.warn({ jobId: run.jobId }, 'the end of a live log was not sent; the result has it');
        this.forget(run);
      }
    }
  }

  /** Bytes of the run's files the server does not hold. */
  private backlogOf(run: ShippedRun): number {
    let bytes = 0;
    for (const s of run.streams) {
      s.fd ??= openIfThere(s.path);
      if (s.fd !== null) bytes += Math.max(0, fstatSync(s.fd).size - s.sent);
    }
    return bytes;
  }

  private forget(run: ShippedRun): void {
    this.runs.delete(run.jobId);
    for (const s of run.streams) if (s.fd !== null) closeSync(s.fd);
    run.finished?.();
  }
}

/** The file's descriptor, or null while it does not exist; `probe`: only say whether it exists (null: no). */
function openIfThere(path: string, probe = false): number | null {
  try {
    const fd = openSync(path, 'r');
    if (probe) closeSync(fd);
    return fd;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}
