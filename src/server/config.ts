/**
 * Configuration of `remex serve` and `remex worker`, in one place: every default, and the step from
 * flags and environment to a validated configuration with units in its names. The CLI only parses flags
 * into {@link ServeFlags} / {@link WorkerFlags}; the composition roots only read the result.
 */
import { loadAutoscaleConfig } from '../autoscale/config.js';
import type { AutoscaleConfig } from '../autoscale/config.js';
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { ExecutionPolicy } from '../api/execution-request.js';
import { Authenticator, parseTokenList, readOwnToken, readTokenFile } from '../auth/tokens.js';
import { InvalidArgumentError } from '../core/errors.js';
import { parseDuration } from '../core/duration.js';
import { canonicalPlatform } from '../core/platform.js';
import { DEFAULT_LIMITS, DEFAULT_TIMEOUT_MS } from '../core/limits.js';
import { DEFAULT_MAX_LOG_CEILING_BYTES } from '../core/model.js';
import { DEFAULT_SCHEDULER_OPTIONS } from '../scheduler/scheduler.js';
import type { SchedulerOptions } from '../scheduler/scheduler.js';
import type { SchedulerObserver } from '../scheduler/observer.js';
import type { WorkerObserver } from '../worker/observer.js';
import type { Metrics } from '../metrics/metrics.js';
import type { LogFormat } from './defaults.js';
import { otlpTraceOptionsOf } from './otlp-traces.js';
import type { OtlpTraceOptions } from './otlp-traces.js';
import type { TlsFiles } from '../api/http/http-server.js';
import { loadTlsFiles } from './tls.js';

const GiB = 1024 * 1024 * 1024;
const HOUR_MS = 60 * 60 * 1000;

export const DEFAULT_MAX_BLOB_BYTES = 4 * GiB;

export const DEFAULT_POLICY: Readonly<ExecutionPolicy> = Object.freeze({
  defaultTimeoutMs: DEFAULT_TIMEOUT_MS,
  maxTimeoutMs: 24 * HOUR_MS,
  defaultLimits: DEFAULT_LIMITS,
  maxLimits: {
    memoryBytes: 64 * GiB,
    processes: 4096,
    cpuTimeMs: 7 * 24 * HOUR_MS,
    fileSizeBytes: 64 * GiB,
    outputBytes: 64 * 1024 * 1024,
    tmpBytes: 16 * GiB,
    openFiles: 65_536,
  },
});

export interface ServeOptions {
  host: string;
  port: number;
  dataDir: string;
  /** Slots of the built-in worker pool; 0 runs a controller with no local worker. */
  workerSlots: number;
  /** Restrict the local pool to these platforms (default: every platform this host can run). */
  localPlatforms?: readonly string[];
  maxBlobBytes: number;
  /** fsync every blob of a filesystem CAS (default off: see docs/decisions/0009-cas-durability.md). */
  casFsync?: boolean;
  /** Cap of a filesystem CAS, bytes: least recently used blobs are evicted past it (default: none). */
  casMaxBytes?: number;
  /** With a cap: a blob used or reported present less than this long ago is never evicted. */
  casGraceMs?: number;
  /** Finished jobs are removed this long after they finished (default 7 days: server/retention.ts). */
  retainMs?: number;
  /** `postgres://…`: share jobs, cache and registry with other controllers; absent: SQLite in `dataDir`. */
  databaseUrl?: string;
  /** `s3://bucket/prefix?endpoint=…` or a directory: the blob store; absent: `<dataDir>/cas`. */
  blobsUrl?: string;
  /** REAPI v2 gRPC port (0 picks a free one); absent: no gRPC front door. */
  grpcPort?: number;
  /** REAPI instance names accepted; absent: any. */
  instanceNames?: readonly string[];
  policy: ExecutionPolicy;
  scheduler: Partial<SchedulerOptions>;
  logger?: Logger;
  /** Client and worker tokens (hashed); absent or open: no authentication, loopback only (see `insecureOpen`). */
  auth?: Authenticator;
  /** Serve without tokens on a non-loopback host. Without it, such a server refuses to start. */
  insecureOpen?: boolean;
  /** Certificate chain and key (PEM) for HTTPS, WSS and gRPC over TLS. */
  tls?: TlsFiles;
  /**
   * Where the local pool makes run directories: 'auto' (default) a private directory on /dev/shm when it is
   * a roomy tmpfs, else `<dataDir>/runs` (see run-root.ts); 'data-dir' always the latter.
   */
  runDirectories?: 'auto' | 'data-dir';
  /**
   * The secret completion webhooks are signed with: several controllers share one. Absent: one made once
   * in `<dataDir>/webhook-secret` (mode 0600) and kept there.
   */
  webhookSecret?: string;
  /** What the local worker pool costs per hour (the operator's unit), for the cost of each job. */
  localPricePerHour?: number;
  /** Pools the autoscaler sizes (`--autoscale FILE`, validated at start: src/autoscale/config.ts). */
  autoscale?: AutoscaleConfig;
  /** Told what the scheduler and the local pool do (metrics, timelines, scaling). */
  observers?: { scheduler?: readonly SchedulerObserver[]; worker?: readonly WorkerObserver[] };
  /** The metrics registry to use (default: a new one); GET /metrics serves it. */
  metrics?: Metrics;
  /** Also serve /metrics, without tokens, on this port (0 picks one) — for a scraper on another network. */
  metricsPort?: number;
  /** The address of `metricsPort`'s listener (default: `host`). */
  metricsHost?: string;
  /** Export each execution's spans by OTLP/HTTP JSON (from `OTEL_EXPORTER_OTLP_ENDPOINT`); absent: no tracing cost at all. */
  otlpTraces?: OtlpTraceOptions;
}

