/**
 * Supervises one launched sandbox: enforces the wall clock, polls tree limits, honours cancellation,
 * and stops the tree — SIGTERM to every process, a grace period, then SIGKILL of the pid namespace's
 * init, which makes the kernel kill everything in the namespace at once.
 *
 * The launcher is started by the spawner process (spawner.ts) and execs into bwrap's monitor process;
 * the monitor exits as soon as the program itself exits, and `--die-with-parent` then takes the rest of
 * the namespace with it. The spawner captures the output and relays bwrap's status; this side decides.
 */
import { performance } from 'node:perf_hooks';
import type { LimitKind } from '../../../core/limits.js';
import { InternalError } from '../../../core/errors.js';
import { signalQuietly } from './cgroups.js';
import { LAUNCHER_ENV, type LauncherCommand } from './launcher.js';
import type { ProcessTree } from './process-tree.js';
import type { LaunchedProcess, Spawner } from './spawner.js';
import type { BwrapStatus, CapturedStream } from './spawner-protocol.js';
import type { InjectedFault } from '../sandbox.js';

export type ExactProgramEnd = NonNullable<BwrapStatus['programEnd']>;

export type StopReason = LimitKind | 'cancelled';

/** The longest pause of a long run's limit watch. */
const LONG_RUN_POLL_MS = 1_000;

/** Checked every `intervalMs` while the program runs; a non-null answer stops the run at once. */
export interface LimitWatch {
  intervalMs: number;
  check(): Promise<LimitKind | null>;
}

export interface SuperviseRequest {
  spawner: Spawner;
  /** The run's first process, which execs bwrap (see launcher.ts). */
  launcher: LauncherCommand;
  /** bwrap's options, which the launcher's bwrap reads from its descriptor 3. */
  bwrapOptions: readonly string[];
  /** File the program reads as stdin; null: /dev/null. */
  stdinPath: string | null;
  outputBytes: number;
  /** Write stdout and stderr (up to `outputBytes` each) to these files as they come, not to memory. */
  outputFiles: { stdout: string; stderr: string } | null;
  timeoutMs: number;
  graceMs: number;
  signal?: AbortSignal;
  tree: ProcessTree;
  limitWatch: LimitWatch | null;
  /** A test's injected fault (sandbox.ts): `supervisor-hangs` makes {@link RunSupervisor.stop} do nothing. */
  fault?: InjectedFault;
}

export interface SupervisedRun {
  /** How the bwrap monitor (our direct child) ended. */
  monitorExit: { code: number | null; signal: NodeJS.Signals | null };
  /** The program's shell-style status as bwrap reported it; null when the program never ran or bwrap was killed first. */
  programStatus: number | null;
  /** The program's own end, from remex-exec's waiter; null where no waiter ran or it could not report. */
  programEnd: ExactProgramEnd | null;
  stopReason: StopReason | null;
  stdout: CapturedOutput;
  stderr: CapturedOutput;
  wallTimeMs: number;
}

/** The first `outputBytes` of a stream, and how many there were in all. */
export interface CapturedOutput {
  bytes(): Buffer;
  readonly totalBytes: number;
  readonly truncated: boolean;
}

/** `keptLimit`: for output written to a file, the bytes it holds are the first `keptLimit` (none come back here). */
function capturedOutput(stream: CapturedStream, keptLimit: number | null): CapturedOutput {
  const bytes = Buffer.from(stream.bytes.buffer, stream.bytes.byteOffset, stream.bytes.byteLength);
  return { bytes: () => bytes, totalBytes: stream.totalBytes, truncated: stream.totalBytes > (keptLimit ?? bytes.byteLength) };
}

