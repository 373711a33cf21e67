/**
 * Supervises one launched sandbox: captures its output, enforces the wall clock, polls tree limits,
 * honours cancellation, and stops the tree — SIGTERM to every process, a grace period, then SIGKILL of
 * the pid namespace's init, which makes the kernel kill everything in the namespace at once.
 *
 * The launcher is our direct child and execs into bwrap's monitor process; the monitor exits as soon
 * as the program itself exits, and `--die-with-parent` then takes the rest of the namespace with it.
 */
import { type ChildProcess, type StdioOptions, spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import type { Readable, Writable } from 'node:stream';
import type { LimitKind } from '../../core/limits.js';
import { InternalError } from '../../core/errors.js';
import { ARGS_FD, STATUS_FD } from './bwrap-args.js';
import { signalQuietly } from './cgroups.js';
import { LAUNCHER_ENV } from './launcher.js';
import { BoundedCapture } from './output-capture.js';
import type { ProcessTree } from './process-tree.js';

export type StopReason = LimitKind | 'cancelled';

/** Checked every `intervalMs` while the program runs; a non-null answer stops the run at once. */
export interface LimitWatch {
  intervalMs: number;
  check(): Promise<LimitKind | null>;
}

export interface SuperviseRequest {
  shellPath: string;
  script: string;
  bwrapOptions: readonly string[];
  command: readonly string[];
  stdinFd: number | null;
  /** Inherited descriptors to overlay with `devNullFd` in the child, so none leaks into the sandbox. */
  maskFds: readonly number[];
  devNullFd: number;
  outputBytes: number;
  timeoutMs: number;
  graceMs: number;
  signal?: AbortSignal;
  tree: ProcessTree;
  limitWatch: LimitWatch | null;
}

export interface SupervisedRun {
  /** How the bwrap monitor (our direct child) ended. */
  monitorExit: { code: number | null; signal: NodeJS.Signals | null };
  /** The program's shell-style status as bwrap reported it; null when the program never ran or bwrap was killed first. */
  programStatus: number | null;
  stopReason: StopReason | null;
  stdout: BoundedCapture;
  stderr: BoundedCapture;
  wallTimeMs: number;
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
  private child: ChildProcess | undefined;
  private initPid: number | null = null;
  private pidNamespace: number | null = null;
  private programStatus: number | null = null;
  private stopReason: StopReason | null = null;
  private monitorExit: SupervisedRun['monitorExit'] | null = null;
  private startedAtMs = 0;
  private wallTimeMs = 0;
  private statusText = '';
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly stdout: BoundedCapture;
  private readonly stderr: BoundedCapture;
  private readonly onAbort = (): void => this.stop('cancelled', true);

  constructor(private readonly req: SuperviseRequest) {
    this.stdout = new BoundedCapture(req.outputBytes);
    this.stderr = new BoundedCapture(req.outputBytes);
  }

  run(): Promise<SupervisedRun> {
    return new Promise((resolve, reject) => {
      let child: ChildProcess;
      try {
        child = spawn(this.req.shellPath, ['-c', this.req.script, 'remex-sandbox', ...this.req.command], { stdio: this.stdio(), env: LAUNCHER_ENV });
      } catch (err) {
        reject(new InternalError('sandbox: cannot spawn the launcher', { cause: err }));
        return;
      }
      this.child = child;
      this.startedAtMs = performance.now();
      let settled = false;
      child.once('error', (err) => {
        if (settled) return;
        settled = true;
        this.dispose();
        reject(new InternalError('sandbox: the launcher failed', { cause: err }));
      });
      child.once('exit', (code, signal) => this.onMonitorExit(code, signal));
      child.once('close', () => {
        if (settled) return;
        settled = true;
        this.dispose();
        resolve(this.outcome());
      });
      this.wire(child);
      this.arm();
    });
  }

  private stdio(): StdioOptions {
    const stdio: Array<'ignore' | 'pipe' | number> = [this.req.stdinFd ?? 'ignore', 'pipe', 'pipe', 'pipe', 'pipe'];
    for (const fd of this.req.maskFds) {
      if (fd <= STATUS_FD) continue; // Replaced by our own stdio anyway.
      while (stdio.length < fd) stdio.push('ignore');
      stdio[fd] = this.req.devNullFd;
    }
    return stdio;
  }

  private wire(child: ChildProcess): void {
    this.stdout.attach(child.stdout as Readable);
    this.stderr.attach(child.stderr as Readable);
    const args = child.stdio[ARGS_FD] as Writable & Readable;
    args.on('error', () => undefined); // bwrap gone before reading its options: the exit tells why.
    args.resume();
    args.end(this.req.bwrapOptions.map((o) => `${o}\0`).join(''));
    const status = child.stdio[STATUS_FD] as Readable;
    status.setEncoding('utf8');
    status.on('data', (text: string) => this.onStatus(text));
  }

  private arm(): void {
    this.addTimer(setTimeout(() => this.stop('wall_time', true), Math.min(this.req.timeoutMs, MAX_TIMER_MS)));
    if (this.req.signal) {
      if (this.req.signal.aborted) this.stop('cancelled', true);
      else this.req.signal.addEventListener('abort', this.onAbort, { once: true });
    }
    this.schedulePoll();
  }

  /** bwrap writes one JSON document per line: `child-pid` when the sandbox exists, `exit-code` at the end. */
  private onStatus(text: string): void {
    this.statusText += text;
    for (let nl = this.statusText.indexOf('\n'); nl >= 0; nl = this.statusText.indexOf('\n')) {
      const line = this.statusText.slice(0, nl);
      this.statusText = this.statusText.slice(nl + 1);
      let doc: Record<string, unknown>;
      try {
        doc = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      if (typeof doc['child-pid'] === 'number') {
        this.initPid = doc['child-pid'];
        if (typeof doc['pid-namespace'] === 'number') this.pidNamespace = doc['pid-namespace'];
      }
      if (typeof doc['exit-code'] === 'number') this.programStatus = doc['exit-code'];
    }
  }

  private schedulePoll(): void {
    const watch = this.req.limitWatch;
    if (!watch) return;
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
    }, watch.intervalMs);
    this.addTimer(timer);
  }

  /** Stops the run for `reason`; graceful: SIGTERM everything, SIGKILL after the grace period. */
  private stop(reason: StopReason, graceful: boolean): void {
    if (this.stopReason || this.monitorExit) return;
    this.stopReason = reason;
    if (!graceful || this.req.graceMs <= 0) {
      void this.killTree();
      return;
    }
    void this.terminateTree();
    this.addTimer(setTimeout(() => void this.killTree(), Math.min(this.req.graceMs, MAX_TIMER_MS)));
  }

  private async terminateTree(): Promise<void> {
    const pids = await this.req.tree.list(this.pidNamespace).catch(() => []);
    // The monitor must live on to report the program's status; init ignores SIGTERM from outside anyway.
    for (const pid of pids) if (pid !== this.child?.pid && pid !== this.initPid) signalQuietly(pid, 'SIGTERM');
  }

  private async killTree(): Promise<void> {
    // The namespace's init dying makes the kernel SIGKILL every process in it, forking or not. The
    // monitor is reaped only by us and init only by the monitor, so neither pid can have been reused.
    if (!this.monitorExit) {
      if (this.initPid !== null) signalQuietly(this.initPid, 'SIGKILL');
      if (this.child?.pid !== undefined) signalQuietly(this.child.pid, 'SIGKILL');
    }
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
        this.addTimer(setTimeout(() => this.closePipes(), PIPE_CLOSE_DEADLINE_MS));
      }, STRAGGLER_SWEEP_MS),
    );
  }

  private closePipes(): void {
    for (const stream of this.child?.stdio ?? []) stream?.destroy();
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
    this.req.signal?.removeEventListener('abort', this.onAbort);
  }

  private outcome(): SupervisedRun {
    return {
      monitorExit: this.monitorExit ?? { code: null, signal: null },
      programStatus: this.programStatus,
      stopReason: this.stopReason,
      stdout: this.stdout,
      stderr: this.stderr,
      wallTimeMs: this.wallTimeMs || performance.now() - this.startedAtMs,
    };
  }
}
