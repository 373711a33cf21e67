/**
 * The embedded store: one SQLite file (better-sqlite3). This module composes the adapter — the driver
 * layer (connection.ts: the connection, its pragmas, migrations) and one file per port (job-store.ts,
 * action-cache.ts, worker-registry.ts). Calls are synchronous underneath; the ports stay async so
 * networked adapters fit behind them. See docs/decisions/0002-embedded-store-sqlite.md.
 */
import type Database from 'better-sqlite3';
import { SqliteLeaderLease } from './leader-lease.js';
import type { ActionCache, BlobReferences, ComparisonStore, JobStore, LogPieceIndex, LeaderLease, Store, WorkerRegistry } from '../ports.js';
import { SqliteActionCache } from './action-cache.js';
import { SqliteBlobReferences } from './blob-references.js';
import { SqliteComparisonStore } from './comparison-store.js';
import { openSqlite } from './connection.js';
import { SqliteJobStore } from './job-store.js';
import { SqliteWorkerRegistry } from './worker-registry.js';
import { SqliteLogPieceIndex } from './log-piece-index.js';

export interface SqliteStoreOptions {
  /** Database file, or ':memory:'. */
  path: string;
}

export class SqliteStore implements Store {
  readonly jobs: JobStore;
  readonly actionCache: ActionCache;
  readonly workers: WorkerRegistry;
  readonly leader: LeaderLease = new SqliteLeaderLease();
  readonly comparisons: ComparisonStore;
  readonly blobReferences: BlobReferences;
  readonly logPieces: LogPieceIndex;
  private readonly db: Database.Database;

  constructor(opts: SqliteStoreOptions) {
    this.db = openSqlite(opts.path);
    this.jobs = new SqliteJobStore(this.db);
    this.actionCache = new SqliteActionCache(this.db);
    this.workers = new SqliteWorkerRegistry(this.db);
    this.comparisons = new SqliteComparisonStore(this.db);
    this.blobReferences = new SqliteBlobReferences(this.db);
    this.logPieces = new SqliteLogPieceIndex(this.db);
  }

  async close(): Promise<void> {
    this.db.close();
  }
}
