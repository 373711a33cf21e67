/**
 * The composition root of `remex worker`: the worker loop linked to a server over HTTP, with a local blob
 * cache, serving every platform this host can run (natively, or under qemu-user where installed).
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import { FsBlobStore } from '../cas/fs/fs-blob-store.js';
import { HttpWorkerLink } from '../client/http-worker-link.js';
import { RemexClient } from '../client/remex-client.js';
import { RemoteBlobStore } from '../cas/remote/remote-blob-store.js';
import { canonicalPlatform } from '../core/platform.js';
import { isRemexError, UnsupportedPlatformError } from '../core/errors.js';
import { detectPlatformSupport } from '../worker/emulation.js';
import { BwrapSandbox } from '../worker/sandbox/bwrap/bwrap-sandbox.js';
import { Worker } from '../worker/worker.js';
import type { WorkerObserver } from '../worker/observer.js';
import type { InjectedFault } from '../worker/sandbox/sandbox.js';
import { REMOTE_WORKER_CACHE_MAX_BLOB_BYTES } from './config.js';

export interface RemoteWorkerOptions {
  /** One controller address, a comma-separated list, or an array: the worker moves on when one dies. */
  server: string | readonly string[];
  /** Worker token (sent as `Authorization: Bearer`). */
  token?: string;
  /** PEM CA certificate(s) to trust for https:// controllers. */
  ca?: string | Buffer;
  slots: number;
  name: string;
  workDir: string;
  platforms?: readonly string[];
  logger: Logger;
  leaseWaitMs?: number;
  labels?: Record<string, string>;
  instanceId?: string;
  pricePerHour?: number;
  observers?: readonly WorkerObserver[];
  /** The server ordered a drain; called once it has ended (the CLI exits then). */
  onDrainedByOrder?: () => void;
  /** No slot is left in service (its runs outlive their kill); called once it has left the server (the CLI exits non-zero). */
  onUnfit?: () => void;
  /** A fault injected on purpose, for the failsafe tests (worker/config.ts); never in service. */
  injectFault?: InjectedFault;
}

export interface RunningRemoteWorker {
  readonly id: string | undefined;
  readonly activeJobs: number;
  /**
   * Takes no new jobs, finishes and commits the running ones, leaves the server, closes the cache:
   * `drained`. While it waits the server is checked every second; when no controller can be reached the
   * worker leaves without it — its runs are stopped as a cancellation does, their leases left to expire
   * and be requeued — and the drain resolves `server-unreachable` once they are gone.
   */
  drain(): Promise<DrainOutcome>;
}

export type DrainOutcome = 'drained' | 'server-unreachable';

/** How often a draining worker checks that its server can still be reached. */
const REACHABILITY_CHECK_MS = 1_000;
/** A check waits this long for /healthz once connected (the connection itself: the client's 5 s). */
const REACHABILITY_TIMEOUT_MS = 5_000;

export async function startRemoteWorker(opts: RemoteWorkerOptions): Promise<RunningRemoteWorker> {
  const client = new RemexClient(opts.server, { token: opts.token, ca: opts.ca });
  client.onServerChange(({ from, to, reason }) => opts.logger.warn({ from, to, reason }, 'controller unreachable; moving to the next one (registering there again)'));
  const cache = new FsBlobStore({ root: join(opts.workDir, 'cache'), maxBlobBytes: REMOTE_WORKER_CACHE_MAX_BLOB_BYTES, fsync: false });
  let platforms = await detectPlatformSupport({});
  if (opts.platforms) {
    const wanted = opts.platforms.map(canonicalPlatform);
    const unavailable = wanted.filter((w) => !platforms.some((p) => p.platform === w));
    if (unavailable.length > 0) throw new UnsupportedPlatformError(`this host cannot run ${unavailable.join(', ')}`);
    platforms = platforms.filter((p) => wanted.includes(p.platform));
  }
  const blobs = new RemoteBlobStore(client, cache);
  let closing: Promise<void> | undefined;
  const drain = (worker: Worker): Promise<void> =>
    (closing ??= worker.drain().finally(() => blobs.close().catch((err: unknown) => opts.logger.warn({ err }, 'cannot close the blob cache'))));
  const worker: Worker = new Worker({
    name: opts.name,
    slots: opts.slots,
    workRoot: join(opts.workDir, 'runs'),
    link: new HttpWorkerLink(client),
    blobs,
    sandbox: await BwrapSandbox.create({}),
    platforms,
    logger: opts.logger,
    ...(opts.leaseWaitMs !== undefined ? { leaseWaitMs: opts.leaseWaitMs } : {}),
    ...(opts.labels ? { labels: opts.labels } : {}),
    ...(opts.instanceId !== undefined ? { instanceId: opts.instanceId } : {}),
    ...(opts.pricePerHour !== undefined ? { pricePerHour: opts.pricePerHour } : {}),
    ...(opts.observers ? { observers: opts.observers } : {}),
    onDrainOrdered: () => void drain(worker).then(() => opts.onDrainedByOrder?.()),
    onUnfit: (left) => void left.finally(() => opts.onUnfit?.()),
    ...(opts.injectFault ? { injectFault: opts.injectFault } : {}),
  });
  let leaving: Promise<DrainOutcome> | undefined;
  /** A fresh client (never contacted: one round over the controllers decides), so a dead server answers at once. */
  const reachable = async (): Promise<boolean> => {
    const probe = new RemexClient(opts.server, { token: opts.token, ca: opts.ca });
    try {
      await probe.request('GET', '/healthz', undefined, { timeoutMs: REACHABILITY_TIMEOUT_MS });
      return true;
    } catch (err) {
      return !isRemexError(err, 'UNAVAILABLE');
    } finally {
      probe.close();
    }
  };
  const drainOrLeave = async (w: Worker): Promise<DrainOutcome> => {
    let done = false;
    const drained = drain(w).then((): DrainOutcome => 'drained');
    const watched = (async (): Promise<DrainOutcome | undefined> => {
      while (!done) {
        if (!(await reachable())) {
          if (done) return undefined;
          opts.logger.warn({ server: opts.server }, 'draining, and the server cannot be reached: stopping the runs and leaving without it');
          await w.abandon();
          return 'server-unreachable';
        }
        await new Promise((r) => setTimeout(r, REACHABILITY_CHECK_MS));
      }
      return undefined;
    })();
    const outcome = await Promise.race([drained, watched.then((o) => o ?? drained)]);
    done = true;
    return outcome;
  };
  await worker.start();
  return {
    get id() {
      return worker.id;
    },
    get activeJobs() {
      return worker.activeJobs;
    },
    drain: () => (leaving ??= drainOrLeave(worker)),
  };
}
