/**
 * `remex worker`: the worker loop linked to a server over HTTP, with a local blob cache, serving every
 * platform this host can run (natively, or under qemu-user where installed).
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import { FsBlobStore } from '../cas/fs/fs-blob-store.js';
import { HttpWorkerLink } from '../client/http-worker-link.js';
import { RemexClient } from '../client/remex-client.js';
import { RemoteBlobStore } from '../cas/remote/remote-blob-store.js';
import { canonicalPlatform } from '../core/platform.js';
import { UnsupportedPlatformError } from '../core/errors.js';
import { detectPlatformSupport } from './emulation.js';
import { BwrapSandbox } from './sandbox/bwrap/bwrap-sandbox.js';
import { Worker } from './worker.js';
import { REMOTE_WORKER_CACHE_MAX_BLOB_BYTES } from '../server/config.js';

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
}


export async function startRemoteWorker(opts: RemoteWorkerOptions): Promise<Worker> {
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
  const worker = new Worker({
    name: opts.name,
    slots: opts.slots,
    workRoot: join(opts.workDir, 'runs'),
    link: new HttpWorkerLink(client),
    blobs: new RemoteBlobStore(client, cache),
    sandbox: await BwrapSandbox.create({}),
    platforms,
    logger: opts.logger,
    ...(opts.leaseWaitMs !== undefined ? { leaseWaitMs: opts.leaseWaitMs } : {}),
  });
  await worker.start();
  return worker;
}
