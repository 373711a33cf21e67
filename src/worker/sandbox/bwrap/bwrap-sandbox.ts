/**
 * The bubblewrap sandbox adapter: namespaces and a read-only system from bwrap, whole-tree limits and
 * accounting from cgroups (v1 or v2), per-process limits from rlimits, an unprivileged uid for the
 * program. See docs/decisions/0003-sandbox.md for why.
 *
 * One run: create its cgroup, hand the input root's directories to the sandbox uid, have the spawner
 * process launch `remex-exec launch` (joins the cgroup, sets rlimits) → `bwrap` → [`remex-exec as`: uid
 * switch, the request's environment] → program (where remex-exec was not built: `sh` → `bwrap` →
 * [`unshare --setuid` → `env -i`] → program), supervise it, then make sure the cgroup is empty, read its
 * counters and remove it.
 */
import { lchownSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate } from 'node:timers/promises';
import { InternalError, InvalidArgumentError, UnavailableError, isRemexError } from '../../../core/errors.js';
import { DEFAULT_LIMITS, type LimitKind, type ResourceLimits } from '../../../core/limits.js';
import { planInvocation, sandboxWorkingDirectory, validateCommand } from './bwrap-args.js';
import { type CgroupMode, RUN_CGROUP_PREFIX, probeCgroups } from './cgroup-probe.js';
import { type CgroupDriver, type CgroupSample, type RunCgroup, isErrno } from './cgroups.js';
import { type HostLayout, disposeHostLayout, probeHostLayout } from './host-layout.js';
import { launcherCommand } from './launcher.js';
import { cgroupTree, namespaceTree } from './process-tree.js';
import { buildResult, cancelledBeforeStart, programEnd } from './run-result.js';
import { type LimitWatch, type SupervisedRun, superviseRun } from './run-supervisor.js';
import { Spawner } from './spawner.js';
import type { EmulationSpec, Sandbox, SandboxCapabilities, SandboxRequest, SandboxResult } from '../sandbox.js';

export interface BwrapSandboxOptions {
  /** uid the program runs as when the worker is root. Default 65534 (nobody). */
  runAsUid?: number;
  runAsGid?: number;
  /** Which cgroups to use; 'none' falls back to rlimits alone. Default 'auto' (v1 or v2, whichever enforces more). */
  cgroups?: CgroupMode;
  /** Cgroup path under which run cgroups are made, in every hierarchy. Default: this process's own cgroup. */
  cgroupParent?: string;
  /** Default: `bwrap` on PATH. */
  bwrapPath?: string;
  /** How often the tree's CPU time, OOM kills and refused forks are checked while a program runs. */
  limitPollIntervalMs?: number;
  /** Host name the program sees. */
  hostname?: string;
  /** remex-exec to launch with; null: sh, unshare and env instead. Default: the one built with remex, if any. */
  execHelperPath?: string | null;
  /** Private directory for the prepared /etc. Default: /run/remex-sandbox as root, else in the tmpdir. */
  stateDir?: string;
}

export const DEFAULT_RUN_AS_UID = 65534;
export const DEFAULT_RUN_AS_GID = 65534;
export const DEFAULT_LIMIT_POLL_INTERVAL_MS = 50;
export const DEFAULT_SANDBOX_HOSTNAME = 'sandbox';

/** Tasks of the sandbox's own in every run's cgroup: the bwrap monitor and the namespace's init. */
const SANDBOX_TASKS = 2;
/** `remex-exec as -s` waits for the program in a process of its own (under the program's uid), where it is used. */
const WAITER_TASKS = 1;
/** qemu-user runs one helper thread (RCU) beside the guest's. */
const EMULATOR_TASKS = 1;
const MAX_NAME_ATTEMPTS = 100;
/** Directories of an input root handed to the sandbox uid between two yields to the event loop. */
const CHOWN_DIRECTORIES_PER_SLICE = 256;

let runCounter = 0;

/** Everything create() found and decided; fixed for the sandbox's lifetime. */
interface Settings {
  layout: HostLayout;
  cgroups: CgroupDriver | null;
  runAsUid: number;
  runAsGid: number;
  limitPollIntervalMs: number;
  hostname: string;
}

