/**
 * The sandbox port: run one program in isolation with limits and report what happened. Adapters:
 * `bwrap-sandbox.ts` (bubblewrap + cgroups + rlimits). A sandbox never throws for what the program
 * did (crash, timeout, limit): those are results. It throws only when it could not start the run.
 */
import type { LimitKind, ResourceLimits } from '../../core/limits.js';

export interface EmulationSpec {
  /** Host path of the qemu-user binary (`/usr/bin/qemu-aarch64-static`). */
  qemuPath: string;
  /** Host path of the target's sysroot (`/usr/aarch64-linux-gnu`), for dynamically linked programs. */
  sysroot: string | null;
}

export interface SandboxRequest {
  /**
   * Host directory holding the staged input root. It is the only writable host path the program sees,
   * mounted at {@link SANDBOX_ROOT}; it is emptied by the caller afterwards.
   */
  inputRoot: string;
  /** Working directory relative to the input root ('' for the root). */
  workingDirectory: string;
  /** argv; argv[0] relative to the working directory or absolute inside the sandbox. */
  argv: string[];
  env: Record<string, string>;
  /** Host file whose bytes are the program's stdin; null for an empty stdin. */
  stdinPath: string | null;
  /** Wall-clock limit for the run alone. */
  timeoutMs: number;
  /** After SIGTERM (timeout or cancel), how long before SIGKILL of the whole tree. */
  graceMs: number;
  limits: ResourceLimits;
  /** Run under qemu-user instead of natively. */
  emulation: EmulationSpec | null;
  /**
   * A long job's live log: stdout and stderr are written to these host files (made afresh; outside the input
   * root) as they come, each up to `limitBytes`, instead of kept in memory; the result's `stdout` and
   * `stderr` are then empty, with their totals and truncation as usual. Null or absent: kept in memory up
   * to `limits.outputBytes`.
   */
  outputFiles?: { stdoutPath: string; stderrPath: string; limitBytes: number } | null;
  /** Aborting cancels the run: SIGTERM, grace, SIGKILL; the result then has `cancelled: true`. */
  signal?: AbortSignal;
  /** A fault injected on purpose, to test the layers above (the worker's watchdog); never set in service. */
  fault?: InjectedFault;
}

/**
 * Named faults a test injects through the worker's tuning. `supervisor-hangs`: the run's supervisor never
 * stops the run — no timeout, no cancel, no kill — so it returns only if the program ends on its own.
 */
export type InjectedFault = 'supervisor-hangs';

export interface SandboxResult {
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  cancelled: boolean;
  limitExceeded: LimitKind | null;
  stdout: Buffer;
  stderr: Buffer;
  /** Bytes written to each stream in all (what was kept is capped at limits.outputBytes). */
  stdoutTotalBytes: number;
  stderrTotalBytes: number;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  wallTimeMs: number;
  cpuTimeMs: number;
  maxRssKb: number;
}

/** What isolation an adapter provides on this host, for logs and the platform listing. */
export interface SandboxCapabilities {
  kind: string;
  /** True when memory, process count and CPU are enforced on the whole tree (cgroups). */
  treeLimits: boolean;
  /**
   * True when programs run as a user that cannot write files the worker owns (and did not make
   * writable): staged inputs may then be hard links to the worker's read-only blob store.
   */
  readOnlyInputs: boolean;
  /**
   * The user the program runs as, when not the worker's own: a file the worker makes for the program to
   * write (its progress channel) must be given to it. Null when the program runs as the worker's user.
   */
  programOwner: { uid: number; gid: number } | null;
  notes: string[];
}

export interface Sandbox {
  readonly capabilities: SandboxCapabilities;
  run(req: SandboxRequest): Promise<SandboxResult>;
}

/** Where the input root appears inside the sandbox. */
export const SANDBOX_ROOT = '/work';
