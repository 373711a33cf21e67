/**
 * Starts sandbox launchers from a small helper process instead of from the server itself.
 *
 * Why: Node spawns with fork + exec, and fork copies the parent's page tables and makes every page of
 * it copy-on-write until the child execs. For a server holding a few hundred MB (V8 heap, gRPC
 * buffers, the CAS's caches) that cost 6–12 ms of CPU per sandbox, blocked the event loop for all of
 * it, and left the server taking page faults on its own heap afterwards. The spawner (spawner-process.ts)
 * is a Node process of ~50 MB that does nothing else, so the same spawn costs ~1 ms there and none of
 * it lands on the server's event loop.
 *
 * Where remex-exec was built the spawner is `remex-exec spawner`, a C process of a few hundred KB whose
 * forks cost less again (decision 0015); otherwise the Node one (spawner-link.ts has both).
 *
 * What stays the same: the launcher still execs bwrap with `--die-with-parent`, its parent is now the
 * spawner, and the spawner exits when the server does (its channel closes), which takes every sandbox
 * with it. The spawner runs as the server's user, in the server's cgroup, with a fixed minimal
 * environment; it inherits no descriptor the server did not mean to give it.
 *
 * If the spawner dies, runs in flight fail (their sandboxes die with it) and the next run starts a new one.
 */
import { InternalError, UnavailableError } from '../../../core/errors.js';
import { type SpawnerLink, type SpawnerLinkOptions, startSpawnerProcess } from './spawner-link.js';
import type { BwrapStatus, CapturedStream, FromSpawner, SpawnMessage, ToSpawner } from './spawner-protocol.js';

const START_TIMEOUT_MS = 30_000;

export type SpawnerOptions = SpawnerLinkOptions;

export type LaunchRequest = Omit<SpawnMessage, 'op' | 'id'>;

/** What happens to one launched process, in this order: spawned, status*, exit, close — or lost at any point. */
export interface LaunchEvents {
  onSpawned(pid: number): void;
  onStatus(status: BwrapStatus): void;
  onExit(code: number | null, signal: NodeJS.Signals | null): void;
  onClose(stdout: CapturedStream, stderr: CapturedStream): void;
  /** The launcher could not be started, or the spawner died: no further event comes. */
  onLost(error: Error): void;
}

export interface LaunchedProcess {
  /** SIGKILL the sandbox's init and the bwrap monitor, unless the monitor has exited. */
  kill(): void;
  /** Stop reading its output (the 'close' event follows). */
  closePipes(): void;
}

export class Spawner {
  private child: SpawnerLink | null = null;
  private starting: Promise<SpawnerLink> | null = null;
  /** Runs whose launcher has been asked for and not yet closed, with the spawner process that has them. */
  private readonly runs = new Map<number, { events: LaunchEvents; process: SpawnerLink | null }>();
  private nextId = 1;
  private closed = false;

  constructor(private readonly opts: SpawnerOptions) {}

  /** Starts the spawner process now (it is otherwise started by the first launch). */
  async start(): Promise<void> {
    await this.process();
  }

  launch(request: LaunchRequest, events: LaunchEvents): LaunchedProcess {
    const id = this.nextId++;
    const run: { events: LaunchEvents; process: SpawnerLink | null } = { events, process: null };
    this.runs.set(id, run);
    this.refChannel();
    const sendOrLose = (message: ToSpawner): void => {
      void this.process()
        .then((child) => {
          if (!this.runs.has(id)) return;
          // A run stays with the spawner that launched it; should that one die, the run is lost with it.
          run.process ??= child;
          if (run.process !== child) return;
          child.send(message, (err) => {
            if (err) this.lose(id, new InternalError('sandbox: the spawner did not take the request', { cause: err }));
          });
        })
        .catch((err: unknown) => this.lose(id, err instanceof Error ? err : new InternalError(String(err))));
    };
    sendOrLose({ op: 'spawn', id, ...request });
    return {
      kill: () => sendOrLose({ op: 'kill', id }),
      closePipes: () => sendOrLose({ op: 'close-pipes', id }),
    };
  }

  /** No new launches; the spawner process exits once the launched runs have closed. */
  close(): void {
    this.closed = true;
    this.stopIfIdle();
  }

  private process(): Promise<SpawnerLink> {
    if (this.child) return Promise.resolve(this.child);
    if (this.closed) return Promise.reject(new UnavailableError('sandbox is closed'));
    this.starting ??= this.spawnProcess().finally(() => (this.starting = null));
    return this.starting;
  }

  private spawnProcess(): Promise<SpawnerLink> {
    return new Promise((resolve, reject) => {
      let link: SpawnerLink;
      try {
        link = startSpawnerProcess(this.opts);
      } catch (err) {
        reject(new UnavailableError('sandbox: cannot start the spawner process', { cause: err }));
        return;
      }
      const child = link.child;
      let ready = false;
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new UnavailableError('sandbox: the spawner process did not start'));
      }, START_TIMEOUT_MS);
      link.onMessage((msg: FromSpawner) => {
        if (msg.ev === 'ready') {
          ready = true;
          clearTimeout(timer);
          this.child = link;
          this.refChannel();
          resolve(link);
        } else this.dispatch(msg);
      });
      child.once('error', (err) => {
        clearTimeout(timer);
        if (!ready) reject(new UnavailableError('sandbox: cannot start the spawner process', { cause: err }));
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        if (this.child === link) this.child = null;
        if (!ready) {
          reject(new UnavailableError(`sandbox: the spawner process exited at start (${signal ?? code})`));
          return;
        }
        // Its sandboxes died with it (--die-with-parent); their runs can only fail.
        for (const [id, run] of [...this.runs]) {
          if (run.process === link) this.lose(id, new InternalError(`sandbox: the spawner process exited (${signal ?? code}) during the run`));
        }
      });
      // Idle, it must not keep the server alive; refChannel() holds it while runs are in flight.
      child.unref();
      link.unref();
    });
  }

  private dispatch(msg: Exclude<FromSpawner, { ev: 'ready' }>): void {
    const events = this.runs.get(msg.id)?.events;
    if (!events) return;
    switch (msg.ev) {
      case 'spawned':
        events.onSpawned(msg.pid);
        break;
      case 'spawn-failed':
        this.lose(msg.id, new InternalError(`sandbox: cannot spawn the launcher: ${msg.message}`));
        break;
      case 'status':
        events.onStatus(msg.status);
        break;
      case 'exit':
        events.onExit(msg.code, msg.signal);
        break;
      case 'close':
        this.runs.delete(msg.id);
        this.stopIfIdle();
        events.onClose(msg.stdout, msg.stderr);
        break;
    }
  }

  private lose(id: number, error: Error): void {
    const events = this.runs.get(id)?.events;
    if (!events) return;
    this.runs.delete(id);
    this.stopIfIdle();
    events.onLost(error);
  }

  private refChannel(): void {
    if (this.runs.size > 0) this.child?.ref();
  }

  private stopIfIdle(): void {
    if (this.runs.size > 0) return;
    if (this.closed) {
      this.child?.end();
      this.child = null;
    } else {
      this.child?.unref();
    }
  }
}
