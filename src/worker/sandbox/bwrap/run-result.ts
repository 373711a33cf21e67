/**
 * Turns what was observed during a run (bwrap's status, our stop reason, the cgroup's counters) into
 * the port's {@link SandboxResult}: how the program ended and which limit, if any, ended it.
 */
import type { LimitKind, ResourceLimits } from '../../../core/limits.js';
import type { CgroupSample } from './cgroups.js';
import { type ProgramEnd, decodeShellStatus, signalName } from './exit-status.js';
import type { SupervisedRun } from './run-supervisor.js';
import type { SandboxResult } from '../sandbox.js';

const NS_PER_MS = 1e6;
const BYTES_PER_KB = 1024;

/**
 * How the program ended, or null when the sandbox itself never started it: bwrap reported no exit
 * status, exited on its own, and was not stopped by us. Exact where remex-exec's waiter reported it;
 * otherwise decoded from bwrap's shell-style status, where an exit with 129…192 reads as a signal.
 */
export function programEnd(run: SupervisedRun): ProgramEnd | null {
  // The waiter saw the program's wait status itself: an exit with 130 stays an exit, SIGINT a signal.
  if (run.programEnd !== null) {
    const { exitCode, signo } = run.programEnd;
    return signo !== null ? { exitCode: null, signal: signalName(signo) } : { exitCode, signal: null };
  }
  if (run.programStatus !== null) return decodeShellStatus(run.programStatus);
  if (run.monitorExit.signal) return { exitCode: null, signal: run.monitorExit.signal };
  if (run.stopReason) return { exitCode: null, signal: 'SIGKILL' };
  return null;
}

/** The limit that ended the run: one we enforced ourselves, else what the kernel's counters show. */
export function limitExceeded(run: SupervisedRun, end: ProgramEnd, usage: CgroupSample | null, limits: ResourceLimits): LimitKind | null {
  if (run.stopReason === 'cancelled') return null;
  if (run.stopReason) return run.stopReason;
  if (usage && usage.oomKills > 0) return 'memory';
  // Kernels before 4.13 have no OOM-kill counter: a SIGKILL we did not send, at the memory ceiling, is one.
  if (end.signal === 'SIGKILL' && usage?.peakMemoryBytes != null && usage.peakMemoryBytes >= limits.memoryBytes) return 'memory';
  if (usage && usage.taskLimitHits > 0) return 'processes';
  if (end.signal === 'SIGXCPU') return 'cpu_time';
  if (end.signal === 'SIGXFSZ') return 'file_size';
  // RLIMIT_CPU's hard limit is a plain SIGKILL; the tree's CPU time tells it apart.
  if (end.signal === 'SIGKILL' && usage?.cpuTimeNs != null && usage.cpuTimeNs >= limits.cpuTimeMs * NS_PER_MS) return 'cpu_time';
  return null;
}

export function buildResult(run: SupervisedRun, end: ProgramEnd, usage: CgroupSample | null, limits: ResourceLimits): SandboxResult {
  return {
    exitCode: end.exitCode,
    signal: end.signal,
    timedOut: run.stopReason === 'wall_time',
    cancelled: run.stopReason === 'cancelled',
    limitExceeded: limitExceeded(run, end, usage, limits),
    stdout: run.stdout.bytes(),
    stderr: run.stderr.bytes(),
    stdoutTotalBytes: run.stdout.totalBytes,
    stderrTotalBytes: run.stderr.totalBytes,
    stdoutTruncated: run.stdout.truncated,
    stderrTruncated: run.stderr.truncated,
    wallTimeMs: Math.round(run.wallTimeMs),
    cpuTimeMs: usage?.cpuTimeNs != null ? Math.round(usage.cpuTimeNs / NS_PER_MS) : 0,
    maxRssKb: usage?.peakMemoryBytes != null ? Math.round(usage.peakMemoryBytes / BYTES_PER_KB) : 0,
  };
}

/** The result of a run cancelled before anything started. */
export function cancelledBeforeStart(): SandboxResult {
  return {
    exitCode: null,
    signal: null,
    timedOut: false,
    cancelled: true,
    limitExceeded: null,
    stdout: Buffer.alloc(0),
    stderr: Buffer.alloc(0),
    stdoutTotalBytes: 0,
    stderrTotalBytes: 0,
    stdoutTruncated: false,
    stderrTruncated: false,
    wallTimeMs: 0,
    cpuTimeMs: 0,
    maxRssKb: 0,
  };
}
