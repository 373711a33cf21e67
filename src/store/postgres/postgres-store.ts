/**
 * The networked store: PostgreSQL through a `pg` pool, shared by every controller. Each state change is
 * one compare-and-set statement (`UPDATE … WHERE state … AND attempt … AND lease_owner …`), so controllers
 * need no coordination beyond the database: claims take the head of a queue with `FOR UPDATE SKIP LOCKED`
 * (two controllers never hand one job to two workers, and never wait for each other), the in-flight merge
 * is a unique partial index with `ON CONFLICT DO NOTHING`, and lease expiry skips rows another controller
 * holds at that moment (the next reaper tick sees them). See docs/decisions/0006-postgres.md.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import type { Pool, PoolClient, QueryResultRow } from 'pg';
import type { Digest } from '../../core/digest.js';
import { isRemexError, UnavailableError } from '../../core/errors.js';
import type { JobFailure, JobState, RunReport } from '../../core/model.js';
import type {
  ActionCache,
  HeldLease,
  JobRecord,
  JobStore,
  LeaseExpiry,
  NewJob,
  Outcome,
  PlatformOffer,
  Store,
  WorkerRecord,
  WorkerRegistry,
} from '../ports.js';
import { NEW_JOB_COLUMNS, newJobValues } from '../new-job-row.js';
import type { NewJobColumn } from '../new-job-row.js';
import { POSTGRES_MIGRATIONS } from './postgres-schema.js';
import { StatementBatcher } from './statement-batcher.js';

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
/** A statement that deadlocked or lost a serialization race is run again this many times in all. */
const MAX_TRANSIENT_ATTEMPTS = 5;

/** Anything a statement can run on: the pool (autocommit) or a client inside a transaction. */
type Queryable = Pick<Pool, 'query'> | PoolClient;

export class PostgresStore implements Store {
  readonly jobs: JobStore;
  readonly actionCache: ActionCache;
  readonly workers: WorkerRegistry;
  private closed = false;

  private constructor(
    private readonly db: Db,
    readonly schema: string,
  ) {
    this.jobs = new PostgresJobStore(db);
    this.actionCache = new PostgresActionCache(db);
    this.workers = new PostgresWorkerRegistry(db);
  }

  /**
   * Connects and brings the schema up to date. Safe when several controllers start at once: migrations run
   * one controller at a time under an advisory lock, and each applies only versions not yet recorded.
   */
  static async open(opts: PostgresStoreOptions): Promise<PostgresStore> {
    const schema = opts.schema ?? DEFAULT_SCHEMA;
    const poolSize = opts.poolSize ?? DEFAULT_POOL_SIZE;
    if (!Number.isInteger(poolSize) || poolSize < 1) throw new RangeError(`poolSize must be a positive integer, got ${poolSize}`);
    const quoted = quoteIdent(schema);
    const pool = new pg.Pool({
      connectionString: opts.url,
      max: poolSize,
      application_name: opts.applicationName ?? 'remex',
      connectionTimeoutMillis: opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      keepAlive: true,
    });
    const onError = opts.onConnectionError ?? (() => undefined);
    // Without a listener an idle connection's error (server restart) would crash the process.
    pool.on('error', (err) => onError(err));
    const db = new Db(pool, quoted);
    try {
      await migrate(db, schema);
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw toStoreError(err);
    }
    return new PostgresStore(db, schema);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.db.pool.end();
  }
}