export class BwrapSandbox implements Sandbox {
  readonly capabilities: SandboxCapabilities;
  private readonly layout: HostLayout;
  private readonly cgroups: CgroupDriver | null;
  /** Starts every launcher, so no sandbox is forked from this (possibly large) process. */
  private readonly spawner: Spawner;
  private closed = false;
  /** Runs started and not yet ended: close() lets them finish before the spawner goes. */
  private active = 0;

  private constructor(
    private readonly settings: Settings,
    notes: string[],
  ) {
    this.layout = settings.layout;
    this.cgroups = settings.cgroups;
    this.spawner = new Spawner({ maskFds: settings.layout.inheritedFds, devNullFd: settings.layout.devNullFd, execHelperPath: settings.layout.execHelperPath });
    const enforces = settings.cgroups?.enforces;
    // As root the program runs as another uid; unprivileged it runs as this process's own uid, which
    // owns the blob store and could write a shared file.
    const otherUser = settings.layout.privileged && settings.runAsUid !== process.getuid?.();
    this.capabilities = {
      kind: 'bwrap',
      treeLimits: Boolean(enforces?.memory && enforces.processes && enforces.cpuTime),
      readOnlyInputs: otherUser,
      programOwner: otherUser ? { uid: settings.runAsUid, gid: settings.runAsGid } : null,
      notes,
    };
  }

  /**
   * Probes the host (tools, filesystem layout, cgroups), then proves the whole chain by running a
   * shell in a sandbox. Throws {@link UnavailableError} when sandboxing cannot work here.
   */
  static async create(opts: BwrapSandboxOptions = {}): Promise<BwrapSandbox> {
    const privileged = process.getuid?.() === 0;
    const runAsUid = privileged ? (opts.runAsUid ?? DEFAULT_RUN_AS_UID) : (process.getuid?.() ?? DEFAULT_RUN_AS_UID);
    const runAsGid = privileged ? (opts.runAsGid ?? DEFAULT_RUN_AS_GID) : (process.getgid?.() ?? DEFAULT_RUN_AS_GID);
    const [layout, cgroups] = await Promise.all([
      probeHostLayout({
        runAsUid,
        runAsGid,
        ...(opts.bwrapPath ? { bwrapPath: opts.bwrapPath } : {}),
        ...(opts.stateDir ? { stateDir: opts.stateDir } : {}),
        ...(opts.execHelperPath !== undefined ? { execHelperPath: opts.execHelperPath } : {}),
      }),
      probeCgroups({ mode: opts.cgroups ?? 'auto', ...(opts.cgroupParent ? { parent: opts.cgroupParent } : {}) }),
    ]);
    const notes = [
      layout.bwrapVersion,
      privileged ? `programs run as uid ${runAsUid}, gid ${runAsGid}` : `not root: programs run as this process's uid ${runAsUid} in a user namespace`,
      layout.execHelperPath !== null
        ? `launched by ${layout.execHelperPath}`
        : 'launched by a Node spawner, sh, unshare and env (remex-exec not built, which scripts/build-native.sh does with a C compiler, or not used)',
      ...(cgroups.driver ? [cgroups.driver.description] : []),
      ...cgroups.notes,
      ...(layout.inheritedFds.length > 0
        ? [`inherited descriptors ${layout.inheritedFds.join(', ')} ${layout.execHelperPath !== null ? 'are closed before' : 'are replaced by /dev/null in'} sandboxes`]
        : []),
    ];
    const sandbox = new BwrapSandbox(
      {
        layout,
        cgroups: cgroups.driver,
        runAsUid,
        runAsGid,
        limitPollIntervalMs: opts.limitPollIntervalMs ?? DEFAULT_LIMIT_POLL_INTERVAL_MS,
        hostname: opts.hostname ?? DEFAULT_SANDBOX_HOSTNAME,
      },
      notes,
    );
    try {
      await sandbox.spawner.start();
      await sandbox.selfTest();
    } catch (err) {
      await sandbox.close();
      throw err;
    }
    return sandbox;
  }

