/**
 * The composition root of `remex serve`: builds the store, the CAS, the event bus, the scheduler, the HTTP
 * front door and (unless `workers` is 0) the local worker pool, and wires them by constructor injection.
 * The embedded default needs nothing but a data directory: SQLite + filesystem CAS + bubblewrap.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { hostname } from 'node:os';
import type { FastifyInstance } from 'fastify';
import { Authenticator, isLoopbackHost } from '../auth/tokens.js';
import { RemexError } from '../core/errors.js';
import type { ActionCache } from '../store/ports.js';
import type { BlobStore } from '../cas/blob-store.js';
import { isBlobReclaimer } from '../cas/blob-store.js';
import { startGrpcServer } from '../api/grpc/grpc-server.js';
import { WebhookNotifier } from '../api/webhook-notifier.js';
import { FsLogStore } from '../logs/fs-log-store.js';
import { CasLogStore } from '../logs/cas-log-store.js';
import { LogIntake } from '../logs/log-intake.js';
import type { RunningGrpcServer } from '../api/grpc/grpc-server.js';
import { buildHttpServer, DEFAULT_MAX_JSON_BODY_BYTES } from '../api/http/http-server.js';
import { LiveStats } from '../api/live-stats.js';
import { ComparisonRunner } from '../compare/runner.js';
import { JobInputPins } from './job-pins.js';
import { DEFAULT_RETAIN_MS, RetentionSweep } from './retention.js';
import { Scheduler } from '../scheduler/scheduler.js';
import type { FleetStatus } from '../scheduler/scheduler.js';
import { openBackends } from './backends.js';
import { detectPlatformSupport } from '../worker/emulation.js';
import { BwrapSandbox } from '../worker/sandbox/bwrap/bwrap-sandbox.js';
import { Worker } from '../worker/worker.js';
import { createLogger } from './logger.js';
import { executionLog } from './execution-log.js';
import { otlpTraceExporter } from './otlp-traces.js';
import { Metrics } from '../metrics/metrics.js';
import { eventBusLagMetric, grpcCallMetrics, httpRequestMetrics, meteredBlobStore, storePoolMetric, workerMetrics } from '../metrics/door-metrics.js';
import { schedulerMetrics } from '../metrics/scheduler-metrics.js';
import { startMetricsServer } from '../metrics/metrics-server.js';
import type { RunningMetricsServer } from '../metrics/metrics-server.js';
import type { ServeOptions } from './config.js';

// Where they were first defined; config.ts holds them now.
export { DEFAULT_MAX_BLOB_BYTES, DEFAULT_POLICY } from './config.js';
export type { ServeOptions } from './config.js';
import { chooseRunRoot } from './run-root.js';
import { autoscalerMetrics, createAutoscaler, startAutoscaler } from './autoscaler.js';
import type { RunRoot } from './run-root.js';

/**
 * The webhook secret kept in the data directory: made once (random, mode 0600), then read at every start,
 * so receivers keep trusting the same one across restarts.
 */
