/**
 * The composition root of `remex serve`: builds the store, the CAS, the event bus, the scheduler, the HTTP
 * front door and (unless `workers` is 0) the local worker pool, and wires them by constructor injection.
 * The embedded default needs nothing but a data directory: SQLite + filesystem CAS + bubblewrap.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { FsBlobStore } from '../cas/fs/fs-blob-store.js';
import type { ExecutionPolicy } from '../api/execution-request.js';
import { startGrpcServer } from '../api/grpc/grpc-server.js';
import type { RunningGrpcServer } from '../api/grpc/grpc-server.js';
import { buildHttpServer, DEFAULT_MAX_JSON_BODY_BYTES } from '../api/http/http-server.js';
import { DEFAULT_LIMITS, DEFAULT_TIMEOUT_MS } from '../core/limits.js';
import { InMemoryEventBus } from '../scheduler/event-bus.js';
import { Scheduler } from '../scheduler/scheduler.js';
import type { SchedulerOptions } from '../scheduler/scheduler.js';
import { SqliteStore } from '../store/sqlite/sqlite-store.js';
import { detectPlatformSupport } from '../worker/emulation.js';
import { BwrapSandbox } from '../worker/sandbox/bwrap-sandbox.js';
import { Worker } from '../worker/worker.js';
import { createLogger } from './logger.js';

export interface ServeOptions {
  host: string;
  port: number;
  dataDir: string;
  /** Slots of the built-in worker pool; 0 runs a controller with no local worker. */
  workerSlots: number;
  /** Restrict the local pool to these platforms (default: every platform this host can run). */
  localPlatforms?: readonly string[];
  maxBlobBytes: number;
  /** REAPI v2 gRPC port (0 picks a free one); absent: no gRPC front door. */
  grpcPort?: number;
  /** REAPI instance names accepted; absent: any. */
  instanceNames?: readonly string[];
  policy: ExecutionPolicy;
  scheduler: Partial<SchedulerOptions>;
  logger?: Logger;
}

export const DEFAULT_MAX_BLOB_BYTES = 4 * 1024 * 1024 * 1024;

export const DEFAULT_POLICY: Readonly<ExecutionPolicy> = Object.freeze({
  defaultTimeoutMs: DEFAULT_TIMEOUT_MS,
  maxTimeoutMs: 24 * 60 * 60 * 1000,
  defaultLimits: DEFAULT_LIMITS,
  maxLimits: {
    memoryBytes: 64 * 1024 * 1024 * 1024,
    processes: 4096,
    cpuTimeMs: 7 * 24 * 60 * 60 * 1000,
    fileSizeBytes: 64 * 1024 * 1024 * 1024,
    outputBytes: 64 * 1024 * 1024,
    tmpBytes: 16 * 1024 * 1024 * 1024,
    openFiles: 65_536,
  },
});

export interface RunningServer {
  readonly url: string;
  readonly port: number;
  readonly scheduler: Scheduler;
  readonly blobs: FsBlobStore;
  readonly http: FastifyInstance;
  /** The gRPC port when the REAPI front door runs. */
  readonly grpcPort: number | undefined;
  readonly localWorker: Worker | undefined;
  /** Drains the local pool (running jobs finish), then stops serving. */
  close(): Promise<void>;
}

export async function startServer(opts: ServeOptions): Promise<RunningServer> {
  const logger = opts.logger ?? createLogger();
  const store = new SqliteStore({ path: join(opts.dataDir, 'remex.db') });
  const blobs = new FsBlobStore({ root: join(opts.dataDir, 'cas'), maxBlobBytes: opts.maxBlobBytes });
  const events = new InMemoryEventBus();
  const scheduler = new Scheduler(store, blobs, events, opts.scheduler);
  // In-process workers of an earlier run of this server are gone with that process: requeue their jobs now
  // rather than after their leases expire.
  const localPrefix = `local:${hostname()}:${opts.dataDir}:`;
  await scheduler.start({ releaseOwnerPrefix: localPrefix });

  let localWorker: Worker | undefined;
  if (opts.workerSlots > 0) {
    const sandbox = await BwrapSandbox.create({});
    let platforms = await detectPlatformSupport({});
    if (opts.localPlatforms) {
      const wanted = new Set(opts.localPlatforms);
      platforms = platforms.filter((p) => wanted.has(p.platform));
    }
    localWorker = new Worker({
      id: `${localPrefix}${randomUUID()}`,
      name: `local@${hostname()}`,
      slots: opts.workerSlots,
      workRoot: join(opts.dataDir, 'runs'),
      link: scheduler,
      blobs,
      sandbox,
      platforms,
      logger: logger.child({ component: 'worker' }),
      onCancel: (workerId, listener) => scheduler.onCancel(workerId, listener),
    });
    await localWorker.start();
  }

  const http = await buildHttpServer({
    scheduler,
    blobs,
    logger,
    policy: opts.policy,
    maxJsonBodyBytes: DEFAULT_MAX_JSON_BODY_BYTES,
    describe: () => ({ localWorkerSlots: opts.workerSlots, activeLocalJobs: localWorker?.activeJobs ?? 0 }),
  });
  await http.listen({ host: opts.host, port: opts.port });
  const address = http.server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  const url = `http://${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${port}`;
  let grpc: RunningGrpcServer | undefined;
  if (opts.grpcPort !== undefined) {
    grpc = await startGrpcServer({
      scheduler,
      blobs,
      actionCache: store.actionCache,
      policy: opts.policy,
      logger,
      host: opts.host,
      port: opts.grpcPort,
      ...(opts.instanceNames ? { instanceNames: opts.instanceNames } : {}),
    });
  }
  logger.info({ url, grpcPort: grpc?.port, dataDir: opts.dataDir, workerSlots: opts.workerSlots }, 'remex serving');

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    scheduler,
    blobs,
    http,
    grpcPort: grpc?.port,
    localWorker,
    close: () =>
      (closing ??= (async () => {
        await localWorker?.drain();
        await grpc?.close();
        await scheduler.close();
        await http.close();
        await store.close();
      })()),
  };
}