  async run(req: SandboxRequest): Promise<SandboxResult> {
    if (this.closed) throw new UnavailableError('sandbox is closed');
    validateCommand(req.argv, req.env);
    sandboxWorkingDirectory(req.workingDirectory);
    if (req.signal?.aborted) return cancelledBeforeStart();
    this.active++;
    try {
      return await this.runActive(req);
    } finally {
      if (--this.active === 0 && this.closed) this.spawner.close();
    }
  }

  private async runActive(req: SandboxRequest): Promise<SandboxResult> {
    const prepared = await Promise.allSettled([this.createRunCgroup(req.limits, req.emulation), this.grantInputRoot(req.inputRoot)]);
    const [cgroupResult] = prepared;
    const cgroup = cgroupResult.status === 'fulfilled' ? cgroupResult.value : null;
    try {
      const failure = prepared.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failure) throw isRemexError(failure.reason) ? failure.reason : new InternalError('sandbox: cannot prepare the run', { cause: failure.reason });
      const run = await this.launch(req, cgroup);
      const usage = cgroup ? await settle(cgroup) : null;
      const end = programEnd(run);
      if (!end) throw setupFailure(req, run);
      return buildResult(run, end, usage, req.limits);
    } finally {
      await cgroup?.remove().catch(() => undefined);
    }
  }

  /**
   * Refuses further runs and releases what create() opened; the spawner process exits once the runs in
   * flight, which are not affected, have ended.
   */
  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      if (this.active === 0) this.spawner.close();
      disposeHostLayout(this.layout);
    }
    return Promise.resolve();
  }

  private launch(req: SandboxRequest, cgroup: RunCgroup | null): Promise<SupervisedRun> {
    const { limits } = req;
    const invocation = planInvocation({
      layout: this.layout,
      inputRoot: req.inputRoot,
      workingDirectory: req.workingDirectory,
      argv: req.argv,
      env: req.env,
      tmpBytes: limits.tmpBytes,
      emulation: req.emulation,
      runAsUid: this.settings.runAsUid,
      runAsGid: this.settings.runAsGid,
      hostname: this.settings.hostname,
    });
    const enforces = this.cgroups?.enforces;
    const launcher = launcherCommand(
      cgroup?.setup ?? [],
      {
        fileSizeBytes: limits.fileSizeBytes,
        openFiles: limits.openFiles,
        cpuTimeMs: limits.cpuTimeMs,
        // Without a pids cgroup RLIMIT_NPROC is all there is, and it only binds a non-root uid.
        processes: enforces?.processes ? null : limits.processes + this.ownTasks(req.emulation, false),
      },
      { path: this.layout.bwrapPath, command: invocation.command, execHelperFd: invocation.execHelperFd, programStatusFd: invocation.programStatusFd },
      this.layout,
    );
    return superviseRun({
      spawner: this.spawner,
      launcher,
      bwrapOptions: invocation.bwrapOptions,
      stdinPath: req.stdinPath,
      outputBytes: req.outputFiles?.limitBytes ?? limits.outputBytes,
      outputFiles: req.outputFiles ? { stdout: req.outputFiles.stdoutPath, stderr: req.outputFiles.stderrPath } : null,
      timeoutMs: req.timeoutMs,
      graceMs: req.graceMs,
      ...(req.signal ? { signal: req.signal } : {}),
      ...(req.fault ? { fault: req.fault } : {}),
      tree: cgroup ? cgroupTree(cgroup) : namespaceTree,
      limitWatch: cgroup ? this.limitWatch(cgroup, limits) : null,
    });
  }

  private limitWatch(cgroup: RunCgroup, limits: ResourceLimits): LimitWatch {
    const cpuLimitNs = limits.cpuTimeMs * 1e6;
    return {
      intervalMs: this.settings.limitPollIntervalMs,
      check: async (): Promise<LimitKind | null> => {
        const s = await cgroup.sample();
        if (s.oomKills > 0) return 'memory';
        if (s.taskLimitHits > 0) return 'processes';
        if (s.cpuTimeNs !== null && s.cpuTimeNs >= cpuLimitNs) return 'cpu_time';
        return null;
      },
    };
  }

  /** Tasks beside the program's that a run needs: bwrap's (in the cgroup only), the waiter's, qemu's. */
  private ownTasks(emulation: EmulationSpec | null, inCgroup: boolean): number {
    const waiter = this.layout.privileged && this.layout.execHelperPath !== null ? WAITER_TASKS : 0;
    return (inCgroup ? SANDBOX_TASKS : 0) + waiter + (emulation ? EMULATOR_TASKS : 0);
  }

  private async createRunCgroup(limits: ResourceLimits, emulation: EmulationSpec | null): Promise<RunCgroup | null> {
    if (!this.cgroups) return null;
    const tasks = limits.processes + this.ownTasks(emulation, true);
    for (let attempt = 0; ; attempt++) {
      const name = `${RUN_CGROUP_PREFIX}${process.pid}-${++runCounter}`;
      try {
        return await this.cgroups.create(name, { memoryBytes: limits.memoryBytes, tasks });
      } catch (err) {
        // A leftover of an earlier worker that had this pid: take the next number.
        if (!isErrno(err, 'EEXIST') || attempt >= MAX_NAME_ATTEMPTS) throw new InternalError('sandbox: cannot create the run cgroup', { cause: err });
      }
    }
  }

  /** The sandbox uid must be able to write in every directory of the input root (files stay as staged). */
  private async grantInputRoot(dir: string): Promise<void> {
    if (!this.layout.privileged) return;
    await chownDirectories(dir, this.settings.runAsUid, this.settings.runAsGid);
  }

  private async selfTest(): Promise<void> {
    const root = await mkdtemp(join(tmpdir(), 'remex-sandbox-selftest-'));
    try {
      const result = await this.run({
        inputRoot: root,
        workingDirectory: '',
        argv: ['/bin/sh', '-c', 'exit 7'],
        env: {},
        stdinPath: null,
        timeoutMs: 10_000,
        graceMs: 0,
        limits: { ...DEFAULT_LIMITS },
        emulation: null,
      });
      if (result.exitCode !== 7) {
        throw new UnavailableError(`sandbox self-test failed: ${result.stderr.toString('utf8').trim() || JSON.stringify({ exitCode: result.exitCode, signal: result.signal })}`);
      }
    } catch (err) {
      throw err instanceof UnavailableError ? err : new UnavailableError('sandbox self-test failed', { cause: err });
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  }
}