/** Applies the migrations not yet recorded, in one transaction under a lock keyed by the schema. */
async function migrate(db: Db, schema: string): Promise<void> {
  await db.tx(async (c) => {
    // Transaction-scoped: released by COMMIT or ROLLBACK, and by the server if this connection dies.
    await c.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`remex:migrate:${schema}`]);
    // Looked up before creating: CREATE … IF NOT EXISTS checks the privilege to create first, and a role
    // that only uses a schema its owner migrated has none.
    const [exists] = (await c.query<{ schema: boolean; table: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS schema, to_regclass($2) IS NOT NULL AS table`,
      [schema, `${db.schema}.remex_migrations`],
    )).rows;
    if (!exists?.schema) await c.query(`CREATE SCHEMA ${db.schema}`);
    await c.query(`SET LOCAL search_path TO ${db.schema}`);
    if (!exists?.table) await c.query('CREATE TABLE remex_migrations (version int4 PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())');
    const { rows } = await c.query<{ version: number }>('SELECT version FROM remex_migrations ORDER BY version');
    const applied = new Set(rows.map((r) => r.version));
    const newest = Math.max(0, ...applied);
    if (newest > POSTGRES_MIGRATIONS.length) {
      throw new Error(`schema ${schema} is at migration ${newest}, newer than this remex knows (${POSTGRES_MIGRATIONS.length}); upgrade remex`);
    }
    for (const [i, sql] of POSTGRES_MIGRATIONS.entries()) {
      const version = i + 1;
      if (applied.has(version)) continue;
      await c.query(sql);
      await c.query('INSERT INTO remex_migrations (version) VALUES ($1)', [version]);
    }
  });
}

/** The pool, the quoted schema, and the two ways to run statements: autocommit, or a retried transaction. */
class Db {
  private readonly names = new Map<string, string>();

  constructor(
    readonly pool: Pool,
    /** Quoted identifier, ready to prefix table names. */
    readonly schema: string,
  ) {}

  /**
   * One statement; on the pool it is its own transaction, and is run again when it deadlocked (it was
   * rolled back whole, so that is safe). Inside a transaction the error goes to {@link tx}, which retries.
   */
  async query<R extends QueryResultRow>(sql: string, params: unknown[] = [], on?: Queryable): Promise<R[]> {
    const statement = { name: this.statementName(sql), text: sql, values: params };
    for (let attempt = 1; ; attempt++) {
      try {
        return (await (on ?? this.pool).query<R>(statement)).rows;
      } catch (err) {
        if (on === undefined && isTransient(err) && attempt < MAX_TRANSIENT_ATTEMPTS) continue;
        throw on === undefined ? toStoreError(err) : err;
      }
    }
  }

  /**
   * remex's statements are a fixed set, run thousands of times: each gets a name, so every pooled
   * connection parses and plans it once (a prepared statement) instead of on every call.
   */
  private statementName(sql: string): string {
    let name = this.names.get(sql);
    if (name === undefined) {
      name = `remex_${createHash('sha256').update(sql).digest('hex').slice(0, 24)}`;
      this.names.set(sql, name);
    }
    return name;
  }

  /** Runs `fn` in a transaction; runs it again when it deadlocked or lost a serialization race. */
  async tx<T>(fn: (client: PoolClient) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      let client: PoolClient;
      try {
        client = await this.pool.connect();
      } catch (err) {
        throw toStoreError(err);
      }
      let broken: Error | undefined;
      try {
        await client.query('BEGIN');
        const out = await fn(client);
        await client.query('COMMIT');
        return out;
      } catch (err) {
        await client.query('ROLLBACK').catch((rollbackErr: unknown) => {
          broken = rollbackErr instanceof Error ? rollbackErr : new Error(String(rollbackErr));
        });
        if (isTransient(err) && attempt < MAX_TRANSIENT_ATTEMPTS) continue;
        throw toStoreError(err);
      } finally {
        // A connection whose ROLLBACK failed is in an unknown state: destroy it rather than pool it.
        client.release(broken);
      }
    }
  }
}

function quoteIdent(name: string): string {
  if (name.length === 0 || Buffer.byteLength(name) > 63 || name.includes('\0')) throw new RangeError(`not a valid PostgreSQL schema name: ${JSON.stringify(name)}`);
  return `"${name.replace(/"/g, '""')}"`;
}

function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Deadlock detected, serialization failure: the transaction may simply be run again. */
function isTransient(err: unknown): boolean {
  const code = sqlState(err);
  return code === '40P01' || code === '40001';
}

