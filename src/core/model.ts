/**
 * The execution model, shaped after the Remote Execution API v2 so every front door (HTTP JSON, REAPI
 * gRPC) builds the same thing: a Command run over an input tree of Directory blobs in the CAS, keyed for
 * caching and merging by an action digest the front door computes.
 */
import type { Digest } from './digest.js';
import type { JobFailureCode } from './errors.js';
import type { LimitKind, ResourceLimits } from './limits.js';

export interface FileNode {
  name: string;
  digest: Digest;
  isExecutable: boolean;
}

export interface DirectoryNode {
  name: string;
  digest: Digest;
}

export interface SymlinkNode {
  name: string;
  target: string;
}

/** One level of an input tree. Names are single path segments, sorted, unique across the three lists. */
export interface Directory {
  files: FileNode[];
  directories: DirectoryNode[];
  symlinks: SymlinkNode[];
}

export interface EnvironmentVariable {
  name: string;
  value: string;
}

export interface Command {
  /** argv; arguments[0] is the program, a path relative to the input root or an absolute path. */
  arguments: string[];
  environmentVariables: EnvironmentVariable[];
  /** Files and directories to collect after the run, relative to the working directory. */
  outputPaths: string[];
  /** Relative to the input root; '' is the root itself. */
  workingDirectory: string;
}

/**
 * Everything a worker needs to run one action. Front doors build it; the scheduler stores it and
 * hands it to a worker unchanged.
 */
export interface ExecutionSpec {
  /** Canonical platform triple, e.g. `aarch64-linux-cpu`. */
  platform: string;
  command: Command;
  inputRootDigest: Digest;
  /** Bytes fed to the program's standard input; none means /dev/null. */
  stdinDigest: Digest | null;
  /** Execution time only: time spent queued never counts. */
  timeoutMs: number;
  limits: ResourceLimits;
  /** Neither look up nor store a cached result, and never merge with another in-flight run. */
  doNotCache: boolean;
  /**
   * Give the program a progress channel (`REMEX_PROGRESS`, a file in its working directory) whose lines
   * reach the server as the job's progress. Off for build actions, whose input root must hold only inputs.
   */
  progress?: boolean;
  /**
   * Give the program a results directory (`REMEX_RESULTS`, in its input root), collected as an output
   * directory whichever way the run ends (a timeout included).
   */
  results?: boolean;
  /**
   * The W3C `traceparent` of the request that submitted it (core/trace-context.ts): carried to the worker
   * and into the log lines about it. Not part of the action (never in its digest).
   */
  traceparent?: string;
  /**
   * Stream stdout and stderr to the server while the program runs (a long job's live log: `remex logs
   * --follow`, the WebSocket), each kept up to `ceilingBytes` — past it the run goes on, the rest counted and
   * the result marked truncated — and stored in the CAS instead of the worker's memory. Absent: each stream
   * is kept in memory up to `limits.outputBytes` and sent with the result.
   */
  logs?: { ceilingBytes: number };
  /**
   * How long past `timeoutMs` the run may go on before the failsafe layers take over (the worker's
   * watchdog, then the server): a run still there is `emergency_stopped`. Counts the grace period in.
   * Absent: the server's default (docs/long-jobs.md, "Failsafe layers").
   */
  failsafeMs?: number;
}

/** A long job's ceiling per stream when it names none (`remex submit`), and the most a server allows unless configured. */
export const DEFAULT_LOG_CEILING_BYTES = 256 * 1024 * 1024;
export const DEFAULT_MAX_LOG_CEILING_BYTES = 1024 * 1024 * 1024;

/** Where a results directory sits in the input root, and how it shows among the output directories. */
export const RESULTS_DIRECTORY = '.remex-results';

/** A running job's progress, as its program last reported it, with the percentages before. */
export interface JobProgress {
  percent?: number;
  message?: string;
  metrics?: Record<string, number>;
  /** When the worker read the line (epoch ms). */
  atMs: number;
  /** Earlier percentages, oldest first (bounded: {@link MAX_PROGRESS_HISTORY}). */
  history: Array<{ percent: number; atMs: number }>;
}

export const MAX_PROGRESS_HISTORY = 32;

/** Standard output or error of a run. The bytes are always in the CAS; small ones are inline too. */
export interface OutputStream {
  digest: Digest;
  /** The bytes kept, base64, when at most the inline limit; otherwise read them by digest. */
  inlineBase64: string | null;
  /** Bytes the program wrote in all, including those dropped past the limit. */
  totalBytes: number;
  truncated: boolean;
}

export interface OutputFile {
  path: string;
  digest: Digest;
  isExecutable: boolean;
}

