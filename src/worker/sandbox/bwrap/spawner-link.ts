/**
 * The two kinds of spawner process behind `Spawner` (spawner.ts), each as a {@link SpawnerLink}:
 *
 * - native: `remex-exec spawner` (native/spawner.c), a small C process talking length-prefixed binary
 *   frames over its stdin and stdout. Forking it copies almost nothing, where forking a Node process
 *   copies the page tables of its ~50 MB (decision 0015). Used wherever remex-exec was built.
 * - node: spawner-process.ts, over Node's IPC channel; the fallback where it was not.
 *
 * Both take the same requests and give the same events (spawner-protocol.ts); the frame layout below is
 * spawner.c's, field for field.
 */
import { type ChildProcess, type StdioOptions, fork, spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { BwrapStatusReader, type FromSpawner, type ToSpawner } from './spawner-protocol.js';

/** A running spawner process. */
export interface SpawnerLink {
  readonly child: ChildProcess;
  send(message: ToSpawner, done: (err: Error | null) => void): void;
  onMessage(listener: (message: FromSpawner) => void): void;
  /** While runs are in flight the link keeps the server's event loop alive; idle, it does not. */
  ref(): void;
  unref(): void;
  /** No more requests: the spawner exits, killing any sandbox it still has. */
  end(): void;
}

export interface SpawnerLinkOptions {
  /** Descriptors the server inherited without close-on-exec: /dev/null in the spawner from its first instruction. */
  maskFds: readonly number[];
  devNullFd: number;
  /** remex-exec, for the native spawner; null: the Node spawner. */
  execHelperPath: string | null;
}

const NODE_SPAWNER_SCRIPT = fileURLToPath(new URL('./spawner-process.js', import.meta.url));
/** Its own environment: nothing of the server's (NODE_OPTIONS …) reaches the process that spawns sandboxes. */
const SPAWNER_ENV: Readonly<Record<string, string>> = Object.freeze({ PATH: '/usr/sbin:/usr/bin:/sbin:/bin' });
/**
 * A small young generation keeps the Node spawner's memory (and so its own fork cost) down: it holds a
 * few small objects per run. Output buffers live outside the V8 heap, so no old-space cap is set.
 */
const NODE_SPAWNER_EXEC_ARGV = ['--max-semi-space-size=1'];

export function startSpawnerProcess(opts: SpawnerLinkOptions): SpawnerLink {
  const masked = (stdio: Array<'ignore' | 'inherit' | 'pipe' | 'ipc' | number>): StdioOptions => {
    for (const fd of opts.maskFds) {
      if (fd <= 2) continue;
      while (stdio.length < fd) stdio.push('ignore');
      stdio[fd] = opts.devNullFd;
    }
    return stdio;
  };
  if (opts.execHelperPath !== null) {
    const child = spawn(opts.execHelperPath, ['spawner'], { stdio: masked(['pipe', 'pipe', 'inherit']), env: SPAWNER_ENV });
    return new NativeLink(child);
  }
  const stdio = masked(['ignore', 'ignore', 'inherit']) as Array<'ignore' | 'inherit' | 'ipc' | number>;
  stdio.push('ipc');
  return new NodeLink(fork(NODE_SPAWNER_SCRIPT, [], { stdio, env: SPAWNER_ENV, execArgv: NODE_SPAWNER_EXEC_ARGV, serialization: 'advanced' }));
}

class NodeLink implements SpawnerLink {
  constructor(readonly child: ChildProcess) {}

  send(message: ToSpawner, done: (err: Error | null) => void): void {
    this.child.send(message, done);
  }

  onMessage(listener: (message: FromSpawner) => void): void {
    this.child.on('message', listener);
  }

  ref(): void {
    this.child.channel?.ref();
  }

  unref(): void {
    this.child.channel?.unref();
  }

  end(): void {
    // Disconnecting ends the spawner (see spawner-process.ts).
    if (this.child.connected) this.child.disconnect();
  }
}

const enum Request {
  Spawn = 1,
  Kill = 2,
  ClosePipes = 3,
}

const enum Event {
  Ready = 1,
  Spawned = 2,
  SpawnFailed = 3,
  Status = 4,
  Exit = 5,
  Close = 6,
}

const SIGNAL_NAMES = new Map<number, NodeJS.Signals>(Object.entries(osConstants.signals).map(([name, number]) => [number, name as NodeJS.Signals]));
/** spawner.c keeps at most this much of a stream (a close frame with two must fit its u32 length). */
const OUTPUT_BYTES_MAX = 2 ** 30;

class NativeLink implements SpawnerLink {
  private readonly stdin: Writable & { ref?(): void; unref?(): void };
  private readonly stdout: Readable & { ref?(): void; unref?(): void };
  /** Bytes received and not yet decoded, joined only once a whole frame is there (a close frame can be MBs). */
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** The length of the frame being received, once its 4-byte prefix is in. */
  private awaiting: number | null = null;
  /** Set when a frame could not be decoded: whatever follows is ignored until the process is gone. */
  private broken = false;
  /** bwrap's status stream of each run, split into documents here (the native spawner relays raw bytes). */
  private readonly statusReaders = new Map<number, BwrapStatusReader>();
  private listener: ((message: FromSpawner) => void) | null = null;

  constructor(readonly child: ChildProcess) {
    this.stdin = child.stdin as Writable;
    this.stdout = child.stdout as Readable;
    // A write after the spawner died fails the request that made it (through `done`); nothing else to do here.
    this.stdin.on('error', () => undefined);
    this.stdout.on('data', (chunk: Buffer) => this.receive(chunk));
  }

  send(message: ToSpawner, done: (err: Error | null) => void): void {
    this.stdin.write(encodeRequest(message), (err) => done(err ?? null));
  }

  onMessage(listener: (message: FromSpawner) => void): void {
    this.listener = listener;
  }

  ref(): void {
    this.stdin.ref?.();
    this.stdout.ref?.();
  }

  unref(): void {
    this.stdin.unref?.();
    this.stdout.unref?.();
  }

  end(): void {
    this.stdin.end();
  }

  private receive(chunk: Buffer): void {
    if (this.broken) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    if (this.buffered < 4) return;
    this.awaiting ??= (this.chunks.length === 1 || (this.chunks[0]?.length ?? 0) >= 4 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks)).readUInt32LE(0);
    if (this.buffered < 4 + this.awaiting) return;
    const data = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks, this.buffered);
    let offset = 0;
    while (data.length - offset >= 4) {
      const length = data.readUInt32LE(offset);
      if (data.length - offset - 4 < length) break;
      const frame = data.subarray(offset + 4, offset + 4 + length);
      offset += 4 + length;
      let messages: FromSpawner[];
      try {
        messages = this.decode(frame);
      } catch {
        // Out of step with spawner.c: nothing further can be trusted. Its exit fails the runs it had.
        this.broken = true;
        this.chunks = [];
        this.buffered = 0;
        this.child.kill('SIGKILL');
        return;
      }
      for (const message of messages) this.listener?.(message);
    }
    const rest = data.subarray(offset);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    this.awaiting = rest.length >= 4 ? rest.readUInt32LE(0) : null;
  }

  private decode(frame: Buffer): FromSpawner[] {
    const r = new FrameReader(frame);
    const kind = r.u8();
    const id = r.u32();
    switch (kind) {
      case Event.Ready:
        return [{ ev: 'ready' }];
      case Event.Spawned:
        this.statusReaders.set(id, new BwrapStatusReader());
        return [{ ev: 'spawned', id, pid: r.u32() }];
      case Event.SpawnFailed:
        return [{ ev: 'spawn-failed', id, message: r.str().toString('utf8') }];
      case Event.Status:
        return (this.statusReaders.get(id)?.push(r.rest().toString('utf8')) ?? []).map((status) => ({ ev: 'status', id, status }));
      case Event.Exit: {
        const code = r.i32();
        const signal = r.u32();
        return [{ ev: 'exit', id, code: code < 0 ? null : code, signal: signal === 0 ? null : (SIGNAL_NAMES.get(signal) ?? 'SIGKILL') }];
      }
      case Event.Close: {
        this.statusReaders.delete(id);
        const stdoutTotal = r.u64();
        const stdout = r.str();
        const stderrTotal = r.u64();
        const stderr = r.str();
        return [{ ev: 'close', id, stdout: { bytes: stdout, totalBytes: stdoutTotal }, stderr: { bytes: stderr, totalBytes: stderrTotal } }];
      }
      default:
        throw new Error(`native spawner: unknown event ${kind}`);
    }
  }
}

