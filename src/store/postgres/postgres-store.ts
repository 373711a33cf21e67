/**
 * The networked store: PostgreSQL, shared by every controller. This module composes the adapter — the
 * driver layer (connection.ts: pool, prepared statements, retries, migrations) and one file per port
 * (job-store.ts, action-cache.ts, worker-registry.ts) — and owns its options and their defaults.
 * See docs/decisions/0006-postgres.md.
 */
import { PostgresLeaderLease } from './leader-lease.js';
import type { ActionCache, BlobReferences, ComparisonStore, JobStore, LogPieceIndex, LeaderLease, Store, WorkerRegistry } from '../ports.js';
import { PostgresActionCache } from './action-cache.js';
import { PostgresBlobReferences } from './blob-references.js';
import { PostgresComparisonStore } from './comparison-store.js';
import { PostgresDb } from './connection.js';
import type { PoolStats } from './connection.js';
import { PostgresJobStore } from './job-store.js';
import { PostgresWorkerRegistry } from './worker-registry.js';
import { PostgresLogPieceIndex } from './log-piece-index.js';

export interface PostgresStoreOptions {
  /** `postgres://user:password@host:port/database?…` (libpq URL; `sslmode` and the like are honoured). */
  url: string;
  /** PostgreSQL schema holding remex's tables; created when missing. Default `public`. */
  schema?: string;
  /** `application_name` of its connections, as pg_stat_activity shows them. Default `remex`. */
  applicationName?: string;
  /** Most connections this store opens at once. Default {@link DEFAULT_POOL_SIZE}. */
  poolSize?: number;
  /** How long opening one connection may take before the statement waiting for it fails UNAVAILABLE. Default {@link DEFAULT_CONNECT_TIMEOUT_MS}. */
  connectTimeoutMs?: number;
  /**
   * Errors of idle pooled connections (the server restarted, the network dropped): the pool discards such
   * a connection and opens another on next use; this only reports them. Default: ignored.
   */
  onConnectionError?: (err: Error) => void;
}

export const DEFAULT_POOL_SIZE = 10;
export const DEFAULT_SCHEMA = 'public';
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

export class PostgresStore implements Store {
  readonly jobs: JobStore;
  readonly actionCache: ActionCache;
  readonly workers: WorkerRegistry;
  readonly leader: LeaderLease;
  private readonly leaderLease: PostgresLeaderLease;
  readonly comparisons: ComparisonStore;
  readonly blobReferences: BlobReferences;
  readonly logPieces: LogPieceIndex;

  private constructor(
    private readonly db: PostgresDb,
    readonly schema: string,
  ) {
    this.jobs = new PostgresJobStore(db);
    this.actionCache = new PostgresActionCache(db);
    this.workers = new PostgresWorkerRegistry(db);
    this.leaderLease = new PostgresLeaderLease(db);
    this.leader = this.leaderLease;
    this.comparisons = new PostgresComparisonStore(db);
    this.blobReferences = new PostgresBlobReferences(db);
    this.logPieces = new PostgresLogPieceIndex(db);
  }

  /**
   * Connects and brings the schema up to date. Safe when several controllers start at once: migrations run
   * one controller at a time under an advisory lock, and each applies only versions not yet recorded.
   */
  static async open(opts: PostgresStoreOptions): Promise<PostgresStore> {
    const schema = opts.schema ?? DEFAULT_SCHEMA;
    const db = await PostgresDb.open({
      url: opts.url,
      schema,
      applicationName: opts.applicationName ?? 'remex',
      poolSize: opts.poolSize ?? DEFAULT_POOL_SIZE,
      connectTimeoutMs: opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      onConnectionError: opts.onConnectionError ?? (() => undefined),
    });
    return new PostgresStore(db, schema);
  }

  /** The connection pool now (open, idle, callers waiting). */
  poolStats(): PoolStats {
    return this.db.poolStats();
  }

  async close(): Promise<void> {
    await this.leaderLease.close();
    await this.db.close();
  }
}