/** Empties the run's cgroup (stragglers get SIGKILL), then reads its final counters. */
async function settle(cgroup: RunCgroup): Promise<CgroupSample> {
  // Usually already empty: then the counters read alongside are final.
  const [pids, sample] = await Promise.all([cgroup.pids(), cgroup.sample()]);
  if (pids.length === 0) return sample;
  await cgroup.killAll();
  return cgroup.sample();
}

/**
 * Synchronous calls, a slice at a time: a run directory was just staged, so each is a few microseconds on
 * an inode in memory, where as promises each cost several times that in thread-pool hand-offs (and the
 * server's CPU is what the runs of a busy pool compete with). A huge tree still gives the event loop back
 * every {@link CHOWN_DIRECTORIES_PER_SLICE} directories.
 */
async function chownDirectories(root: string, uid: number, gid: number): Promise<void> {
  const pending = [root];
  for (let done = 1; pending.length > 0; done++) {
    const dir = pending.pop() as string;
    lchownSync(dir, uid, gid);
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) pending.push(join(dir, entry.name));
    }
    if (done % CHOWN_DIRECTORIES_PER_SLICE === 0) await setImmediate();
  }
}

/** bwrap exited before running the program: a bad working directory is the caller's; anything else is ours. */
function setupFailure(req: SandboxRequest, run: SupervisedRun): Error {
  const message = run.stderr.bytes().toString('utf8').trim();
  if (/Can't chdir to .*: (No such file or directory|Not a directory)/.test(message)) {
    return new InvalidArgumentError(`working directory ${JSON.stringify(req.workingDirectory)} does not exist in the input root`);
  }
  return new InternalError(`sandbox failed to start the program: ${message || `launcher exited with ${run.monitorExit.code}`}`);
}