/** One request as spawner.c reads it. */
export function encodeRequest(message: ToSpawner): Buffer {
  const parts: Buffer[] = [];
  const u32 = (value: number): void => {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32LE(value);
    parts.push(b);
  };
  const str = (text: string): void => {
    const bytes = Buffer.from(text, 'utf8');
    u32(bytes.length);
    parts.push(bytes);
  };
  const list = (items: readonly string[]): void => {
    u32(items.length);
    for (const item of items) str(item);
  };
  u32(0); // the frame's length, set below
  parts.push(Buffer.from([message.op === 'spawn' ? Request.Spawn : message.op === 'kill' ? Request.Kill : Request.ClosePipes]));
  u32(message.id);
  if (message.op === 'spawn') {
    u32(Math.min(message.outputBytes, OUTPUT_BYTES_MAX));
    str(message.stdinPath ?? '');
    str(message.outputFiles?.stdout ?? '');
    str(message.outputFiles?.stderr ?? '');
    str(message.file);
    list([message.file, ...message.args]); // argv, argv[0] included
    list(Object.entries(message.env).map(([name, value]) => `${name}=${value}`));
    str(message.argsData);
  }
  const frame = Buffer.concat(parts);
  frame.writeUInt32LE(frame.length - 4, 0);
  return frame;
}

class FrameReader {
  private offset = 0;

  constructor(private readonly frame: Buffer) {}

  u8(): number {
    return this.frame.readUInt8(this.advance(1));
  }

  u32(): number {
    return this.frame.readUInt32LE(this.advance(4));
  }

  i32(): number {
    return this.frame.readInt32LE(this.advance(4));
  }

  u64(): number {
    return Number(this.frame.readBigUInt64LE(this.advance(8)));
  }

  str(): Buffer {
    const length = this.u32();
    const start = this.advance(length);
    // A copy: the frame's buffer is the stream's and is reused.
    return Buffer.from(this.frame.subarray(start, start + length));
  }

  rest(): Buffer {
    return this.frame.subarray(this.advance(this.frame.length - this.offset));
  }

  private advance(bytes: number): number {
    if (this.offset + bytes > this.frame.length) throw new Error('native spawner: truncated event');
    const at = this.offset;
    this.offset += bytes;
    return at;
  }
}