const CONNECTION_ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/** The database is unreachable or going away: callers see UNAVAILABLE, and may retry elsewhere or later. */
function isConnectionError(err: unknown): boolean {
  const code = sqlState(err);
  if (code !== undefined) {
    // Class 08: connection exception; 57P01-57P03: admin/crash shutdown, cannot connect now; 53300: too many connections.
    if (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03' || code === '53300') return true;
    if (CONNECTION_ERRNOS.has(code)) return true;
  }
  return err instanceof Error && /^Connection terminated|connection timeout|Client has encountered a connection error/i.test(err.message);
}

function toStoreError(err: unknown): unknown {
  if (!isRemexError(err) && isConnectionError(err)) {
    return new UnavailableError(`database unavailable: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  return err;
}

/**
 * The database refused the statement itself (a constraint, a value it will not take), as opposed to being
 * unreachable or losing a race it retries: in a batch, such an error may belong to one item alone.
 */
function refusedByDatabase(err: unknown): boolean {
  // A RemexError (UNAVAILABLE from toStoreError) carries a code of ours, not a SQLSTATE.
  return !isRemexError(err) && sqlState(err) !== undefined && !isConnectionError(err) && !isTransient(err);
}

/** int8 arrives as a decimal string; remex's integers (times in ms, sizes, counts) are safe integers. */
function int(value: string | number): number {
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isSafeInteger(n)) throw new RangeError(`integer out of JavaScript's safe range: ${value}`);
  return n;
}

function intOrNull(value: string | number | null): number | null {
  return value === null ? null : int(value);
}

interface JobRow {
  seq: string;
  id: string;
  instance: string;
  action_hash: string;
  action_size: string;
  platform: string;
  state: JobState;
  attempt: number;
  priority: number;
  /** json columns arrive parsed. */
  spec: JobRecord['spec'];
  created_at: string;
  queued_at: string;
  started_at: string | null;
  completed_at: string | null;
  queue_time_ms: string;
  lease_owner: string | null;
  lease_expires_at: string | null;
  cancel_requested: boolean;
  cached: boolean;
  result: RunReport | null;
  failure: JobFailure | null;
}

function toJob(row: JobRow): JobRecord {
  return {
    id: row.id,
    actionDigest: { hash: row.action_hash, sizeBytes: int(row.action_size) },
    instance: row.instance,
    platform: row.platform,
    state: row.state,
    attempt: row.attempt,
    priority: row.priority,
    spec: row.spec,
    createdAtMs: int(row.created_at),
    queuedAtMs: int(row.queued_at),
    startedAtMs: intOrNull(row.started_at),
    completedAtMs: intOrNull(row.completed_at),
    queueTimeMs: int(row.queue_time_ms),
    leaseOwner: row.lease_owner,
    leaseExpiresAtMs: intOrNull(row.lease_expires_at),
    cancelRequested: row.cancel_requested,
    cached: row.cached,
    result: row.result,
    failure: row.failure,
  };
}

/** Dispatch order within a batch: lowest priority first, then first in. */
function byDispatchOrder(a: JobRow, b: JobRow): number {
  return a.priority - b.priority || int(a.seq) - int(b.seq);
}

const JOB_COLUMN_NAMES = [
  'seq', 'id', 'instance', 'action_hash', 'action_size', 'platform', 'state', 'attempt', 'priority', 'spec', 'created_at',
  'queued_at', 'started_at', 'completed_at', 'queue_time_ms', 'lease_owner', 'lease_expires_at', 'cancel_requested',
  'cached', 'result', 'failure',
] as const;
const JOB_COLUMNS = JOB_COLUMN_NAMES.join(', ');

const CANCELLED_BEFORE_START: JobFailure = { code: 'CANCELLED', message: 'cancelled before it started' };
const CANCELLED_WORKER_LOST: JobFailure = { code: 'CANCELLED', message: 'cancelled; its worker was lost before it reported' };

/** One worker's claim on one platform, as the batched statement takes it. */
interface ClaimItem {
  workerId: string;
  platform: string;
  max: number;
  leaseExpiresAtMs: number;
  nowMs: number;
}

/** One finish as the batched statement takes it. */
interface FinishItem {
  id: string;
  attempt: number;
  workerId: string;
  state: string;
  result: string | null;
  failure: string | null;
  nowMs: number;
}

class PostgresJobStore implements JobStore {
  private readonly sql;
  /** Inserts and finishes of concurrent callers share statements (group commit): see StatementBatcher. */
  private readonly inserts: StatementBatcher<unknown[], JobRow | undefined>;
  private readonly finishes: StatementBatcher<FinishItem, JobRow | undefined>;
  private readonly claims: StatementBatcher<ClaimItem, JobRow[]>;

  constructor(private readonly db: Db) {
    const jobs = `${db.schema}.jobs`;
    this.sql = {
      insert: `INSERT INTO ${jobs} (${NEW_JOB_COLUMNS.join(', ')})
        VALUES (${NEW_JOB_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})
        ON CONFLICT (instance, action_hash, action_size) WHERE mergeable AND state IN ('queued','running') DO NOTHING
        RETURNING ${JOB_COLUMNS}`,
      // The insert above for many rows: one array per column, zipped by unnest, row order kept.
      insertMany: `INSERT INTO ${jobs} (${NEW_JOB_COLUMNS.join(', ')})
        SELECT * FROM unnest(${NEW_JOB_COLUMNS.map((c, i) => `$${i + 1}::${NEW_JOB_TYPES[c]}[]`).join(', ')})
        ON CONFLICT (instance, action_hash, action_size) WHERE mergeable AND state IN ('queued','running') DO NOTHING
        RETURNING ${JOB_COLUMNS}`,
      inflight: `SELECT ${JOB_COLUMNS} FROM ${jobs} WHERE instance = $1 AND action_hash = $2 AND action_size = $3
          AND mergeable AND state IN ('queued','running')`,
      get: `SELECT ${JOB_COLUMNS} FROM ${jobs} WHERE id = $1`,
      list: `SELECT ${JOB_COLUMNS} FROM ${jobs} ORDER BY seq DESC LIMIT $1`,
      listStates: `SELECT ${JOB_COLUMNS} FROM ${jobs} WHERE state = ANY($1::text[]) ORDER BY seq DESC LIMIT $2`,
      // SKIP LOCKED: rows another controller is claiming right now are passed over, not waited for. The
      // outer `state = 'queued'` re-checks each row once locked.
      claim: `WITH head AS (
          SELECT seq FROM ${jobs} WHERE state = 'queued' AND platform = $5 ORDER BY priority, seq LIMIT $6
          FOR UPDATE SKIP LOCKED
        )
        UPDATE ${jobs} AS j SET state = 'running', attempt = j.attempt + 1, lease_owner = $1, lease_expires_at = $2,
          started_at = $3, queue_time_ms = j.queue_time_ms + greatest(0, $4::int8 - j.queued_at)
        FROM head WHERE j.seq = head.seq AND j.state = 'queued'
        RETURNING ${JOB_COLUMN_NAMES.map((c) => `j.${c}`).join(', ')}`,
      // The claim above for several workers at once (one platform): their wanted slots are numbered in the
      // order the workers asked, the head of the queue in dispatch order, and slot n gets job n.
      claimMany: `WITH req AS (
          SELECT * FROM unnest($1::text[], $2::int4[], $3::int8[], $4::int8[]) WITH ORDINALITY AS r(owner, want, expires, now, ord)
        ), slot AS (
          SELECT req.owner, req.expires, req.now, row_number() OVER (ORDER BY req.ord, k) AS n
          FROM req CROSS JOIN LATERAL generate_series(1, req.want) AS k
        ), head AS (
          SELECT seq, priority FROM ${jobs} WHERE state = 'queued' AND platform = $5 ORDER BY priority, seq LIMIT $6
          FOR UPDATE SKIP LOCKED
        ), pick AS (
          SELECT seq, row_number() OVER (ORDER BY priority, seq) AS n FROM head
        )
        UPDATE ${jobs} AS j SET state = 'running', attempt = j.attempt + 1, lease_owner = slot.owner, lease_expires_at = slot.expires,
          started_at = slot.now, queue_time_ms = j.queue_time_ms + greatest(0, slot.now - j.queued_at)
        FROM pick JOIN slot USING (n) WHERE j.seq = pick.seq AND j.state = 'queued'
        RETURNING ${JOB_COLUMN_NAMES.map((c) => `j.${c}`).join(', ')}`,
      renew: `UPDATE ${jobs} SET lease_expires_at = $1 WHERE state = 'running' AND lease_owner = $2
        RETURNING id, cancel_requested`,
      renewHeld: `UPDATE ${jobs} SET lease_expires_at = $1 WHERE state = 'running' AND lease_owner = $2
          AND (id, attempt) IN (SELECT * FROM unnest($3::text[], $4::int4[]))
        RETURNING id, cancel_requested`,
      // Compare-and-set of many finishes at once; each item carries either a result or a failure. A batch
      // never holds two items for one job (StatementBatcher keyOf), so each row is judged once.
      finishMany: `UPDATE ${jobs} AS j SET state = v.state, result = coalesce(v.result, j.result), failure = coalesce(v.failure, j.failure),
          completed_at = v.completed_at, lease_owner = NULL, lease_expires_at = NULL
        FROM unnest($1::text[], $2::int4[], $3::text[], $4::text[], $5::json[], $6::json[], $7::int8[])
          AS v(id, attempt, owner, state, result, failure, completed_at)
        WHERE j.id = v.id AND j.attempt = v.attempt AND j.lease_owner = v.owner AND j.state = 'running'
        RETURNING ${JOB_COLUMN_NAMES.map((c) => `j.${c}`).join(', ')}`,
      // One statement for both cases, so a job that changes state meanwhile is judged on its newest version.
      cancel: `UPDATE ${jobs} SET
          state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
          completed_at = CASE WHEN state = 'queued' THEN $2 ELSE completed_at END,
          failure = CASE WHEN state = 'queued' THEN $3::json ELSE failure END,
          cancel_requested = cancel_requested OR state = 'running'
        WHERE id = $1 AND state IN ('queued','running') RETURNING ${JOB_COLUMNS}`,
      fail: `UPDATE ${jobs} SET state = 'failed', failure = $1, completed_at = $2, lease_owner = NULL, lease_expires_at = NULL
        WHERE id = $3 AND state IN ('queued','running') RETURNING ${JOB_COLUMNS}`,
      // Expiry skips rows locked elsewhere (a worker completing or renewing right now, another controller's
      // reaper): it never waits, so it cannot deadlock, and what it skipped the next tick sees.
      // A cancellation that its lost worker never acted on still stands: the job ends, it does not run again.
      expiredCancel: `UPDATE ${jobs} SET state = 'cancelled', completed_at = $1, lease_owner = NULL, lease_expires_at = NULL,
          failure = $2
        WHERE seq IN (SELECT seq FROM ${jobs} WHERE state = 'running' AND lease_expires_at < $1 AND cancel_requested
          FOR UPDATE SKIP LOCKED)
        RETURNING ${JOB_COLUMNS}`,
      expiredRequeue: `UPDATE ${jobs} SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL, cancel_requested = false,
          queued_at = $1
        WHERE seq IN (SELECT seq FROM ${jobs} WHERE state = 'running' AND lease_expires_at < $1 AND attempt < $2
          FOR UPDATE SKIP LOCKED)
        RETURNING ${JOB_COLUMNS}`,
      expiredFail: `UPDATE ${jobs} SET state = 'failed', completed_at = $1, lease_owner = NULL, lease_expires_at = NULL, failure = $2
        WHERE seq IN (SELECT seq FROM ${jobs} WHERE state = 'running' AND lease_expires_at < $1 FOR UPDATE SKIP LOCKED)
        RETURNING ${JOB_COLUMNS}`,
      expireOwners: `UPDATE ${jobs} SET lease_expires_at = 0 WHERE state = 'running' AND lease_owner = ANY($1::text[])`,
      expireOwnerPrefix: `UPDATE ${jobs} SET lease_expires_at = 0 WHERE state = 'running' AND starts_with(lease_owner, $1)`,
      depths: `SELECT platform, count(*) AS n FROM ${jobs} WHERE state = 'queued' GROUP BY platform`,
      running: `SELECT platform, count(*) AS n FROM ${jobs} WHERE state = 'running' GROUP BY platform`,
      byWorker: `SELECT lease_owner AS owner, count(*) AS n FROM ${jobs} WHERE state = 'running' GROUP BY lease_owner`,
    };
    this.inserts = new StatementBatcher({
      retryAlone: refusedByDatabase,
      keyOf: (args) => String(args[0]),
      run: async (rows) => {
        if (rows.length === 1) return [(await this.db.query<JobRow>(this.sql.insert, rows[0] as unknown[]))[0]];
        const columns = NEW_JOB_COLUMNS.map((_, c) => rows.map((r) => r[c]));
        const inserted = new Map((await this.db.query<JobRow>(this.sql.insertMany, columns)).map((r) => [r.id, r]));
        return rows.map((r) => inserted.get(String(r[0])));
      },
    });
    this.claims = new StatementBatcher({
      retryAlone: refusedByDatabase,
      // One worker's claims go one at a time: its slots are numbered by request.
      keyOf: (c) => c.workerId,
      run: async (items) => {
        const byPlatform = new Map<string, ClaimItem[]>();
        for (const item of items) {
          const group = byPlatform.get(item.platform);
          if (group) group.push(item);
          else byPlatform.set(item.platform, [item]);
        }
        const byOwner = new Map<string, JobRow[]>();
        await Promise.all(
          [...byPlatform].map(async ([platform, group]) => {
            const rows = await this.db.query<JobRow>(this.sql.claimMany, [
              group.map((c) => c.workerId),
              group.map((c) => c.max),
              group.map((c) => c.leaseExpiresAtMs),
              group.map((c) => c.nowMs),
              platform,
              group.reduce((n, c) => n + c.max, 0),
            ]);
            for (const row of rows) {
              const owned = byOwner.get(row.lease_owner as string);
              if (owned) owned.push(row);
              else byOwner.set(row.lease_owner as string, [row]);
            }
          }),
        );
        return items.map((c) => (byOwner.get(c.workerId) ?? []).sort(byDispatchOrder));
      },
    });
    this.finishes = new StatementBatcher({
      retryAlone: refusedByDatabase,
      keyOf: (f) => f.id,
      run: async (items) => {
        const columns = [
          items.map((f) => f.id),
          items.map((f) => f.attempt),
          items.map((f) => f.workerId),
          items.map((f) => f.state),
          items.map((f) => f.result),
          items.map((f) => f.failure),
          items.map((f) => f.nowMs),
        ];
        const finished = new Map((await this.db.query<JobRow>(this.sql.finishMany, columns)).map((r) => [r.id, r]));
        return items.map((f) => finished.get(f.id));
      },
    });
  }

  async enqueue(job: NewJob): Promise<{ job: JobRecord; merged: boolean }> {
    const args = newJobValues(job, job.leaseTo ? 'running' : 'queued', null);
    // The in-flight job we conflicted with may finish before we read it; then insert again. Bounded: each
    // round needs another job to have entered and left the in-flight state meanwhile.
    for (let round = 0; ; round++) {
      const inserted = round === 0 ? await this.inserts.submit(args) : (await this.db.query<JobRow>(this.sql.insert, args))[0];
      if (inserted) return { job: toJob(inserted), merged: false };
      const [existing] = await this.db.query<JobRow>(this.sql.inflight, [job.instance, job.actionDigest.hash, job.actionDigest.sizeBytes]);
      if (existing) return { job: toJob(existing), merged: true };
      if (round >= 100) throw new Error(`enqueue of ${job.id}: the in-flight job it merges with kept changing`);
    }
  }

  async insertCached(job: NewJob, result: RunReport): Promise<JobRecord> {
    const [row] = await this.db.query<JobRow>(this.sql.insert, newJobValues({ ...job, mergeable: false }, 'completed', result));
    if (!row) throw new Error(`insert of cached job ${job.id} returned no row`);
    return toJob(row);
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const [row] = await this.db.query<JobRow>(this.sql.get, [id]);
    return row ? toJob(row) : undefined;
  }

  async list(opts: { limit: number; states?: readonly JobState[] }): Promise<JobRecord[]> {
    const rows = opts.states
      ? await this.db.query<JobRow>(this.sql.listStates, [opts.states, opts.limit])
      : await this.db.query<JobRow>(this.sql.list, [opts.limit]);
    return rows.map(toJob);
  }

  async claim(opts: { platforms: readonly string[]; workerId: string; max: number; leaseMs: number; nowMs: number }): Promise<JobRecord[]> {
    if (opts.max <= 0 || opts.platforms.length === 0) return [];
    const claimOn = async (on: Queryable | undefined, platform: string, want: number): Promise<JobRow[]> => {
      const rows = await this.db.query<JobRow>(
        this.sql.claim,
        [opts.workerId, opts.nowMs + opts.leaseMs, opts.nowMs, opts.nowMs, platform, want],
        on,
      );
      return rows.sort(byDispatchOrder);
    };
    // One platform (the common case): one autocommit statement, shared with other workers claiming now.
    if (opts.platforms.length === 1) {
      const rows = await this.claims.submit({
        workerId: opts.workerId,
        platform: opts.platforms[0] as string,
        max: opts.max,
        leaseExpiresAtMs: opts.nowMs + opts.leaseMs,
        nowMs: opts.nowMs,
      });
      return rows.map(toJob);
    }
    // Several: one transaction, so a controller dying halfway leaves no job leased to a worker that never heard of it.
    return this.db.tx(async (c) => {
      const claimed: JobRecord[] = [];
      for (const platform of opts.platforms) {
        const want = opts.max - claimed.length;
        if (want <= 0) break;
        for (const row of await claimOn(c, platform, want)) claimed.push(toJob(row));
      }
      return claimed;
    });
  }

  async renewLeases(workerId: string, leaseExpiresAtMs: number, held?: readonly HeldLease[]): Promise<{ renewed: number; cancelRequested: string[] }> {
    const rows = held
      ? await this.db.query<{ id: string; cancel_requested: boolean }>(this.sql.renewHeld, [
          leaseExpiresAtMs,
          workerId,
          held.map((h) => h.jobId),
          held.map((h) => h.attempt),
        ])
      : await this.db.query<{ id: string; cancel_requested: boolean }>(this.sql.renew, [leaseExpiresAtMs, workerId]);
    return { renewed: rows.length, cancelRequested: rows.filter((r) => r.cancel_requested).map((r) => r.id) };
  }

  async finish(opts: { id: string; attempt: number; workerId: string; outcome: Outcome; nowMs: number }): Promise<JobRecord | undefined> {
    const { outcome } = opts;
    const row = await this.finishes.submit({
      id: opts.id,
      attempt: opts.attempt,
      workerId: opts.workerId,
      state: outcome.state,
      result: 'result' in outcome ? JSON.stringify(outcome.result) : null,
      failure: 'failure' in outcome ? JSON.stringify(outcome.failure) : null,
      nowMs: opts.nowMs,
    });
    return row ? toJob(row) : undefined;
  }

  async cancel(id: string, nowMs: number): Promise<JobRecord | undefined> {
    const [row] = await this.db.query<JobRow>(this.sql.cancel, [id, nowMs, JSON.stringify(CANCELLED_BEFORE_START)]);
    if (row) return toJob(row);
    return this.get(id);
  }

  async fail(id: string, failure: JobFailure, nowMs: number): Promise<JobRecord | undefined> {
    const [row] = await this.db.query<JobRow>(this.sql.fail, [JSON.stringify(failure), nowMs, id]);
    return row ? toJob(row) : undefined;
  }

  async expireLeases(nowMs: number, maxAttempts: number): Promise<LeaseExpiry> {
    return this.db.tx((c) => this.expireIn(c, nowMs, maxAttempts));
  }

  private async expireIn(c: PoolClient, nowMs: number, maxAttempts: number): Promise<LeaseExpiry> {
    const cancelled = await this.db.query<JobRow>(this.sql.expiredCancel, [nowMs, JSON.stringify(CANCELLED_WORKER_LOST)], c);
    const requeued = await this.db.query<JobRow>(this.sql.expiredRequeue, [nowMs, maxAttempts], c);
    const lost: JobFailure = { code: 'LOST', message: `the worker running it was lost ${maxAttempts} time(s); giving up` };
    const failed = await this.db.query<JobRow>(this.sql.expiredFail, [nowMs, JSON.stringify(lost)], c);
    const inOrder = (rows: JobRow[]) => rows.sort((a, b) => int(a.seq) - int(b.seq)).map(toJob);
    return { requeued: inOrder(requeued), failed: inOrder(failed), cancelled: inOrder(cancelled) };
  }

  async releaseLeasesOf(workerIds: readonly string[] | { prefix: string }, nowMs: number, maxAttempts: number): Promise<LeaseExpiry> {
    return this.db.tx(async (c) => {
      if ('prefix' in workerIds) await this.db.query(this.sql.expireOwnerPrefix, [workerIds.prefix], c);
      else if (workerIds.length > 0) await this.db.query(this.sql.expireOwners, [workerIds], c);
      return this.expireIn(c, nowMs, maxAttempts);
    });
  }

  async queueDepths(): Promise<Map<string, number>> {
    return countsBy(await this.db.query<{ platform: string; n: string }>(this.sql.depths), (r) => r.platform);
  }

  async runningCounts(): Promise<Map<string, number>> {
    return countsBy(await this.db.query<{ platform: string; n: string }>(this.sql.running), (r) => r.platform);
  }

  async runningByWorker(): Promise<Map<string, number>> {
    return countsBy(await this.db.query<{ owner: string; n: string }>(this.sql.byWorker), (r) => r.owner);
  }
}

/** PostgreSQL's type of each new-job column, for the batched insert's arrays. */
const NEW_JOB_TYPES: Record<NewJobColumn, string> = {
  id: 'text',
  instance: 'text',
  action_hash: 'text',
  action_size: 'int8',
  platform: 'text',
  state: 'text',
  priority: 'int4',
  mergeable: 'bool',
  spec: 'json',
  created_at: 'int8',
  queued_at: 'int8',
  cached: 'bool',
  result: 'json',
  completed_at: 'int8',
  attempt: 'int4',
  lease_owner: 'text',
  lease_expires_at: 'int8',
  started_at: 'int8',
};

function countsBy<R extends { n: string }>(rows: R[], key: (row: R) => string): Map<string, number> {
  return new Map(rows.map((r) => [key(r), int(r.n)]));
}

class PostgresActionCache implements ActionCache {
  private readonly sql;

  constructor(private readonly db: Db) {
    const table = `${db.schema}.action_cache`;
    this.sql = {
      get: `SELECT result FROM ${table} WHERE instance = $1 AND action_hash = $2 AND action_size = $3`,
      put: `INSERT INTO ${table} (instance, action_hash, action_size, result, stored_at) VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (instance, action_hash, action_size) DO UPDATE SET result = excluded.result, stored_at = excluded.stored_at`,
      delete: `DELETE FROM ${table} WHERE instance = $1 AND action_hash = $2 AND action_size = $3`,
    };
  }

  async get(instance: string, d: Digest): Promise<RunReport | undefined> {
    const [row] = await this.db.query<{ result: RunReport }>(this.sql.get, [instance, d.hash, d.sizeBytes]);
    return row?.result;
  }

  async put(instance: string, d: Digest, result: RunReport, nowMs: number): Promise<void> {
    await this.db.query(this.sql.put, [instance, d.hash, d.sizeBytes, JSON.stringify(result), nowMs]);
  }

  async delete(instance: string, d: Digest): Promise<void> {
    await this.db.query(this.sql.delete, [instance, d.hash, d.sizeBytes]);
  }
}

interface WorkerRow {
  id: string;
  name: string;
  platforms: PlatformOffer[];
  slots: number;
  state: WorkerRecord['state'];
  registered_at: string;
  last_seen_at: string;
}

function toWorker(row: WorkerRow): WorkerRecord {
  return {
    id: row.id,
    name: row.name,
    platforms: row.platforms,
    slots: row.slots,
    state: row.state,
    registeredAtMs: int(row.registered_at),
    lastSeenAtMs: int(row.last_seen_at),
  };
}

class PostgresWorkerRegistry implements WorkerRegistry {
  private readonly sql;

  constructor(private readonly db: Db) {
    const workers = `${db.schema}.workers`;
    const columns = 'id, name, platforms, slots, state, registered_at, last_seen_at';
    this.sql = {
      upsert: `INSERT INTO ${workers} (${columns}) VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (id) DO UPDATE SET name = excluded.name, platforms = excluded.platforms, slots = excluded.slots,
          state = excluded.state, last_seen_at = excluded.last_seen_at`,
      touch: `UPDATE ${workers} SET last_seen_at = $1, state = coalesce($2, state) WHERE id = $3 AND state <> 'gone'`,
      get: `SELECT ${columns} FROM ${workers} WHERE id = $1`,
      list: `SELECT ${columns} FROM ${workers} ORDER BY registered_at, id`,
      silent: `UPDATE ${workers} SET state = 'gone' WHERE state <> 'gone' AND last_seen_at < $1 RETURNING id`,
      platforms: `SELECT platforms FROM ${workers}`,
    };
  }

  async upsert(w: WorkerRecord): Promise<void> {
    await this.db.query(this.sql.upsert, [w.id, w.name, JSON.stringify(w.platforms), w.slots, w.state, w.registeredAtMs, w.lastSeenAtMs]);
  }

  async touch(id: string, nowMs: number, state?: WorkerRecord['state']): Promise<boolean> {
    try {
      const result = await this.db.pool.query(this.sql.touch, [nowMs, state ?? null, id]);
      return result.rowCount === 1;
    } catch (err) {
      throw toStoreError(err);
    }
  }

  async get(id: string): Promise<WorkerRecord | undefined> {
    const [row] = await this.db.query<WorkerRow>(this.sql.get, [id]);
    return row ? toWorker(row) : undefined;
  }

  async list(): Promise<WorkerRecord[]> {
    return (await this.db.query<WorkerRow>(this.sql.list)).map(toWorker);
  }

  async markSilentGone(cutoffMs: number): Promise<string[]> {
    return (await this.db.query<{ id: string }>(this.sql.silent, [cutoffMs])).map((r) => r.id);
  }

  async offeredPlatforms(): Promise<PlatformOffer[]> {
    const seen = new Map<string, PlatformOffer>();
    for (const row of await this.db.query<{ platforms: PlatformOffer[] }>(this.sql.platforms)) {
      for (const offer of row.platforms) {
        const prior = seen.get(offer.platform);
        // Native wins over emulated when several workers offer the same platform.
        if (!prior || (prior.emulated && !offer.emulated)) seen.set(offer.platform, offer);
      }
    }
    return [...seen.values()];
  }
}