import { parseSize } from './cas-options.js';

// The flag defaults live apart, where the CLI reads them without loading the server.
export { defaultSlots, SERVE_DEFAULTS, WORKER_DEFAULTS } from './defaults.js';

/** `remex serve`'s flags as commander parses them (numbers already checked to be numbers). */
export interface ServeFlags {
  host: string;
  port: number;
  data: string;
  workers: number;
  platform: string[];
  acceptPlatform: string[];
  leaseTimeout: number;
  maxAttempts: number;
  grpcPort: number;
  grpc: boolean;
  instanceName: string[];
  database?: string;
  blobs?: string;
  casFsync: boolean;
  casMaxBytes?: string;
  casGrace?: string;
  retain?: string;
  maxLogCeiling?: string;
  runDirectories: 'auto' | 'data-dir';
  clientTokenFile?: string;
  workerTokenFile?: string;
  insecureOpen: boolean;
  tlsCert?: string;
  tlsKey?: string;
  pricePerHour?: number;
  autoscale?: string;
  webhookSecretFile?: string;
  metricsPort?: number;
  metricsHost?: string;
  logLevel?: string;
  logFormat?: LogFormat;
  /** A job's failsafe when its submitter gave none (`90s`, `5m`): past max-runtime, the failsafe layers end it. */
  failsafe?: string;
  /** `PLATFORM=PRICE` (repeatable): the price per hour of a platform's workers that report none. */
  platformPrice?: string[];
}

const serveFlagsSchema = z
  .object({
    port: z.number().int().min(0).max(65_535),
    grpcPort: z.number().int().min(0).max(65_535),
    workers: z.number().int().min(0).max(4096),
    leaseTimeout: z.number().positive().max(24 * 60 * 60),
    maxAttempts: z.number().int().min(0).max(1000),
    metricsPort: z.number().int().min(0).max(65_535).optional(),
    tlsCert: z.string().optional(),
    tlsKey: z.string().optional(),
  })
  .refine((f) => (f.tlsCert === undefined) === (f.tlsKey === undefined), { message: '--tls-cert and --tls-key go together' });

/**
 * Flags and environment (`REMEX_CLIENT_TOKENS`, `REMEX_WORKER_TOKENS`, removed once read so nothing this
 * process starts inherits them) → the server's configuration. Throws InvalidArgumentError naming the flag.
 */
