/**
 * Removes a run directory and everything in it, for the worker's cleanup after each run.
 *
 * `fs.rm({ recursive: true })` of Node 20 stats every entry and tries `rmdir` on each directory before
 * reading it (an ENOTEMPTY per directory): about twice the system calls of reading each directory once
 * and unlinking what its entries' types say. With a dozen directories in a Bazel action's input tree this
 * was ~1.2 ms of CPU per run against ~0.75 ms here (run directories on tmpfs).
 *
 * Symlinks are removed, never followed. A path that is already gone is not an error.
 */
import type { Dirent } from 'node:fs';
import { readdir, rmdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { isErrno } from '../cas/blob-support.js';

/** Entries removed at once per directory: enough to keep the thread pool busy, not to flood its queue. */
const PARALLEL_ENTRIES = 32;

export async function removeTree(path: string): Promise<void> {
  let entries: Dirent[];
  try {
    entries = await readdir(path, { withFileTypes: true });
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return;
    // Not a directory: a file or symlink where a tree was expected.
    if (isErrno(err, 'ENOTDIR')) return ignoreMissing(unlink(path));
    throw err;
  }
  for (let at = 0; at < entries.length; at += PARALLEL_ENTRIES) {
    await Promise.all(
      entries.slice(at, at + PARALLEL_ENTRIES).map((entry) => {
        const child = join(path, entry.name);
        return entry.isDirectory() ? removeTree(child) : ignoreMissing(unlink(child));
      }),
    );
  }
  await ignoreMissing(rmdir(path));
}

async function ignoreMissing(op: Promise<void>): Promise<void> {
  try {
    await op;
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
  }
}

