/**
 * The launcher: the first process of a run. It sets the run cgroup's limits, moves itself into it, sets
 * the per-process rlimits, then execs bwrap. Joining before exec is what makes the cgroup race-free: the
 * first process of the run is already inside, so everything it ever forks is too.
 *
 * Two forms do the same steps: `remex-exec launch` (native/remex-exec.c, a static binary built with
 * remex; decision 0015), or where it was not built a tiny `sh -c` script whose builtins (`echo >`,
 * `ulimit`) do it.
 */
import { ARGS_FD, STATUS_FD } from './spawner-protocol.js';
import type { CgroupWrite } from './cgroups.js';

export interface LauncherRlimits {
  fileSizeBytes: number;
  /** Raised to {@link MIN_OPEN_FILES} if lower. */
  openFiles: number;
  /** Per-process CPU seconds are rounded up from this; null leaves RLIMIT_CPU alone. */
  cpuTimeMs: number | null;
  /** RLIMIT_NPROC: counts every process of the uid host-wide, so used only without a pids cgroup. */
  processes: number | null;
}

/** What the launcher process executes. */
export interface LauncherCommand {
  file: string;
  args: string[];
}

/** dash's `ulimit -f` counts 512-byte blocks; both forms set the same rounded limit. */
const FILE_SIZE_BLOCK_BYTES = 512;
/** The launcher and bwrap themselves need a few descriptors; below this they cannot start the program. */
export const MIN_OPEN_FILES = 16;

/** Exit status of the launcher when it could not set the run up (bwrap then never started). */
export const LAUNCHER_FAILED_STATUS = 125;

/** The fixed, minimal environment of the launcher and bwrap; the program's own comes later. */
export const LAUNCHER_ENV: Readonly<Record<string, string>> = Object.freeze({ PATH: '/usr/sbin:/usr/bin:/sbin:/bin' });

type Resource = 'core' | 'nofile' | 'fsize' | 'cpu' | 'nproc';

interface Rlimit {
  resource: Resource;
  soft: number;
  hard: number;
}

/** The rlimits of a run, in the order they are set. */
function rlimitsOf(limits: LauncherRlimits): Rlimit[] {
  const both = (resource: Resource, value: number): Rlimit => ({ resource, soft: value, hard: value });
  const result = [
    both('core', 0),
    both('nofile', Math.max(MIN_OPEN_FILES, limits.openFiles)),
    both('fsize', Math.max(1, Math.ceil(limits.fileSizeBytes / FILE_SIZE_BLOCK_BYTES)) * FILE_SIZE_BLOCK_BYTES),
  ];
  if (limits.cpuTimeMs !== null) {
    const seconds = Math.max(1, Math.ceil(limits.cpuTimeMs / 1000));
    // Soft limit: SIGXCPU, which the result reports as cpu_time; the hard limit a second later kills.
    result.push({ resource: 'cpu', soft: seconds, hard: seconds + 1 });
  }
  if (limits.processes !== null) result.push(both('nproc', limits.processes));
  return result;
}

export interface Launchers {
  execHelperPath: string | null;
  shellPath: string;
}

/**
 * The launcher of one run: `remex-exec launch` when `execHelperPath` is given, else `sh -c`. `command`
 * is what bwrap runs once its options (read from {@link ARGS_FD}) have built the sandbox; when it is
 * remex-exec itself, remex-exec opens its own file at `execHelperFd` for it.
 */
export function launcherCommand(
  cgroupSetup: readonly CgroupWrite[],
  limits: LauncherRlimits,
  bwrap: { path: string; command: readonly string[]; execHelperFd: number | null; programStatusFd?: number | null },
  launchers: Launchers,
): LauncherCommand {
  const rlimits = rlimitsOf(limits);
  if (launchers.execHelperPath !== null) {
    const args = ['launch'];
    for (const w of cgroupSetup) args.push('-w', w.file, w.value);
    for (const r of rlimits) args.push('-r', r.resource, String(r.soft), String(r.hard));
    if (bwrap.execHelperFd !== null) args.push('-x', String(bwrap.execHelperFd));
    if (bwrap.programStatusFd != null) args.push('-d', String(STATUS_FD), String(bwrap.programStatusFd));
    return { file: launchers.execHelperPath, args: [...args, '--', bwrap.path, '--args', String(ARGS_FD), '--', ...bwrap.command] };
  }
  if (bwrap.execHelperFd !== null || bwrap.programStatusFd != null) throw new Error('launcherCommand: the command needs remex-exec, which the shell launcher cannot open');
  return { file: launchers.shellPath, args: ['-c', launcherScript(cgroupSetup, rlimits, bwrap.path), 'remex-sandbox', ...bwrap.command] };
}

const ULIMIT_FLAGS: Readonly<Record<Resource, string>> = { core: 'c', nofile: 'n', fsize: 'f', cpu: 't', nproc: 'p' };

/** The shell form; the shell is single-threaded, so moving itself into the cgroup moves the process. */
function launcherScript(cgroupSetup: readonly CgroupWrite[], rlimits: readonly Rlimit[], bwrapPath: string): string {
  const steps = cgroupSetup.map((w) => `echo ${shellQuote(w.value)} > ${shellQuote(w.file)}`);
  for (const { resource, soft, hard } of rlimits) {
    const flag = ULIMIT_FLAGS[resource];
    const amount = (value: number): number => (resource === 'fsize' ? value / FILE_SIZE_BLOCK_BYTES : value);
    // Without -H or -S, ulimit sets both limits.
    steps.push(`ulimit -${flag} ${amount(hard)}`);
    if (soft !== hard) steps.push(`ulimit -S -${flag} ${amount(soft)}`);
  }
  return `${steps.join(' && ')} || exit ${LAUNCHER_FAILED_STATUS}\nexec ${shellQuote(bwrapPath)} --args ${ARGS_FD} -- "$@"\n`;
}

export function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}