export function serveConfig(flags: ServeFlags, env: NodeJS.ProcessEnv, logger: Logger): ServeOptions {
  const checked = serveFlagsSchema.safeParse(flags);
  if (!checked.success) {
    const issue = checked.error.issues[0];
    const flag = issue?.path.length ? `--${String(issue.path[0]).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}: ` : '';
    throw new InvalidArgumentError(`${flag}${issue?.message ?? 'invalid flags'}`);
  }
  const clientTokens = serverTokens(flags.clientTokenFile, 'REMEX_CLIENT_TOKENS', env, logger);
  const workerTokens = serverTokens(flags.workerTokenFile, 'REMEX_WORKER_TOKENS', env, logger);
  const auth = clientTokens.length + workerTokens.length > 0 ? Authenticator.fromTokens({ client: clientTokens, worker: workerTokens }) : Authenticator.open();
  clientTokens.length = 0;
  workerTokens.length = 0;
  const loaded = flags.tlsCert !== undefined && flags.tlsKey !== undefined ? loadTlsFiles(flags.tlsCert, flags.tlsKey) : undefined;
  if (loaded) {
    logger.info({ subjectAltName: loaded.subjectAltName, validTo: loaded.validTo }, 'TLS certificate');
    if (loaded.expired) logger.warn({ validTo: loaded.validTo }, 'the TLS certificate has expired: clients will refuse it');
  }
  const otlpTraces = otlpTraceOptionsOf(env);
  // The URL's origin and path only: credentials in it, like the headers, are never logged.
  if (otlpTraces) logger.info({ url: safeUrl(otlpTraces.url) }, 'exporting execution traces (OTLP/HTTP JSON)');
  return {
    host: flags.host,
    port: flags.port,
    dataDir: resolve(flags.data),
    workerSlots: flags.workers,
    ...(flags.platform.length ? { localPlatforms: flags.platform } : {}),
    maxBlobBytes: DEFAULT_MAX_BLOB_BYTES,
    ...(flags.database !== undefined ? { databaseUrl: flags.database } : {}),
    ...(flags.blobs !== undefined ? { blobsUrl: flags.blobs } : {}),
    casFsync: flags.casFsync,
    ...(flags.casMaxBytes !== undefined ? { casMaxBytes: parseSize(flags.casMaxBytes, '--cas-max-bytes') } : {}),
    ...(flags.casGrace !== undefined ? { casGraceMs: parseDuration(flags.casGrace, '--cas-grace') } : {}),
    ...(flags.retain !== undefined ? { retainMs: parseDuration(flags.retain, '--retain') } : {}),
    runDirectories: flags.runDirectories,
    ...(flags.pricePerHour !== undefined ? { localPricePerHour: flags.pricePerHour } : {}),
    ...(flags.autoscale !== undefined ? { autoscale: loadAutoscaleConfig(flags.autoscale) } : {}),
    ...webhookSecretOf(flags.webhookSecretFile, env),
    ...(flags.grpc ? { grpcPort: flags.grpcPort } : {}),
    ...(flags.metricsPort !== undefined ? { metricsPort: flags.metricsPort } : {}),
    ...(flags.metricsHost !== undefined ? { metricsHost: flags.metricsHost } : {}),
    ...(otlpTraces ? { otlpTraces } : {}),
    ...(flags.instanceName.length ? { instanceNames: flags.instanceName } : {}),
    policy: flags.maxLogCeiling !== undefined ? { ...DEFAULT_POLICY, maxLogCeilingBytes: maxLogCeilingOf(flags.maxLogCeiling) } : DEFAULT_POLICY,
    scheduler: {
      ...schedulerTimings(flags.acceptPlatform, flags.leaseTimeout),
      maxAttempts: Math.max(1, flags.maxAttempts),
      ...(flags.failsafe !== undefined ? { failsafeMs: parseDuration(flags.failsafe, '--failsafe') } : {}),
      ...(flags.platformPrice?.length ? { platformPrices: platformPrices(flags.platformPrice) } : {}),
    },
    logger,
    auth,
    insecureOpen: flags.insecureOpen,
    ...(loaded ? { tls: { cert: loaded.cert, key: loaded.key } } : {}),
  };
}

