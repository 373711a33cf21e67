/**
 * Where the local worker pool makes its run directories. Each run creates a dozen directories and a few
 * files and removes them all again; on a disk filesystem every one is a new inode (an ext4 without a
 * journal scans its inode bitmap past the recently freed ones each time), on tmpfs it is a memory
 * allocation. Measured in the Bazel bench: see docs/decisions/0012-run-directories-on-tmpfs.md.
 *
 * The price is that inputs cannot be hard links to the blob store there (another filesystem), so they are
 * copies; and what a run writes occupies memory until the run directory is removed after its commit.
 * Hence tmpfs is used only when it is there, private to this server and roomy; otherwise the data
 * directory, as before.
 */
import { createHash } from 'node:crypto';
import { lstat, mkdir, readdir, rm, statfs } from 'node:fs/promises';
import { join, resolve } from 'node:path';

/** The shared-memory tmpfs of Linux hosts. */
export const DEFAULT_TMPFS_DIR = '/dev/shm';
/** tmpfs is used only with at least this much free (run directories hold the runs' outputs until collected). */
export const DEFAULT_MIN_TMPFS_FREE_BYTES = 2 * 1024 * 1024 * 1024;
const TMPFS_MAGIC = 0x01021994;

export interface RunRootOptions {
  dataDir: string;
  /** 'auto': tmpfs when suitable, else the data directory; 'data-dir': always the data directory. */
  mode?: 'auto' | 'data-dir';
  /** Where to look for a tmpfs (default /dev/shm). */
  tmpfsDir?: string;
  minTmpfsFreeBytes?: number;
}

export interface RunRoot {
  path: string;
  kind: 'tmpfs' | 'data-dir';
  /** Why the data directory was chosen, when it was. */
  reason?: string;
  /** Removes the directory (tmpfs only: it holds memory); call after the workers have drained. */
  dispose(): Promise<void>;
}

/**
 * A tmpfs directory private to this server (one per data directory, so a restart finds and empties its
 * predecessor's leftovers) or, failing that, `<dataDir>/runs`. Never throws for lack of a tmpfs.
 */
export async function chooseRunRoot(opts: RunRootOptions): Promise<RunRoot> {
  const onDisk = (reason: string): RunRoot => ({ path: join(opts.dataDir, 'runs'), kind: 'data-dir', reason, dispose: () => Promise.resolve() });
  if (opts.mode === 'data-dir') return onDisk('configured');
  const tmpfsDir = opts.tmpfsDir ?? DEFAULT_TMPFS_DIR;
  const minFree = opts.minTmpfsFreeBytes ?? DEFAULT_MIN_TMPFS_FREE_BYTES;
  let fs: Awaited<ReturnType<typeof statfs>>;
  try {
    fs = await statfs(tmpfsDir);
  } catch {
    return onDisk(`no ${tmpfsDir}`);
  }
  if (fs.type !== TMPFS_MAGIC) return onDisk(`${tmpfsDir} is not a tmpfs`);
  const free = fs.bavail * fs.bsize;
  if (free < minFree) return onDisk(`${tmpfsDir} has ${Math.floor(free / 2 ** 20)} MiB free, under ${Math.floor(minFree / 2 ** 20)} MiB`);

  const uid = process.getuid?.() ?? 0;
  const path = tmpfsRunRootPath(opts.dataDir, tmpfsDir);
  try {
    await mkdir(path, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return onDisk(`cannot create ${path}: ${(err as Error).message}`);
    // The directory is world-visible by name: reuse it only if it is ours and nobody else's to enter.
    const st = await lstat(path);
    if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o077) !== 0) return onDisk(`${path} exists and is not a private directory of uid ${uid}`);
    // A previous server on this data directory left it: its runs are requeued at start-up, their files are garbage.
    await Promise.all((await readdir(path)).map((name) => rm(join(path, name), { recursive: true, force: true })));
  }
  return { path, kind: 'tmpfs', dispose: () => rm(path, { recursive: true, force: true }) };
}

/** The tmpfs run directory `chooseRunRoot` picks for a data directory (when it picks tmpfs). */
export function tmpfsRunRootPath(dataDir: string, tmpfsDir: string = DEFAULT_TMPFS_DIR): string {
  const tag = createHash('sha256').update(resolve(dataDir)).digest('hex').slice(0, 16);
  return join(tmpfsDir, `remex-runs-${process.getuid?.() ?? 0}-${tag}`);
}
