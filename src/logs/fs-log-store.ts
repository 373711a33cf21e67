/**
 * LogStore on a filesystem: `<dir>/<digest of the job id>/<attempt>.<stream>`, appended to with `write`.
 * A write is in the kernel once the call returns, so a controller that crashes or restarts keeps every
 * chunk it acknowledged (a machine crash may lose the last ones unsynced; the worker sends them again, as
 * it sends anything past the stored end). Appends to one log run one at a time, in this process.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, rm, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { LogKey, LogStore } from './log-store.js';
import { SerialByKey } from './serial-by-key.js';

/** Open append handles kept: about one per live log stream, closed least recently used first. */
const MAX_OPEN_HANDLES = 256;

export class FsLogStore implements LogStore {
  /** Appends to one log never interleave. */
  private readonly appends = new SerialByKey();
  private readonly handles = new Map<string, { handle: FileHandle; size: number }>();

  constructor(private readonly dir: string) {}

  append(key: LogKey, offset: number, data: Uint8Array): Promise<number> {
    const path = this.pathOf(key);
    return this.appends.run(path, () => this.appendNow(path, offset, data));
  }

  private async appendNow(path: string, offset: number, data: Uint8Array): Promise<number> {
    const open = await this.handleOf(path);
    const end = open.size;
    if (offset > end || offset + data.byteLength <= end) return end;
    const fresh = data.subarray(end - offset);
    let written = 0;
    try {
      while (written < fresh.byteLength) written += (await open.handle.write(fresh, written, fresh.byteLength - written)).bytesWritten;
    } finally {
      open.size += written;
    }
    return open.size;
  }

  private async handleOf(path: string): Promise<{ handle: FileHandle; size: number }> {
    const known = this.handles.get(path);
    if (known) {
      // Most recently used last.
      this.handles.delete(path);
      this.handles.set(path, known);
      return known;
    }
    await mkdir(join(path, '..'), { recursive: true });
    const handle = await open(path, 'a');
    const entry = { handle, size: (await handle.stat()).size };
    this.handles.set(path, entry);
    while (this.handles.size > MAX_OPEN_HANDLES) {
      const [oldest, value] = this.handles.entries().next().value as [string, { handle: FileHandle }];
      this.handles.delete(oldest);
      void value.handle.close().catch(() => undefined);
    }
    return entry;
  }

  async read(key: LogKey, offset: number, maxBytes: number): Promise<Buffer> {
    let handle: FileHandle;
    try {
      handle = await open(this.pathOf(key), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return Buffer.alloc(0);
      throw err;
    }
    try {
      const buffer = Buffer.allocUnsafe(maxBytes);
      const { bytesRead } = await handle.read(buffer, 0, maxBytes, offset);
      return buffer.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  }

  async size(key: LogKey): Promise<number> {
    const path = this.pathOf(key);
    const known = this.handles.get(path);
    if (known) return known.size;
    return stat(path).then(
      (s) => s.size,
      () => 0,
    );
  }

  async remove(jobId: string): Promise<void> {
    const jobDir = this.jobDirOf(jobId);
    for (const [path, { handle }] of this.handles) {
      if (!path.startsWith(`${jobDir}/`)) continue;
      this.handles.delete(path);
      await handle.close().catch(() => undefined);
    }
    await rm(jobDir, { recursive: true, force: true });
  }

  async close(): Promise<void> {
    await this.appends.idle();
    const handles = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(handles.map(({ handle }) => handle.close().catch(() => undefined)));
  }

  /** Job ids are the caller's (a REAPI operation name may hold `/`): the directory is named by their digest. */
  private jobDirOf(jobId: string): string {
    return join(this.dir, createHash('sha256').update(jobId).digest('hex').slice(0, 40));
  }

  private pathOf(key: LogKey): string {
    return join(this.jobDirOf(key.jobId), `${key.attempt}.${key.stream}`);
  }
}
