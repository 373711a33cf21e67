/**
 * Opens the adapters a controller runs on, chosen by configuration: the embedded default (SQLite file,
 * filesystem CAS, in-process event bus) or, for several controllers, PostgreSQL (store and LISTEN/NOTIFY
 * events) and an S3-compatible bucket. The rest of the server sees only the ports.
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { BlobStore } from '../cas/blob-store.js';
import { LatePins } from '../cas/fs/blob-usage.js';
import { FsBlobStore } from '../cas/fs/fs-blob-store.js';
import { S3BlobStore } from '../cas/s3/s3-blob-store.js';
import { InvalidArgumentError } from '../core/errors.js';
import type { EventBus } from '../events/event-bus.js';
import { InMemoryEventBus } from '../events/memory/in-memory-event-bus.js';
import { PostgresEventBus } from '../events/postgres/postgres-event-bus.js';
import type { Store } from '../store/ports.js';
import { PostgresStore } from '../store/postgres/postgres-store.js';
import type { PoolStats } from '../store/postgres/connection.js';
import { withRecentActionResults } from '../store/recent-action-results.js';
import { SqliteStore } from '../store/sqlite/sqlite-store.js';

export interface BackendOptions {
  dataDir: string;
  /** `postgres://…` for a shared database; absent: SQLite in the data directory. */
  databaseUrl?: string;
  /** `s3://bucket/prefix?endpoint=…` for a shared bucket, `file:///dir` or a path for a local directory; absent: `<data>/cas`. */
  blobsUrl?: string;
  maxBlobBytes: number;
  /** fsync each blob of a filesystem CAS before it becomes visible (see docs/decisions/0009-cas-durability.md). */
  casFsync?: boolean;
  /** Cap of a filesystem CAS (see FsBlobStore's eviction); ignored for S3 (its lifecycle rules do that: docs/deploy.md). */
  casMaxBytes?: number;
  casGraceMs?: number;
  logger: Logger;
  /** Told how late each job change announced by another controller arrived (PostgreSQL's event bus). */
  onEventLag?: (ms: number) => void;
}

export interface Backends {
  store: Store;
  blobs: BlobStore;
  events: EventBus;
  /** True when other controllers may share this state (PostgreSQL). */
  shared: boolean;
  /** The database's connection pool now (PostgreSQL; SQLite has none). */
  poolStats?: () => PoolStats;
  /** What a capped filesystem CAS must not evict: bound by the server once its scheduler exists. */
  pins: LatePins;
  close(): Promise<void>;
}

export async function openBackends(opts: BackendOptions): Promise<Backends> {
  const pins = new LatePins();
  const blobs = await openBlobs(opts, pins);
  if (opts.databaseUrl === undefined) {
    const store = withRecentActionResults(new SqliteStore({ path: join(opts.dataDir, 'remex.db') }));
    return { store, blobs, events: new InMemoryEventBus(), shared: false, pins, close: () => closeAll(store, blobs) };
  }
  if (!/^postgres(ql)?:\/\//.test(opts.databaseUrl)) throw new InvalidArgumentError('--database must be a postgres:// URL');
  const log = opts.logger.child({ component: 'postgres' });
  // The URL may hold a password: it is never logged, only the error's own text.
  const postgres = await PostgresStore.open({ url: opts.databaseUrl, onConnectionError: (err) => log.warn({ err: err.message }, 'database connection error') });
  const store = withRecentActionResults(postgres);
  const events = await PostgresEventBus.start({
    url: opts.databaseUrl,
    load: (id) => store.jobs.get(id),
    onError: (err) => log.warn({ err: err.message }, 'event bus connection error'),
    ...(opts.onEventLag ? { onNoticeLag: opts.onEventLag } : {}),
  });
  return {
    store,
    blobs,
    events,
    shared: true,
    poolStats: () => postgres.poolStats(),
    pins,
    close: async () => {
      await events.close();
      await closeAll(store, blobs);
    },
  };
}

async function openBlobs(opts: BackendOptions, pins: LatePins): Promise<BlobStore> {
  const url = opts.blobsUrl;
  const fsync = opts.casFsync ?? false;
  // Pins, the grace period and usage tracking serve the cap's eviction and the retention sweep's reclaim alike (decision 0047).
  const eviction = { pins, trackUsage: true, ...(opts.casMaxBytes !== undefined ? { maxBytes: opts.casMaxBytes } : {}), ...(opts.casGraceMs !== undefined ? { evictionGraceMs: opts.casGraceMs } : {}) };
  if (url === undefined) return new FsBlobStore({ root: join(opts.dataDir, 'cas'), maxBlobBytes: opts.maxBlobBytes, fsync, ...eviction });
  if (url.startsWith('s3://')) {
    if (opts.casMaxBytes !== undefined) throw new InvalidArgumentError('--cas-max-bytes caps a filesystem CAS; an S3 bucket is kept in size by its lifecycle rules (docs/deploy.md)');
    const store = S3BlobStore.fromUrl(url, { maxBlobBytes: opts.maxBlobBytes });
    // A wrong bucket would otherwise make every blob look absent: fail at start instead.
    await store.checkAccess();
    return store;
  }
  const root = url.startsWith('file://') ? new URL(url).pathname : url;
  if (root === '' || /^[a-z0-9+.-]+:\/\//i.test(root)) throw new InvalidArgumentError(`--blobs ${JSON.stringify(url)}: expected s3://…, file:///… or a directory`);
  return new FsBlobStore({ root, maxBlobBytes: opts.maxBlobBytes, fsync, ...eviction });
}

async function closeAll(store: Store, blobs: BlobStore): Promise<void> {
  await store.close();
  await blobs.close();
}
