/**
 * The cgroup port the sandbox uses for whole-tree limits and accounting: one cgroup per run, joined by
 * the launcher before it starts bubblewrap, so every process of the run is inside from its first
 * instruction. Adapters: `cgroup-v1.ts` (one directory per controller hierarchy) and `cgroup-v2.ts`.
 */
import { closeSync, mkdirSync, openSync, readFileSync, readSync, rmdirSync } from 'node:fs';

/** Which whole-tree limits an adapter enforces. */
export interface CgroupEnforcement {
  memory: boolean;
  processes: boolean;
  /** CPU time of the tree is measured (the sandbox enforces the limit by polling it). */
  cpuTime: boolean;
}

export interface CgroupLimits {
  memoryBytes: number;
  /** Tasks (processes and threads) alive at once, the sandbox's own included. */
  tasks: number;
}

/** Counters of one run's cgroup; null where the host does not provide them. */
export interface CgroupSample {
  cpuTimeNs: number | null;
  peakMemoryBytes: number | null;
  /** Processes the kernel's OOM killer killed in this cgroup. */
  oomKills: number;
  /** Forks or clones refused because the task limit was reached. */
  taskLimitHits: number;
}

/** One write to a cgroup file. */
export interface CgroupWrite {
  file: string;
  value: string;
}

export interface RunCgroup {
  /**
   * Writes the launcher performs, in order, before it starts bubblewrap: the limits, then moving
   * itself in (a single-threaded process writing `0`). Done by the launcher's shell builtins, they
   * cost no round trips through Node's thread pool.
   */
  readonly setup: readonly CgroupWrite[];
  sample(): Promise<CgroupSample>;
  /** Pids of every process in the cgroup. */
  pids(): Promise<number[]>;
  /** SIGKILLs every process in the cgroup until it is empty (or `deadlineMs` passes). Returns true when empty. */
  killAll(deadlineMs?: number): Promise<boolean>;
  /** Removes the cgroup; it must be empty. Idempotent. */
  remove(): Promise<void>;
}

export interface CgroupDriver {
  readonly version: 1 | 2;
  readonly enforces: CgroupEnforcement;
  /** Human-readable: hierarchies and parent cgroup, for capability notes. */
  readonly description: string;
  /** Creates the run's cgroup `name`; its limits are among the returned {@link RunCgroup.setup}. Throws if `name` exists. */
  create(name: string, limits: CgroupLimits): Promise<RunCgroup>;
}

export const DEFAULT_KILL_DEADLINE_MS = 5_000;
const KILL_RETRY_MS = 2;
const RMDIR_RETRIES = 200;

/**
 * Reads a cgroup file's text, or null when the file does not exist on this kernel.
 *
 * Synchronously, on purpose: the kernel generates a cgroup file in memory and a read never waits for a
 * disk, so it takes microseconds, whereas an asynchronous read is four thread-pool round trips (open,
 * stat, read, close), each waking a thread. A run reads ten or so of these files (limit polls, the
 * final counters), and those round trips were a visible share of the worker's CPU per run.
 */
export async function readOptional(path: string): Promise<string | null> {
  return readOptionalSync(path);
}

/** Room for any counter file a sample reads (a few lines each); a longer one is read whole instead. */
const COUNTER_READ_BYTES = 16 * 1024;
const counterBuffer = Buffer.allocUnsafe(COUNTER_READ_BYTES);

/**
 * The counter files one run's cgroup is sampled from, each opened at its first read and kept open until
 * {@link close}: a sample is then one pread per file, where a whole-file read is an open, fstat, read and
 * close with a path walk through the cgroup filesystem each time — ~4× the CPU, measured here, and a busy
 * worker samples a few hundred times a second on its event loop (limit polls, each run's final counters).
 * The kernel regenerates a cgroup file at offset 0 on every read, so a pread there sees current values.
 */
export class CgroupCounterFiles {
  /** Open descriptors by path; null for a file this kernel does not have. */
  private readonly fds = new Map<string, number | null>();
  private closed = false;

  /** The file's text, or null when it does not exist on this kernel. */
  read(path: string): string | null {
    if (this.closed) return readOptionalSync(path);
    let fd = this.fds.get(path);
    if (fd === undefined) {
      try {
        fd = openSync(path, 'r');
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
        fd = null;
      }
      this.fds.set(path, fd);
    }
    if (fd === null) return null;
    const n = readSync(fd, counterBuffer, 0, COUNTER_READ_BYTES, 0);
    return n < COUNTER_READ_BYTES ? counterBuffer.toString('utf8', 0, n) : readOptionalSync(path);
  }

  /** The integer a single-value file holds, or null when absent or not a number. */
  readNumber(path: string): number | null {
    return parseNumber(this.read(path));
  }

  /** Closes every descriptor (before the cgroup is removed); later reads open and close the file each time. */
  close(): void {
    this.closed = true;
    for (const fd of this.fds.values()) if (fd !== null) closeSync(fd);
    this.fds.clear();
  }
}

function readOptionalSync(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return null;
    throw err;
  }
}

function parseNumber(text: string | null): number | null {
  if (text === null) return null;
  const value = Number(text.trim());
  return Number.isFinite(value) ? value : null;
}

/** The integer a single-value cgroup file holds, or null when absent or not a number. */
export async function readNumber(path: string): Promise<number | null> {
  return parseNumber(readOptionalSync(path));
}

/** A `key value` line's value from a flat-keyed cgroup file (`memory.events`, `pids.events`, `cpu.stat`). */
export function keyedValue(text: string | null, key: string): number | null {
  if (text === null) return null;
  for (const line of text.split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k === key && v !== undefined) {
      const value = Number(v);
      return Number.isFinite(value) ? value : null;
    }
  }
  return null;
}

/** Pids listed in a `cgroup.procs` file; an absent file (removed cgroup) lists none. */
export async function readPids(procsFile: string): Promise<number[]> {
  const text = await readOptional(procsFile);
  if (!text) return [];
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map(Number);
}

/** Repeats SIGKILL over the listed pids until the list is empty: a forking tree may refill it briefly. */
export async function killUntilEmpty(listPids: () => Promise<number[]>, deadlineMs = DEFAULT_KILL_DEADLINE_MS): Promise<boolean> {
  const giveUpAt = Date.now() + deadlineMs;
  for (;;) {
    const pids = await listPids();
    if (pids.length === 0) return true;
    if (Date.now() > giveUpAt) return false;
    for (const pid of pids) signalQuietly(pid, 'SIGKILL');
    await delay(KILL_RETRY_MS);
  }
}

/** rmdir that waits out EBUSY: an exiting task leaves its cgroup a moment after it stops running. */
export async function removeCgroupDir(dir: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      // Synchronously, as the reads above: the kernel removes a cgroup in tens of microseconds, less than the
      // thread-pool round trip would cost; only the wait between retries yields.
      rmdirSync(dir);
      return;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return;
      if (!isErrno(err, 'EBUSY') || attempt >= RMDIR_RETRIES) throw err;
      await delay(KILL_RETRY_MS);
    }
  }
}

/** Makes a cgroup directory, synchronously for the same reason as {@link removeCgroupDir}. */
export function makeCgroupDir(dir: string): void {
  mkdirSync(dir);
}

export function signalQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone: exactly what we wanted.
  }
}

export function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as NodeJS.ErrnoException).code === code;
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