/** After the monitor exits, how long the output pipes may stay open before the tree is swept. */
const STRAGGLER_SWEEP_MS = 200;
/** After that sweep, how long before the pipes are closed from our side regardless. */
const PIPE_CLOSE_DEADLINE_MS = 2_000;
/** setTimeout fires at once for longer delays; a timeout this long is "never" for a sandboxed run. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export function superviseRun(req: SuperviseRequest): Promise<SupervisedRun> {
  return new RunSupervisor(req).run();
}

class RunSupervisor {
  private process: LaunchedProcess | undefined;
  /** The bwrap monitor, our launcher after its exec; known once the spawner has started it. */
  private monitorPid: Promise<number | null>;
  private resolveMonitorPid: (pid: number | null) => void = () => undefined;
  private initPid: number | null = null;
  private pidNamespace: number | null = null;
  private programStatus: number | null = null;
  private programEnd: ExactProgramEnd | null = null;
  private stopReason: StopReason | null = null;
  private monitorExit: SupervisedRun['monitorExit'] | null = null;
  private startedAtMs = 0;
  private wallTimeMs = 0;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly onAbort = (): void => this.stop('cancelled', true);

  constructor(private readonly req: SuperviseRequest) {
    this.monitorPid = new Promise((resolve) => (this.resolveMonitorPid = resolve));
  }

  run(): Promise<SupervisedRun> {
    return new Promise((resolve, reject) => {
      this.startedAtMs = performance.now();
      this.process = this.req.spawner.launch(
        {
          file: this.req.launcher.file,
          args: this.req.launcher.args,
          env: { ...LAUNCHER_ENV },
          stdinPath: this.req.stdinPath,
          argsData: this.req.bwrapOptions.map((o) => `${o}\0`).join(''),
          outputBytes: this.req.outputBytes,
          outputFiles: this.req.outputFiles,
        },
        {
          onSpawned: (pid) => this.resolveMonitorPid(pid),
          onStatus: (status) => this.onStatus(status),
          onExit: (code, signal) => this.onMonitorExit(code, signal),
          onClose: (stdout, stderr) => {
            this.dispose();
            resolve(this.outcome(stdout, stderr));
          },
          onLost: (error) => {
            this.dispose();
            reject(error instanceof InternalError ? error : new InternalError('sandbox: the launcher failed', { cause: error }));
          },
        },
      );
      this.arm();
    });
  }

  private arm(): void {
    this.addTimer(setTimeout(() => this.stop('wall_time', true), Math.min(this.req.timeoutMs, MAX_TIMER_MS)));
    if (this.req.signal) {
      if (this.req.signal.aborted) this.stop('cancelled', true);
      else this.req.signal.addEventListener('abort', this.onAbort, { once: true });
    }
    this.schedulePoll();
  }

  private onStatus(status: BwrapStatus): void {
    if (status.initPid !== undefined) {
      this.initPid = status.initPid;
      if (status.pidNamespace !== undefined) this.pidNamespace = status.pidNamespace;
    }
    if (status.exitCode !== undefined) this.programStatus = status.exitCode;
    if (status.programEnd !== undefined) this.programEnd = status.programEnd;
  }

  /**
   * The limit watch looks every `intervalMs` for a run's first seconds, where most runs end and a breach
   * must be seen at once; then less often as the run ages (at 5% of its age, at most once a second), so a
   * fleet of hour-long jobs does not cost a core in cgroup reads (50 runs at 50 ms: ~13% of one here).
   * The kernel enforces memory, tasks and per-process CPU itself; the watch only notices the tree's.
   */
  private schedulePoll(): void {
    const watch = this.req.limitWatch;
    if (!watch) return;
    const ageMs = performance.now() - this.startedAtMs;
    const delayMs = Math.max(watch.intervalMs, Math.min(LONG_RUN_POLL_MS, ageMs * 0.05));
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      void watch
        .check()
        .catch(() => null)
        .then((breach) => {
          if (this.monitorExit || this.stopReason) return;
          if (breach) this.stop(breach, false);
          else this.schedulePoll();
        });
    }, delayMs);
    this.addTimer(timer);
  }

  /** Stops the run for `reason`; graceful: SIGTERM everything, SIGKILL after the grace period. */
  private stop(reason: StopReason, graceful: boolean): void {
    if (this.stopReason || this.monitorExit || this.req.fault === 'supervisor-hangs') return;
    this.stopReason = reason;
    if (!graceful || this.req.graceMs <= 0) {
      void this.killTree();
      return;
    }
    void this.terminateTree();
    this.addTimer(setTimeout(() => void this.killTree(), Math.min(this.req.graceMs, MAX_TIMER_MS)));
  }

  private async terminateTree(): Promise<void> {
    // The monitor must live on to report the program's status; init ignores SIGTERM from outside anyway.
    const monitorPid = await this.monitorPid;
    const pids = await this.req.tree.list(this.pidNamespace).catch(() => []);
    if (this.monitorExit) return;
    for (const pid of pids) if (pid !== monitorPid && pid !== this.initPid) signalQuietly(pid, 'SIGTERM');
  }

  private async killTree(): Promise<void> {
    // The spawner kills init and the monitor only while the monitor lives (it alone knows for sure).
    if (!this.monitorExit) this.process?.kill();
    await this.req.tree.killAll(this.pidNamespace).catch(() => false);
  }

  private onMonitorExit(code: number | null, signal: NodeJS.Signals | null): void {
    this.monitorExit = { code, signal };
    this.wallTimeMs = performance.now() - this.startedAtMs;
    this.clearTimers();
    // Normally the pipes close now. A process that escaped the namespace kill would hold them open:
    // sweep the tree, and as a last resort close our ends.
    this.addTimer(
      setTimeout(() => {
        void this.req.tree.killAll(this.pidNamespace).catch(() => false);
        this.addTimer(setTimeout(() => this.process?.closePipes(), PIPE_CLOSE_DEADLINE_MS));
      }, STRAGGLER_SWEEP_MS),
    );
  }

  private addTimer(timer: NodeJS.Timeout): void {
    this.timers.add(timer);
  }

  private clearTimers(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }

  private dispose(): void {
    this.clearTimers();
    this.resolveMonitorPid(null);
    this.req.signal?.removeEventListener('abort', this.onAbort);
  }

  private outcome(stdout: CapturedStream, stderr: CapturedStream): SupervisedRun {
    return {
      monitorExit: this.monitorExit ?? { code: null, signal: null },
      programStatus: this.programStatus,
      programEnd: this.programEnd,
      stopReason: this.stopReason,
      stdout: capturedOutput(stdout, this.req.outputFiles ? this.req.outputBytes : null),
      stderr: capturedOutput(stderr, this.req.outputFiles ? this.req.outputBytes : null),
      wallTimeMs: this.wallTimeMs || performance.now() - this.startedAtMs,
    };
  }
}