async function keptWebhookSecret(dataDir: string): Promise<string> {
  const path = join(dataDir, 'webhook-secret');
  await mkdir(dataDir, { recursive: true });
  try {
    await writeFile(path, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  return (await readFile(path, 'utf8')).trim();
}

/** How a server lets callers in, as its start-up log says. */
export type AuthMode = 'tokens' | 'open-loopback' | 'open-insecure';

export interface RunningServer {
  readonly url: string;
  readonly port: number;
  readonly scheduler: Scheduler;
  readonly blobs: BlobStore;
  /** The action cache both doors share (the gRPC door is composed from it). */
  readonly actionCache: ActionCache;
  readonly http: FastifyInstance;
  /** The gRPC port when the REAPI front door runs. */
  readonly grpcPort: number | undefined;
  readonly localWorker: Worker | undefined;
  readonly authMode: AuthMode;
  /** One line for people: the authentication mode and TLS. */
  readonly securitySummary: string;
  /** The server's metrics (GET /metrics): other components register their gauges here. */
  readonly metrics: Metrics;
  /** The port of `--metrics-port`'s listener, when there is one. */
  readonly metricsPort: number | undefined;
  /** Drains the local pool (running jobs finish), then stops serving. */
  close(): Promise<void>;
}

/**
 * Decides the authentication mode, refusing an open server on an address other hosts can reach unless
 * the operator said so.
 */
export function authModeOf(host: string, auth: Authenticator, insecureOpen: boolean): AuthMode {
  if (auth.enabled) return 'tokens';
  if (isLoopbackHost(host)) return 'open-loopback';
  if (insecureOpen) return 'open-insecure';
  throw new RemexError(
    'FAILED_PRECONDITION',
    `refusing to serve ${host} without authentication: give --client-token-file and --worker-token-file ` +
      '(and --tls-cert/--tls-key), listen on 127.0.0.1, or pass --insecure-open to serve it open to anyone who can reach it',
  );
}

function describeSecurity(mode: AuthMode, auth: Authenticator, host: string, tls: boolean): string {
  const plural = (n: number, what: string) => `${n} ${what} token${n === 1 ? '' : 's'}`;
  const transport = tls ? 'TLS on' : 'no TLS';
  switch (mode) {
    case 'tokens': {
      const { client, worker } = auth.counts;
      return `authentication: tokens required (${plural(client, 'client')}, ${plural(worker, 'worker')}${worker === 0 ? ': remote workers cannot register' : ''}); ${transport}`;
    }
    case 'open-loopback':
      return `authentication: OFF, open to every local user (${host} is loopback only); ${transport}`;
    case 'open-insecure':
      return `authentication: OFF (--insecure-open): anyone who can reach ${host} can run programs and read results; ${transport}`;
  }
}

export async function startServer(opts: ServeOptions): Promise<RunningServer> {
  const logger = opts.logger ?? createLogger();
  const auth = opts.auth ?? Authenticator.open();
  const authMode = authModeOf(opts.host, auth, opts.insecureOpen ?? false);
  const metrics = opts.metrics ?? new Metrics();
  const backends = await openBackends({
    ...(opts.databaseUrl !== undefined ? { onEventLag: eventBusLagMetric(metrics) } : {}),
    dataDir: opts.dataDir,
    ...(opts.databaseUrl !== undefined ? { databaseUrl: opts.databaseUrl } : {}),
    ...(opts.blobsUrl !== undefined ? { blobsUrl: opts.blobsUrl } : {}),
    maxBlobBytes: opts.maxBlobBytes,
    ...(opts.casFsync !== undefined ? { casFsync: opts.casFsync } : {}),
    ...(opts.casMaxBytes !== undefined ? { casMaxBytes: opts.casMaxBytes } : {}),
    ...(opts.casGraceMs !== undefined ? { casGraceMs: opts.casGraceMs } : {}),
    logger,
  });
  const { store, blobs, events } = backends;
  // The fleet gauges read the scheduler, made below, when scraped.
  let scheduler: Scheduler;
  const schedulerObserver = schedulerMetrics(metrics, { status: () => scheduler.status(), workers: () => scheduler.workers() });
  if (backends.poolStats) storePoolMetric(metrics, backends.poolStats);
  const traces = opts.otlpTraces ? otlpTraceExporter(opts.otlpTraces, logger.child({ component: 'otlp' })) : undefined;
  // Undone in reverse if a later step fails (a port in use, no sandbox): a server that could not start
  // must not keep its database, workers or other listener open, or the process never exits.
  const started: Array<() => Promise<void>> = [async () => backends.close()];
  try {
    // The dashboard's charts; the scheduler feeds them, it samples the scheduler's queue.
    const liveStats: LiveStats = new LiveStats({ sample: async (): Promise<FleetStatus> => (await scheduler.status()).fleet, logger: logger.child({ component: 'live-stats' }) });
    const autoscaler = opts.autoscale ? createAutoscaler(opts.autoscale, opts.dataDir, logger) : undefined;
    if (autoscaler) autoscalerMetrics(metrics, autoscaler);
    const schedulerLogger = logger.child({ component: 'scheduler' });
    scheduler = new Scheduler(store, blobs, events, opts.scheduler, Date.now, {
      logger: schedulerLogger,
      observers: [schedulerObserver, executionLog(schedulerLogger), ...(traces ? [traces] : []), ...(opts.observers?.scheduler ?? []), liveStats.observer, ...(autoscaler ? [autoscaler.observer] : [])],
    });
    // Running long jobs' live logs: on this controller's disk while they run (decision 0021), or, for controllers
    // sharing a database and a CAS, pieces in the CAS indexed in the database, read by any of them (decision 0043).
    const logs = opts.databaseUrl !== undefined && opts.blobsUrl !== undefined ? new CasLogStore(blobs, store.logPieces) : new FsLogStore(join(opts.dataDir, 'logs'));
    const logIntake = new LogIntake(logs, events, Date.now, (err, jobId) => logger.warn({ err, jobId }, 'cannot remove an ended job\'s live log'));
    scheduler.logIntake = logIntake;
    started.push(async () => {
      logIntake.close();
      await logs.close();
    });
    // In-process workers of an earlier run of this server are gone with that process: requeue their jobs now
    // rather than after their leases expire.
    const localPrefix = `local:${hostname()}:${opts.dataDir}:`;
    await scheduler.start({ releaseOwnerPrefix: localPrefix });
    started.push(() => scheduler.close());
    liveStats.start();
    started.push(async () => liveStats.close());
    // Eviction keeps what queued and running jobs need (a capped filesystem CAS asks when it evicts).
    backends.pins.bind(new JobInputPins(store.jobs, blobs));
    const retention = new RetentionSweep(store.jobs, {
      retainMs: opts.retainMs ?? DEFAULT_RETAIN_MS,
      logger: logger.child({ component: 'retention' }),
      blobs: { references: store.blobReferences, store: blobs, ...(isBlobReclaimer(blobs) ? { reclaimer: blobs } : {}) },
    });
    retention.start();
    started.push(() => retention.close());
    const notifier = new WebhookNotifier(events, { secret: opts.webhookSecret ?? (await keptWebhookSecret(opts.dataDir)), logger: logger.child({ component: 'webhooks' }) });
    started.push(async () => notifier.close());

    let localWorker: Worker | undefined;
    let runRoot: RunRoot | undefined;
    if (opts.workerSlots > 0) {
      const root = (runRoot = await chooseRunRoot({ dataDir: opts.dataDir, mode: opts.runDirectories ?? 'auto' }));
      started.push(() => root.dispose());
      logger.info({ runDirectories: runRoot.path, kind: runRoot.kind, ...(runRoot.reason ? { reason: runRoot.reason } : {}) }, 'local run directories');
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
        workRoot: runRoot.path,
        link: scheduler,
        blobs,
        sandbox,
        platforms,
        logger: logger.child({ component: 'worker' }),
        onCancel: (workerId, listener) => scheduler.onCancel(workerId, listener),
        observers: [workerMetrics(metrics), ...(opts.observers?.worker ?? [])],
        ...(opts.localPricePerHour !== undefined ? { pricePerHour: opts.localPricePerHour } : {}),
      });
      await localWorker.start();
      const worker = localWorker;
      started.push(() => worker.drain());
    }

    const comparisons = new ComparisonRunner({
      store: store.comparisons,
      blobs,
      waitForTerminal: (id, signal) => scheduler.waitForTerminal(id, signal),
      logger: logger.child({ component: 'comparisons' }),
    });
    started.push(() => comparisons.close());

    // What comes in and goes out through the doors is counted; the local pool reads the store directly.
    const doorBlobs = meteredBlobStore(metrics, blobs);
    const http = await buildHttpServer({
      scheduler,
      blobs: doorBlobs,
      metrics,
      onRequestDone: httpRequestMetrics(metrics),
      logger,
      policy: opts.policy,
      maxJsonBodyBytes: DEFAULT_MAX_JSON_BODY_BYTES,
      describe: () => ({ localWorkerSlots: opts.workerSlots, activeLocalJobs: localWorker?.activeJobs ?? 0 }),
      auth,
      logs,
      actionCache: store.actionCache,
      ...(opts.tls ? { tls: opts.tls } : {}),
      liveStats,
      ...(autoscaler ? { autoscaler: () => autoscaler.state() } : {}),
      comparisons,
    });
    started.push(() => http.close());
    await http.listen({ host: opts.host, port: opts.port });
    const address = http.server.address();
    const port = typeof address === 'object' && address ? address.port : opts.port;
    const url = `${opts.tls ? 'https' : 'http'}://${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${port}`;
    let grpc: RunningGrpcServer | undefined;
    if (opts.grpcPort !== undefined) {
      grpc = await startGrpcServer({
        scheduler,
        blobs: doorBlobs,
        onCallDone: grpcCallMetrics(metrics),
        actionCache: store.actionCache,
        policy: opts.policy,
        logger,
        host: opts.host,
        port: opts.grpcPort,
        auth,
        ...(opts.tls ? { tls: opts.tls } : {}),
        ...(opts.instanceNames ? { instanceNames: opts.instanceNames } : {}),
      });
    }
    const scaler = autoscaler ? startAutoscaler(autoscaler, { scheduler, store, url }) : undefined;
    if (scaler) started.push(() => scaler.close());
    let metricsServer: RunningMetricsServer | undefined;
    if (opts.metricsPort !== undefined) {
      const listening = (metricsServer = await startMetricsServer(metrics, opts.metricsHost ?? opts.host, opts.metricsPort));
      started.push(() => listening.close());
    }
    logger.info({ url, grpcPort: grpc?.port, metricsPort: metricsServer?.port, dataDir: opts.dataDir, workerSlots: opts.workerSlots }, 'remex serving');
    const securitySummary = describeSecurity(authMode, auth, opts.host, opts.tls !== undefined);
    if (authMode === 'open-insecure') logger.warn({ authMode }, securitySummary);
    else logger.info({ authMode }, securitySummary);
    if (authMode === 'tokens' && !opts.tls && !isLoopbackHost(opts.host)) {
      logger.warn('tokens travel in clear text: give --tls-cert and --tls-key unless a TLS proxy fronts this server');
    }
    let closing: Promise<void> | undefined;
    return {
      url,
      port,
      scheduler,
      blobs,
      actionCache: store.actionCache,
      http,
      grpcPort: grpc?.port,
      localWorker,
      authMode,
      securitySummary,
      metrics,
      metricsPort: metricsServer?.port,
      close: () =>
        (closing ??= (async () => {
          // The autoscaled workers drain first, while the server still answers them.
          await scaler?.close();
          await comparisons.close();
          await localWorker?.drain();
          await runRoot?.dispose().catch((err: unknown) => logger.warn({ err }, 'cannot remove the run directories'));
          await grpc?.close();
          await metricsServer?.close();
          notifier.close();
          liveStats.close();
          await scheduler.close();
          await traces?.close();
          await http.close();
          await backends.close();
        })()),
    };
  } catch (err) {
    for (const undo of started.reverse()) {
      await undo().catch((cleanupErr: unknown) => logger.warn({ err: cleanupErr }, 'while stopping a server that failed to start'));
    }
    throw err;
  }
}
