/**
 * A worker: registers the platforms this host serves (natively or under qemu-user), leases jobs up to
 * its slot count, stages each job's inputs from the CAS into a fresh directory, runs it in the sandbox,
 * stores its outputs in the CAS and commits the result for its lease. The same loop runs inside
 * `remex serve` (linked to the scheduler directly) and as `remex worker` (linked over HTTP).
 *
 * Drain (SIGTERM): take no new jobs, finish the running ones, commit them, unregister.
 *
 * Failsafe (docs/long-jobs.md): a watchdog apart from the run's supervisor reports a run still going at
 * max-runtime + failsafe `emergency_stopped` and keeps its slot out of service until the run ends; a worker
 * with no slot left in service cannot kill its runs — it stops taking work and says so (`onUnfit`).
 */
import { mkdtempSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { availableParallelism, cpus, machine, release, totalmem, type } from 'node:os';
import { join, posix } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { BlobStore } from '../cas/blob-store.js';
import { stageTree } from '../cas/tree.js';
import { digestOf } from '../core/digest.js';
import { isRemexError } from '../core/errors.js';
import { MAX_PROGRESS_HISTORY, RESULTS_DIRECTORY } from '../core/model.js';
import type { HostInfo, JobFailure, JobProgress, OutputStream, RunReport, RunTimes } from '../core/model.js';
import { traceIdOf } from '../core/trace-context.js';
import type { Outcome } from '../store/ports.js';
import type { Completion, CompletionSettlement, Lease, WorkerLink } from '../scheduler/worker-link.js';
import type { PlatformSupport } from './emulation.js';
import { SANDBOX_ROOT } from './sandbox/sandbox.js';
import type { Sandbox, SandboxResult } from './sandbox/sandbox.js';
import { PROGRESS_ENV_VAR, ProgressChannel } from './progress/progress-channel.js';
import { collectOutputs, createOutputParents, makeResultsDirectory, RESULTS_ENV_VAR } from './outputs.js';
import { removeTree } from './remove-tree.js';
import { LogShipper } from './logs/log-shipper.js';
import { storeLogFile } from './logs/log-output.js';
import { LIVE_LOGS_FEATURE } from '../scheduler/worker-link.js';
import { workerTuning } from './config.js';
import type { WorkerTuning } from './config.js';
import type { RunPhases, WorkerObserver } from './observer.js';
import { fanOut } from '../core/observers.js';

export interface WorkerOptions extends Partial<WorkerTuning> {
  name: string;
  slots: number;
  /** Where per-run directories are made; emptied runs are removed. */
  workRoot: string;
  link: WorkerLink;
  blobs: BlobStore;
  sandbox: Sandbox;
  platforms: readonly PlatformSupport[];
  logger: Logger;
  /** Fixed id (in-process pool: `local:<host>:<n>`); otherwise the server assigns one. */
  id?: string;
  /** In-process only: subscribe to cancellations as they happen. */
  onCancel?: (workerId: string, listener: (jobId: string) => void) => void;
  /** Told of runs, results and failed calls (metrics, timelines). */
  observers?: readonly WorkerObserver[];
  /** The operator's labels and the provider's instance id, sent with the registration. */
  labels?: Record<string, string>;
  instanceId?: string;
  /**
   * Called when the server ordered a drain, with the drain under way: a `remex worker` process exits once
   * it ends, so its supervisor (systemd, the autoscaler) sees it stop.
   */
  onDrainOrdered?: (drained: Promise<void>) => void;
  /** What this worker costs per hour (the operator's unit), reported with every run for its cost. */
  pricePerHour?: number;
  /**
   * Called once no slot is left in service (every one holds a run that outlived its kill): the worker has
   * stopped taking work and is leaving the server. `remex worker` then exits non-zero, so its supervisor
   * (systemd, the autoscaler) replaces it.
   */
  onUnfit?: (left: Promise<void>) => void;
}

interface Running {
  lease: Lease;
  abort: AbortController;
  done: Promise<void>;
  /** The program's latest progress, and whether a heartbeat has carried it yet. */
  progress?: JobProgress;
  progressSent: boolean;
  /** Set when the watchdog gave up on the run: its slot stays out of service until this settles. */
  outOfService?: Promise<void>;
  /** The run is over (its result may still be travelling): nothing left to stop. */
  ended?: boolean;
  /** Settles when the run gave its slot back (its processes are gone). */
  slotBack?: Promise<void>;
}

/** After the watchdog orders a kill: the grace period, and this much more, before the run counts as outliving it. */
const WATCHDOG_KILL_MARGIN_MS = 1_000;
/** setTimeout fires at once for longer delays. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A finished lease's result waiting to be sent (again). */
interface Unsent {
  completion: Completion;
  leaseExpiresAtMs: number;
  tries: number;
  /** Called once the result is settled: committed, stale, or given up on. */
  settled: () => void;
}

/**
 * What the lease loop is doing, which decides how a result that is ready travels: with the loop's next
 * call when it is parked on full slots, on its own while a call is out or the loop rests.
 */
type LoopState = 'parked' | 'calling' | 'resting';

export class Worker {
  private workerId: string | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private heartbeatIntervalMs = 0;
  /** Leases held: running, or finished with their result not yet settled (still renewed by heartbeats). */
  private readonly running = new Map<string, Running>();
  /** Slots in use: runs not yet finished (those out of service included). */
  private busySlots = 0;
  /** Slots whose run outlived the watchdog: held until that run ends, if it ever does. */
  private slotsOutOfService = 0;
  private readonly unsent: Unsent[] = [];
  private loopState: LoopState = 'resting';
  private draining = false;
  private drainDone: Promise<void> | undefined;
  private readonly stopLeasing = new AbortController();
  private loopDone: Promise<void> = Promise.resolve();
  private slotFreed: (() => void) | undefined;

  private readonly tuning: WorkerTuning;
  private readonly observer: WorkerObserver;
  /** The machine, read once: it is the same for every run. */
  private readonly host: HostInfo;
  /** Long jobs' live logs, when the server takes them (worker/logs/). */
  private logShipper: LogShipper | undefined;

  constructor(private readonly opts: WorkerOptions) {
    this.tuning = workerTuning(opts);
    this.host = {
      cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
      cores: availableParallelism(),
      memoryBytes: totalmem(),
      kernel: `${type()} ${release()} ${machine()}`,
      slots: opts.slots,
      pricePerHour: opts.pricePerHour ?? null,
    };
    this.observer = fanOut(opts.observers ?? [], (err, method) => opts.logger.error({ err, method }, 'a worker observer failed'));
  }

  get id(): string | undefined {
    return this.workerId;
  }

  /** Jobs whose runs are under way (not those whose results are only travelling). */
  get activeJobs(): number {
    return this.busySlots;
  }

  async start(): Promise<void> {
    await mkdir(this.opts.workRoot, { recursive: true });
    await this.register();
    this.loopDone = this.leaseLoop();
  }

  private async register(): Promise<void> {
    const session = await this.opts.link.register({
      ...(this.workerId ?? this.opts.id ? { id: this.workerId ?? this.opts.id } : {}),
      name: this.opts.name,
      platforms: this.opts.platforms.map((p) => ({ platform: p.platform, emulated: p.emulated })),
      slots: this.opts.slots,
      ...(this.opts.labels ? { labels: this.opts.labels } : {}),
      ...(this.opts.instanceId !== undefined ? { instanceId: this.opts.instanceId } : {}),
      ...(this.opts.pricePerHour !== undefined ? { pricePerHour: this.opts.pricePerHour } : {}),
    });
    this.workerId = session.workerId;
    this.startLogShipper(session.features ?? []);
    this.opts.onCancel?.(session.workerId, (jobId) => this.running.get(jobId)?.abort.abort());
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatIntervalMs = session.heartbeatIntervalMs;
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), session.heartbeatIntervalMs);
    this.heartbeatTimer.unref();
    this.opts.logger.info({ workerId: session.workerId, platforms: this.opts.platforms.map((p) => p.platform), slots: this.opts.slots }, 'worker registered');
  }

  /**
   * Stops taking jobs, waits for the running ones to finish and commit, then leaves the server. Every call
   * gets the same drain: a second caller (a drain the server ordered, then SIGTERM) waits for all of it too.
   */
  drain(): Promise<void> {
    return (this.drainDone ??= this.drainOnce());
  }

  /**
   * Leaves without the server, which cannot be reached (`remex worker` on SIGTERM then): takes no new jobs,
   * stops the runs as a cancellation does, and resolves once each has given its slot back. Their results
   * are not waited for (the server requeues their leases when they expire), nor is the unregistration.
   */
  async abandon(): Promise<void> {
    this.draining = true;
    this.stopLeasing.abort();
    this.slotFreed?.();
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.logShipper?.close();
    const runs = [...this.running.values()];
    for (const r of runs) r.abort.abort();
    await Promise.all(runs.map((r) => r.slotBack));
  }

  private async drainOnce(): Promise<void> {
    this.draining = true;
    this.observer.draining?.();
    this.stopLeasing.abort();
    this.slotFreed?.();
    await this.heartbeat();
    await this.loopDone;
    await Promise.all([...this.running.values()].map((r) => r.done));
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.logShipper?.close();
    if (this.workerId) await this.opts.link.unregister(this.workerId).catch(() => undefined);
    this.observer.drained?.();
  }

  /**
   * Leases jobs while slots are free. Results that are ready when the loop calls ride along with the call
   * (one round trip per job on a busy worker): the server commits them first, then the call waits for work
   * as a lease does. A draining heartbeat ends that wait, so such a call is never aborted: its answer
   * carries the settlements. Results that finish while a call is out travel on their own.
   */
  private async leaseLoop(): Promise<void> {
    const waitMs = this.tuning.leaseWaitMs;
    while (!this.draining) {
      const free = this.opts.slots - this.busySlots;
      if (free <= 0 && this.unsent.length === 0) {
        this.loopState = 'parked';
        await new Promise<void>((resolve) => (this.slotFreed = resolve));
        continue;
      }
      const batch = this.unsent.splice(0, this.tuning.maxCompletionsPerCall);
      let leases: Lease[];
      this.loopState = 'calling';
      try {
        if (batch.length === 0) {
          leases = await this.opts.link.lease(this.workerId as string, free, waitMs, this.stopLeasing.signal);
        } else {
          const completions = batch.map((u) => u.completion);
          const reply = await this.opts.link.completeAndLease(this.workerId as string, completions, Math.max(0, free), free > 0 ? waitMs : 0);
          this.settle(batch, reply.settled);
          leases = reply.leases;
        }
      } catch (err) {
        this.loopState = 'resting';
        this.sendFailed(batch, err);
        if (this.draining) break;
        const retryInMs = this.tuning.retryDelayMs;
        if (isRemexError(err, 'NOT_FOUND')) await this.register().catch(() => undefined);
        else this.opts.logger.warn({ err, retryInMs }, 'lease failed; retrying');
        this.observer.callFailed?.('lease', err, retryInMs);
        await delay(retryInMs);
        continue;
      } finally {
        this.loopState = 'resting';
      }
      for (const lease of leases) this.startJob(lease);
    }
    // Results of runs still going are sent on their own from now on.
    this.loopState = 'resting';
    if (this.unsent.length > 0) void this.sendAside();
  }

  private startJob(lease: Lease): void {
    const abort = new AbortController();
    const entry: Running = { lease, abort, done: Promise.resolve(), progressSent: true };
    this.running.set(lease.jobId, entry);
    this.busySlots++;
    let slotHeld = true;
    let slotBack = (): void => undefined;
    entry.slotBack = new Promise<void>((resolve) => (slotBack = resolve));
    const freeSlot = (): void => {
      if (!slotHeld) return;
      slotHeld = false;
      slotBack();
      this.busySlots--;
      this.wakeLoop();
    };
    entry.done = this.runJob(entry, freeSlot)
      .catch((err: unknown) => this.opts.logger.error({ err, ...runIds(lease) }, 'job handling failed'))
      .finally(() => {
        // A run the watchdog gave up on gives its slot back only when it ends.
        if (entry.outOfService) void entry.outOfService.finally(freeSlot);
        else freeSlot();
        this.running.delete(lease.jobId);
      });
  }

  private wakeLoop(): void {
    const wake = this.slotFreed;
    this.slotFreed = undefined;
    wake?.();
  }

  private async heartbeat(): Promise<void> {
    if (!this.workerId) return;
    try {
      // The leases this worker runs: only those are renewed. One the server handed out but whose answer
      // never arrived (lost with a controller) then expires and is requeued instead of being kept alive.
      // Progress not yet sent rides along; it counts as sent once the server answered (an update that
      // arrived meanwhile waits for the next heartbeat).
      const entries = [...this.running.values()];
      const held = entries.map((r) => ({ jobId: r.lease.jobId, attempt: r.lease.attempt, ...(!r.progressSent && r.progress ? { progress: r.progress } : {}) }));
      const reply = await this.opts.link.heartbeat(this.workerId, this.draining, held);
      held.forEach((h, i) => {
        const r = entries[i] as Running;
        if (h.progress !== undefined && r.progress === h.progress) r.progressSent = true;
      });
      // Cancelled, or no longer this worker's lease (requeued while it was silent, emergency-stopped by the
      // server): the run stops now, whatever else the reply says.
      for (const jobId of reply.cancel) {
        const r = this.running.get(jobId);
        if (!r || r.ended || r.abort.signal.aborted) continue;
        this.opts.logger.info({ jobId }, 'the server says to stop this run (cancelled, or its lease is no longer this worker\'s)');
        r.abort.abort();
      }
      if (!reply.known && !this.draining) {
        this.opts.logger.warn('server forgot this worker; registering again');
        await this.register();
        return;
      }
      if (reply.drain && !this.draining) {
        this.opts.logger.info({ running: this.busySlots }, 'the server asked this worker to drain: finishing what it holds, taking nothing new');
        const drained = this.drain();
        this.opts.onDrainOrdered?.(drained);
      }
    } catch (err) {
      const retryInMs = this.heartbeatIntervalMs;
      this.opts.logger.warn({ err, retryInMs }, 'heartbeat failed');
      this.observer.callFailed?.('heartbeat', err, retryInMs);
    }
  }

  /** Runs a lease and commits its outcome; `runEnded` frees the slot once the program is done with it. */
  private async runJob(entry: Running, runEnded: () => void): Promise<void> {
    const { lease } = entry;
    this.observer.runStarted?.(lease);
    let runDir: string;
    try {
      // Synchronous: microseconds, where the thread-pool round trip costs more on a busy worker.
      runDir = mkdtempSync(join(this.opts.workRoot, 'run-'));
    } catch (err) {
      this.opts.logger.error({ err, ...runIds(lease) }, 'cannot make a run directory');
      runEnded();
      const outcome: Outcome = { state: 'failed', failure: { code: 'INTERNAL', message: `worker ${this.opts.name} cannot make a run directory` } };
      this.observer.runFinished?.(lease, outcome, null);
      await this.commit(lease, outcome);
      return;
    }
    let committed: Promise<void> | undefined;
    let lingering: Promise<void> | undefined;
    try {
      const executed = await this.execute(entry, runDir);
      entry.ended = true;
      const { outcome, phases } = executed;
      lingering = executed.lingering;
      // The slot is free while the result travels: the next lease call can carry it. A run the watchdog
      // gave up on keeps it (startJob gives it back when the run ends).
      if (lingering) this.takeOutOfService(entry, lingering);
      else runEnded();
      this.observer.runFinished?.(lease, outcome, phases);
      // The program's last progress (read when it ended) reaches the server while the lease is still
      // this worker's: one heartbeat before the result, only for a run whose channel has news.
      if (!entry.progressSent) await this.heartbeat();
      // Sent before the cleanup starts: the client waits for the result, not for the cleanup. Its
      // settlement may come back later still, with the answer to a lease call that waited for work.
      committed = this.commit(lease, outcome);
    } finally {
      // Node's recursive rm is the second try; a run directory neither removes stays until the run root is
      // emptied. A run still going keeps its directory until it ends.
      const removed = (): Promise<void> =>
        removeTree(runDir)
          .catch(() => rm(runDir, { recursive: true, force: true }))
          .catch((err: unknown) => this.opts.logger.warn({ err, runDir }, 'cannot remove a run directory'));
      if (lingering) void lingering.then(removed);
      else await removed();
    }
    await committed;
  }

  /**
   * The watchdog gave up on this run: its slot stays out of service until the run ends. With no slot left
   * in service the worker cannot kill its runs: it stops taking work and leaves (layer 5).
   */
  private takeOutOfService(entry: Running, lingering: Promise<void>): void {
    this.slotsOutOfService++;
    entry.outOfService = lingering.then(() => {
      this.slotsOutOfService--;
      this.opts.logger.info({ jobId: entry.lease.jobId }, 'the run the watchdog gave up on has ended: its slot is back in service');
    });
    this.opts.logger.error({ jobId: entry.lease.jobId, outOfService: this.slotsOutOfService, slots: this.opts.slots }, 'run outlived its kill: emergency-stopped, its slot out of service');
    if (this.slotsOutOfService >= this.opts.slots && !this.draining) {
      this.opts.logger.fatal({ slots: this.opts.slots }, 'no slot left in service (this worker cannot kill its runs): taking no more work, leaving');
      this.opts.onUnfit?.(this.drain());
    }
  }

  /**
   * The watchdog of one run, apart from its supervisor (layer 3): at max-runtime + failsafe (at least the
   * grace period) it orders the kill itself and gives it a grace period and a second more; a run still going
   * then has outlived its kill, and is given up on with the failure to report. Null when the run ended first.
   * Ordering the kill before judging also covers a worker that was not running (SIGSTOP): its supervisor's
   * timers and this one fire together when it runs again, and the supervisor gets its chance.
   */
  private watchdog(entry: Running, run: Promise<unknown>): Promise<JobFailure | null> {
    const { lease } = entry;
    const { graceMs } = this.tuning;
    const failsafeMs = Math.max(lease.failsafeMs ?? lease.spec.failsafeMs ?? this.tuning.failsafeMs, graceMs);
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const ended = (): void => {
        clearTimeout(timer);
        resolve(null);
      };
      run.then(ended, ended);
      timer = setTimeout(() => {
        entry.abort.abort();
        timer = setTimeout(() => {
          resolve({
            code: 'DEADLINE_EXCEEDED',
            message: `emergency stop by worker ${this.opts.name}: the run was still going ${lease.spec.timeoutMs + failsafeMs} ms after it started (max-runtime + failsafe) and outlived its kill; its slot is out of service until it ends`,
          });
        }, graceMs + WATCHDOG_KILL_MARGIN_MS);
      }, Math.min(lease.spec.timeoutMs + failsafeMs, MAX_TIMER_MS));
    });
  }

  /** Runs one lease and describes how it ended, with where its time went once the program ran; never throws. */
  private async execute(entry: Running, runDir: string): Promise<{ outcome: Outcome; phases: RunPhases | null; lingering?: Promise<void> }> {
    const { lease } = entry;
    const { signal } = entry.abort;
    const { spec } = lease;
    const support = this.opts.platforms.find((p) => p.platform === spec.platform);
    if (!support) {
      return { outcome: { state: 'failed', failure: { code: 'FAILED_PRECONDITION', message: `worker ${this.opts.name} does not serve ${spec.platform}` } }, phases: null };
    }
    try {
      // Phase times: where a run's overhead goes (staging, sandbox, collection), for the observer and the debug log.
      const t0 = performance.now();
      const inputRoot = join(runDir, 'root');
      // Inputs are shared with the blob store (hard links, no copy) where programs cannot write them.
      await stageTree(spec.inputRootDigest, this.opts.blobs, inputRoot, { shareStoredFiles: this.opts.sandbox.capabilities.readOnlyInputs });
      await createOutputParents(inputRoot, spec.command.workingDirectory, spec.command.outputPaths);
      let stdinPath: string | null = null;
      if (spec.stdinDigest) {
        stdinPath = join(runDir, 'stdin');
        await this.opts.blobs.materialize(spec.stdinDigest, stdinPath, 0o644);
      }
      const [program, ...args] = spec.command.arguments;
      if (program === undefined) return { outcome: { state: 'failed', failure: { code: 'INVALID_ARGUMENT', message: 'command has no arguments' } }, phases: null };
      const env: Record<string, string> = Object.fromEntries(spec.command.environmentVariables.map((v) => [v.name, v.value]));
      const channel = spec.progress ? await this.openProgressChannel(inputRoot, entry) : undefined;
      if (channel) env[PROGRESS_ENV_VAR] = posix.join(SANDBOX_ROOT, channel.fileName);
      if (spec.results) {
        await makeResultsDirectory(inputRoot, this.opts.sandbox.capabilities.programOwner);
        env[RESULTS_ENV_VAR] = posix.join(SANDBOX_ROOT, RESULTS_DIRECTORY);
      }
      // A long job's output goes to files the log shipper sends on as they grow (decision 0021).
      const logFiles = spec.logs ? { stdoutPath: join(runDir, 'stdout.log'), stderrPath: join(runDir, 'stderr.log'), limitBytes: spec.logs.ceilingBytes } : null;
      if (logFiles) this.logShipper?.open(lease.jobId, lease.attempt, logFiles);
      const t1 = performance.now();
      // The rest of a long job's log leaves while its output goes into the CAS; both end before the result.
      let logsShipped: Promise<void> | undefined;
      const run = (async (): Promise<SandboxResult> => {
        try {
          return await this.opts.sandbox.run({
            inputRoot,
            workingDirectory: spec.command.workingDirectory,
            argv: [program, ...args],
            env,
            stdinPath,
            timeoutMs: spec.timeoutMs,
            graceMs: this.tuning.graceMs,
            limits: spec.limits,
            emulation: support.emulation,
            signal,
            outputFiles: logFiles,
            ...(this.tuning.injectFault ? { fault: this.tuning.injectFault } : {}),
          });
        } finally {
          if (logFiles) logsShipped = this.logShipper?.finish(lease.jobId);
          // The last lines are read, and the file goes before outputs are collected (it is not an output).
          if (channel) {
            await channel.close();
            await rm(channel.path, { force: true }).catch(() => undefined);
          }
        }
      })();
      const givenUp = await this.watchdog(entry, run);
      if (givenUp) {
        const lingering = run.then(
          () => undefined,
          () => undefined,
        );
        return { outcome: { state: 'emergency_stopped', failure: givenUp }, phases: null, lingering };
      }
      const result = await run;
      const t2 = performance.now();
      const inlineLimit = this.tuning.inlineOutputBytes;
      const [stdout, stderr, outputs, results] = await Promise.all([
        logFiles
          ? storeLogFile(this.opts.blobs, logFiles.stdoutPath, result.stdoutTotalBytes, result.stdoutTruncated, inlineLimit)
          : this.storeOutput(result.stdout, result.stdoutTotalBytes, result.stdoutTruncated, inlineLimit),
        logFiles
          ? storeLogFile(this.opts.blobs, logFiles.stderrPath, result.stderrTotalBytes, result.stderrTruncated, inlineLimit)
          : this.storeOutput(result.stderr, result.stderrTotalBytes, result.stderrTruncated, inlineLimit),
        collectOutputs(inputRoot, spec.command.workingDirectory, spec.command.outputPaths, this.opts.blobs),
        // The results directory, taken as the declared outputs are (nothing it holds is followed out of it).
        spec.results ? collectOutputs(inputRoot, '', [RESULTS_DIRECTORY], this.opts.blobs) : undefined,
      ]);
      if (results) outputs.directories.push(...results.directories);
      await logsShipped;
      const report: RunReport = {
        exitCode: result.exitCode,
        signal: result.signal,
        timedOut: result.timedOut,
        limitExceeded: result.limitExceeded,
        stdout,
        stderr,
        outputFiles: outputs.files,
        outputDirectories: outputs.directories,
        wallTimeMs: result.wallTimeMs,
        cpuTimeMs: result.cpuTimeMs,
        maxRssKb: result.maxRssKb,
        emulated: support.emulated,
        worker: this.opts.name,
        host: this.host,
      };
      const t3 = performance.now();
      const state = result.cancelled ? 'cancelled' : result.timedOut ? 'timed_out' : 'completed';
      const ms = (a: number, b: number): number => Math.round((b - a) * 10) / 10;
      const phases: RunPhases = { stageMs: ms(t0, t1), sandboxMs: ms(t1, t2), programWallMs: result.wallTimeMs, collectMs: ms(t2, t3) };
      report.times = runTimes(t0, t1, t2, t3, result.wallTimeMs);
      this.opts.logger.debug({ ...runIds(lease), ...phases }, 'run phases');
      return { outcome: { state, result: report }, phases };
    } catch (err) {
      if (isRemexError(err)) return { outcome: { state: 'failed', failure: { code: err.code, message: err.message } }, phases: null };
      this.opts.logger.error({ err, ...runIds(lease) }, 'run failed inside the worker');
      return { outcome: { state: 'failed', failure: { code: 'INTERNAL', message: `worker ${this.opts.name} could not run the job` } }, phases: null };
    }
  }

  /** The run's progress channel; each update (at most one a second) becomes the job's progress, with its history. */
  private openProgressChannel(inputRoot: string, entry: Running): Promise<ProgressChannel> {
    const history: JobProgress['history'] = [];
    const owner = this.opts.sandbox.capabilities.programOwner;
    return ProgressChannel.open(inputRoot, {
      ...(owner ? { fileOwner: owner } : {}),
      pollIntervalMs: this.tuning.progressPollMs,
      onUpdate: (update, atMs) => {
        // The next heartbeat carries it (the run's entry says it is not sent yet).
        entry.progress = { ...update, ...(update.metrics ? { metrics: { ...update.metrics } } : {}), atMs, history: [...history] };
        entry.progressSent = false;
        if (update.percent !== undefined) {
          history.push({ percent: update.percent, atMs });
          if (history.length > MAX_PROGRESS_HISTORY) history.shift();
        }
      },
    });
  }

  /** Live logs go to the server when it takes them; a server without them gets a long job's output with its result only. */
  private startLogShipper(features: readonly string[]): void {
    const link = this.opts.link;
    if (this.logShipper || !features.includes(LIVE_LOGS_FEATURE) || !link.appendLogs) return;
    this.logShipper = new LogShipper({
      send: (chunks) => (link.appendLogs as NonNullable<WorkerLink['appendLogs']>).call(link, this.workerId as string, chunks),
      pollMs: this.tuning.logPollMs,
      maxBytesPerCall: this.tuning.logBytesPerCall,
      logger: this.opts.logger,
    });
  }

  private async storeOutput(bytes: Buffer, totalBytes: number, truncated: boolean, inlineLimit: number): Promise<OutputStream> {
    const digest = digestOf(bytes);
    await this.opts.blobs.put(digest, bytes);
    return { digest, inlineBase64: bytes.byteLength <= inlineLimit ? bytes.toString('base64') : null, totalBytes, truncated };
  }

  /**
   * Commits until the server answers: a result must not be lost to a brief outage. A stale lease is final.
   * Resolves once the result is settled.
   */
  private commit(lease: Lease, outcome: Outcome): Promise<void> {
    return new Promise((settled) => {
      this.unsent.push({ completion: { jobId: lease.jobId, attempt: lease.attempt, outcome }, leaseExpiresAtMs: lease.leaseExpiresAtMs, tries: 0, settled });
      this.dispatchUnsent();
    });
  }

  /** Sends waiting results: with the loop's next call when it is parked, on their own otherwise. */
  private dispatchUnsent(): void {
    if (this.loopState === 'parked') this.wakeLoop();
    else void this.sendAside();
  }

  /** Sends waiting results in a call of their own (no lease). */
  private async sendAside(): Promise<void> {
    const batch = this.unsent.splice(0, this.tuning.maxCompletionsPerCall);
    if (batch.length === 0) return;
    try {
      const reply = await this.opts.link.completeAndLease(this.workerId as string, batch.map((u) => u.completion), 0, 0);
      this.settle(batch, reply.settled);
    } catch (err) {
      if (isRemexError(err, 'NOT_FOUND') && this.draining) {
        // Forgot by the server while leaving (declared gone): it released every lease this worker held, so
        // these results are stale. Registering again only to hear so would undo the leaving.
        this.settle(batch, batch.map((u) => ({ jobId: u.completion.jobId, attempt: u.completion.attempt, status: 'stale', message: 'this worker is no longer registered' })));
      } else {
        if (isRemexError(err, 'NOT_FOUND')) await this.register().catch(() => undefined);
        this.sendFailed(batch, err);
      }
    }
    if (this.unsent.length > 0) this.dispatchUnsent();
  }

  private settle(batch: readonly Unsent[], settlements: readonly CompletionSettlement[]): void {
    batch.forEach((u, i) => {
      const s = settlements[i];
      if (s?.status === 'committed') {
        this.observer.resultSettled?.(u.completion.jobId, u.completion.attempt, 'committed');
        return u.settled();
      }
      if (s?.status === 'stale') {
        this.observer.resultSettled?.(u.completion.jobId, u.completion.attempt, 'stale');
        // Expired and requeued, or committed already by an earlier call whose answer was lost.
        this.opts.logger.warn({ jobId: u.completion.jobId, attempt: u.completion.attempt, reason: s.message }, 'result not committed: the lease is no longer this worker\'s');
        return u.settled();
      }
      this.retryLater(u, new Error(s?.message ?? 'the server did not settle this result'));
    });
  }

  /** The call carrying `batch` failed as a whole: each result is sent again, after a pause. */
  private sendFailed(batch: readonly Unsent[], err: unknown): void {
    for (const u of batch) this.retryLater(u, err);
  }

  private retryLater(u: Unsent, err: unknown): void {
    u.tries++;
    const { giveUpAfterTries, giveUpAfterLeaseExpiryMs, retryDelayMs, maxRetryDelayMs } = this.tuning;
    if (Date.now() > u.leaseExpiresAtMs + giveUpAfterLeaseExpiryMs && u.tries > giveUpAfterTries) {
      this.opts.logger.error({ err, jobId: u.completion.jobId }, 'giving up committing a result');
      this.observer.resultSettled?.(u.completion.jobId, u.completion.attempt, 'abandoned');
      return u.settled();
    }
    const pause = Math.min(maxRetryDelayMs, retryDelayMs * 2 ** Math.min(u.tries - 1, 4));
    this.opts.logger.debug({ err, jobId: u.completion.jobId, tries: u.tries, retryInMs: pause }, 'result not settled; sending it again');
    this.observer.callFailed?.('complete', err, pause);
    setTimeout(() => {
      this.unsent.push(u);
      this.dispatchUnsent();
    }, pause);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * The run's phases on the wall clock, from the monotonic marks taken as it went: staging began at t0 and
 * ended at t1, the sandbox returned at t2 after a program of `programWallMs`, the outputs were stored at t3.
 */
function runTimes(t0: number, t1: number, t2: number, t3: number, programWallMs: number): RunTimes {
  const epoch = (t: number): number => Math.round(performance.timeOrigin + t);
  const programStarted = Math.max(t1, t2 - programWallMs);
  return {
    stagingStartedAtMs: epoch(t0),
    stagedAtMs: epoch(t1),
    programStartedAtMs: epoch(programStarted),
    programEndedAtMs: epoch(Math.min(t2, programStarted + programWallMs)),
    outputsStoredAtMs: epoch(t3),
  };
}

/** What every log line about a run names: its job and, when the submitter's trace came with it, the trace. */
function runIds(lease: Lease): { jobId: string; traceId?: string } {
  const traceId = traceIdOf(lease.spec.traceparent);
  return traceId ? { jobId: lease.jobId, traceId } : { jobId: lease.jobId };
}