/**
 * `--max-log-ceiling`: the highest live-log ceiling a job may ask for (one asking more is refused, not
 * lowered). At most what a worker's sandbox keeps of a stream (1 GiB: it counts the rest).
 */
export function maxLogCeilingOf(text: string): number {
  const bytes = parseSize(text, '--max-log-ceiling');
  if (bytes > DEFAULT_MAX_LOG_CEILING_BYTES) throw new InvalidArgumentError(`--max-log-ceiling: at most 1G (what a worker's sandbox keeps of a stream), not ${text}`);
  return bytes;
}

/**
 * Heartbeats and the silence that declares a worker gone follow the lease length, so a short lease (tests,
 * latency-sensitive deployments) never expires between two heartbeats of a live worker.
 */
export function schedulerTimings(acceptPlatforms: readonly string[], leaseSeconds: number): Partial<SchedulerOptions> {
  const leaseTimeoutMs = Math.round(leaseSeconds * 1000);
  const heartbeatIntervalMs = Math.max(100, Math.min(DEFAULT_SCHEDULER_OPTIONS.heartbeatIntervalMs, Math.floor(leaseTimeoutMs / 4)));
  const workerSilenceMs = Math.min(DEFAULT_SCHEDULER_OPTIONS.workerSilenceMs, Math.max(leaseTimeoutMs, 3 * heartbeatIntervalMs));
  const reaperIntervalMs = Math.min(DEFAULT_SCHEDULER_OPTIONS.reaperIntervalMs, heartbeatIntervalMs);
  return { acceptPlatforms, leaseTimeoutMs, heartbeatIntervalMs, workerSilenceMs, reaperIntervalMs };
}

/** `--webhook-secret-file`, else `REMEX_WEBHOOK_SECRET` (taken out of the environment), else none given. */
function webhookSecretOf(file: string | undefined, env: NodeJS.ProcessEnv): { webhookSecret?: string } {
  const fromEnv = env.REMEX_WEBHOOK_SECRET;
  delete env.REMEX_WEBHOOK_SECRET;
  const secret = file !== undefined ? readOwnToken(file) : fromEnv?.trim();
  if (secret === undefined || secret === '') return {};
  if (secret.length < 16) throw new InvalidArgumentError('the webhook secret must be at least 16 characters');
  return { webhookSecret: secret };
}

/** A URL without its credentials or query, for a log line; `(invalid URL)` when it is not one. */
function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}

/** The server's tokens for one scope: its token file and its environment variable, together. */
function serverTokens(file: string | undefined, envName: string, env: NodeJS.ProcessEnv, logger: Logger): string[] {
  const fromEnv = env[envName];
  delete env[envName];
  const tokens = fromEnv ? parseTokenList(fromEnv, envName) : [];
  if (file !== undefined) {
    const read = readTokenFile(file);
    if (read.looseMode) logger.warn({ file, mode: read.looseMode }, 'token file is readable by other users; chmod 600 it');
    tokens.push(...read.tokens);
  }
  return tokens;
}

/**
 * The largest blob a remote worker's local cache takes. The cache can always be refilled from the
 * server: losing a blob to a crash costs a download, not data (so it is not fsynced either).
 */
export const REMOTE_WORKER_CACHE_MAX_BLOB_BYTES = 64 * GiB;

/** `--platform-price x86_64-linux-cpu=0.0336` (repeatable) → a price per canonical platform; a bad entry is named. */
export function platformPrices(entries: readonly string[]): Record<string, number> {
  const prices: Record<string, number> = {};
  for (const entry of entries) {
    const at = entry.lastIndexOf('=');
    const price = Number(entry.slice(at + 1));
    if (at <= 0 || entry.slice(at + 1).trim() === '' || !Number.isFinite(price) || price < 0) {
      throw new InvalidArgumentError(`--platform-price ${JSON.stringify(entry)}: give PLATFORM=PRICE, the price a number, 0 or more (x86_64-linux-cpu=0.0336)`);
    }
    const platform = canonicalPlatform(entry.slice(0, at));
    if (platform in prices) throw new InvalidArgumentError(`--platform-price: ${platform} is given twice`);
    prices[platform] = price;
  }
  return prices;
}