/**
 * An output path that was a directory after the run: its whole content, stored in the CAS as one REAPI
 * `Tree` blob (the root Directory and every Directory below it). `path` is relative to the input root, as
 * OutputFile's is.
 */
export interface OutputDirectory {
  path: string;
  treeDigest: Digest;
}

/** What a worker reports for one run that the sandbox started. */
export interface RunReport {
  /** Exit status when the program exited; null when a signal ended it. */
  exitCode: number | null;
  /** Name of the signal that ended the program (`SIGKILL`), or null. */
  signal: string | null;
  timedOut: boolean;
  /** The limit that stopped the run, if one did (a timeout is `wall_time`). */
  limitExceeded: LimitKind | null;
  stdout: OutputStream;
  stderr: OutputStream;
  outputFiles: OutputFile[];
  /** Absent in reports from before remex collected output directories (stored results, older workers). */
  outputDirectories?: OutputDirectory[];
  wallTimeMs: number;
  cpuTimeMs: number;
  maxRssKb: number;
  /** True when the program ran under qemu-user instead of natively. */
  emulated: boolean;
  worker: string;
  /** The machine it ran on, and what its worker costs (absent from older workers' reports). */
  host?: HostInfo;
  /** When the run reached each of its phases (absent from older workers' reports). */
  times?: RunTimes;
}

/**
 * When a worker's run reached each phase, in epoch milliseconds by the worker's clock: the execution
 * timeline's leased-to-completed part (api/execution-view.ts) and REAPI's ExecutedActionMetadata.
 */
export interface RunTimes {
  /** The worker took the lease and began staging the inputs. */
  stagingStartedAtMs: number;
  /** Inputs, output parents and stdin are in the run directory. */
  stagedAtMs: number;
  /** The program started (the sandbox's launch is between staged and this). */
  programStartedAtMs: number;
  programEndedAtMs: number;
  /** stdout, stderr and the output files are in the CAS. */
  outputsStoredAtMs: number;
}

/** Where a run ran (seed 004's system information), and the price of its worker, if the operator set one. */
export interface HostInfo {
  cpuModel: string;
  /** CPUs the worker's process may use. */
  cores: number;
  memoryBytes: number;
  /** `Linux 6.1.0-18-amd64 x86_64`. */
  kernel: string;
  /** The worker's slots: a run's share of the machine is one of them. */
  slots: number;
  /**
   * What the worker costs per hour (the operator's unit: dollars, say): its own price, else its platform's
   * default in the server's configuration (filled in when the result is committed); null when neither is set.
   */
  pricePerHour: number | null;
}

/** price × hours × the run's share of its worker's slots; null without a price. */
export function costOf(report: Pick<RunReport, 'wallTimeMs' | 'host'>): number | null {
  const host = report.host;
  if (!host || host.pricePerHour === null || host.slots <= 0) return null;
  return (host.pricePerHour * report.wallTimeMs) / 3_600_000 / host.slots;
}

/**
 * Job states. `queued` → `running` (leased to a worker for one attempt) → one terminal state.
 * An expired lease puts a running job back to `queued` with attempt + 1, or fails it as lost.
 * `emergency_stopped`: the run outlived its max-runtime + failsafe, so a failsafe layer (the worker's
 * watchdog, or the server when its worker went silent) ended it without a result.
 */
export const JOB_STATES = ['queued', 'running', 'completed', 'timed_out', 'cancelled', 'failed', 'emergency_stopped'] as const;
export type JobState = (typeof JOB_STATES)[number];

export const TERMINAL_STATES: readonly JobState[] = ['completed', 'timed_out', 'cancelled', 'failed', 'emergency_stopped'];

/** A run's failsafe when the submitter gave none: past max-runtime, how long before the failsafe layers act. */
export const DEFAULT_FAILSAFE_MS = 60_000;

/** When a run still going is for the failsafe layers: its start + max-runtime + failsafe. */
export function failsafeDeadlineMs(spec: Pick<ExecutionSpec, 'timeoutMs' | 'failsafeMs'>, startedAtMs: number, defaultFailsafeMs = DEFAULT_FAILSAFE_MS): number {
  return startedAtMs + spec.timeoutMs + (spec.failsafeMs ?? defaultFailsafeMs);
}

export function isTerminal(state: JobState): boolean {
  return TERMINAL_STATES.includes(state);
}

/** Why remex could not run a job (state `failed`); the program's own failures are `completed` runs. */
export interface JobFailure {
  code: JobFailureCode;
  message: string;
}

/**
 * A run is cacheable only when it ended on its own: exited or died of its own signal, with no timeout,
 * no limit, no cancellation and no remex failure.
 */
export function isCacheable(report: RunReport): boolean {
  return !report.timedOut && report.limitExceeded === null;
}
