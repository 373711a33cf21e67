/**
 * The launcher: a tiny `sh -c` script that sets the run cgroup's limits, moves itself into it, sets
 * the per-process rlimits, then execs bwrap. Joining before exec is what makes the cgroup race-free:
 * the first process of the run is already inside, so everything it ever forks is too. Shell builtins
 * (`echo >`, `ulimit`) do all of it without another exec.
 */
import { ARGS_FD } from './spawner-protocol.js';
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

/** dash's `ulimit -f` counts 512-byte blocks. */
const FILE_SIZE_BLOCK_BYTES = 512;
/** The launcher and bwrap themselves need a few descriptors; below this they cannot start the program. */
export const MIN_OPEN_FILES = 16;

/** Exit status of the launcher when it could not set the run up (bwrap then never started). */
export const LAUNCHER_FAILED_STATUS = 125;

/** The fixed, minimal environment of the launcher and bwrap; the program's own comes later. */
export const LAUNCHER_ENV: Readonly<Record<string, string>> = Object.freeze({ PATH: '/usr/sbin:/usr/bin:/sbin:/bin' });

/** `cgroupSetup`: see `RunCgroup.setup`; the shell is single-threaded, so moving itself moves the process. */
export function launcherScript(cgroupSetup: readonly CgroupWrite[], rlimits: LauncherRlimits, bwrapPath: string): string {
  const steps = cgroupSetup.map((w) => `echo ${shellQuote(w.value)} > ${shellQuote(w.file)}`);
  steps.push('ulimit -c 0', `ulimit -n ${Math.max(MIN_OPEN_FILES, rlimits.openFiles)}`, `ulimit -f ${Math.max(1, Math.ceil(rlimits.fileSizeBytes / FILE_SIZE_BLOCK_BYTES))}`);
  if (rlimits.cpuTimeMs !== null) {
    const seconds = Math.max(1, Math.ceil(rlimits.cpuTimeMs / 1000));
    // Soft limit: SIGXCPU, which the result reports as cpu_time; the hard limit a second later kills.
    steps.push(`ulimit -t ${seconds + 1}`, `ulimit -S -t ${seconds}`);
  }
  if (rlimits.processes !== null) steps.push(`ulimit -p ${rlimits.processes}`);
  return `${steps.join(' && ')} || exit ${LAUNCHER_FAILED_STATUS}\nexec ${shellQuote(bwrapPath)} --args ${ARGS_FD} -- "$@"\n`;
}

export function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}
