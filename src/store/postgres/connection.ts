/**
 * The PostgreSQL driver layer under every port of this adapter: one `pg` pool, remex's statements
 * prepared once per connection, autocommit statements and transactions run again when they deadlocked or
 * lost a serialization race, connection failures turned into UNAVAILABLE, and the schema migrated at open.
 * Nothing here knows jobs, workers or the action cache; the port adapters own their SQL.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import type { Pool, PoolClient, QueryResultRow } from 'pg';
import { isRemexError, UnavailableError } from '../../core/errors.js';
import { POSTGRES_MIGRATIONS } from './schema.js';

/** What {@link PostgresDb.open} needs, defaults applied (see PostgresStoreOptions). */
export interface PostgresConnectionOptions {
  url: string;
  /** Unquoted schema name. */
  schema: string;
  applicationName: string;
  poolSize: number;
  connectTimeoutMs: number;
  onConnectionError: (err: Error) => void;
}

/** A statement that deadlocked or lost a serialization race is run again this many times in all. */
const MAX_TRANSIENT_ATTEMPTS = 5;

/** Anything a statement can run on: the pool (autocommit) or a client inside a transaction. */
export type Queryable = Pick<Pool, 'query'> | PoolClient;

export interface PoolStats {
  total: number;
  idle: number;
  waiting: number;
}

/** The pool, the quoted schema, and the two ways to run statements: autocommit, or a retried transaction. */
export class PostgresDb {
  private readonly names = new Map<string, string>();
  private closed = false;

  private constructor(
    private readonly pool: Pool,
    /** Quoted identifier, ready to prefix table names. */
    readonly schema: string,
  ) {}

  /** The pool's connections now: open, idle among them, and callers waiting for one (the store metrics). */
  poolStats(): PoolStats {
    return { total: this.pool.totalCount, idle: this.pool.idleCount, waiting: this.pool.waitingCount };
  }

  /**
   * Connects and brings the schema up to date. Safe when several controllers start at once: migrations run
   * one controller at a time under an advisory lock, and each applies only versions not yet recorded.
   */
  static async open(opts: PostgresConnectionOptions): Promise<PostgresDb> {
    const { poolSize } = opts;
    if (!Number.isInteger(poolSize) || poolSize < 1) throw new RangeError(`poolSize must be a positive integer, got ${poolSize}`);
    const quoted = quoteIdent(opts.schema);
    const pool = new pg.Pool({
      connectionString: opts.url,
      max: poolSize,
      application_name: opts.applicationName,
      connectionTimeoutMillis: opts.connectTimeoutMs,
      keepAlive: true,
    });
    // Without a listener an idle connection's error (server restart) would crash the process.
    pool.on('error', (err) => opts.onConnectionError(err));
    const db = new PostgresDb(pool, quoted);
    try {
      await migrate(db, opts.schema);
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw toStoreError(err);
    }
    return db;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

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
      // A checked-out client has no pool listener for 'error': a connection lost mid-transaction (a server
      // restart, an administrator's kill) would emit it with no listener and crash the process. The query
      // under way fails anyway; the error only marks the client to be destroyed, not pooled.
      const onLost = (err: Error): void => {
        broken = err;
      };
      client.on('error', onLost);
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
        client.removeListener('error', onLost);
        // A connection whose ROLLBACK failed is in an unknown state: destroy it rather than pool it.
        client.release(broken);
      }
    }
  }

  /** A connection of the pool kept by the caller (a session lock's), released by it; counts against the pool. */
  async connectDedicated(): Promise<PoolClient> {
    return this.pool.connect();
  }

  /** Runs one statement on the pool, unprepared and not retried, and says how many rows it changed. */
  async changed(sql: string, params: unknown[]): Promise<number> {
    try {
      return (await this.pool.query(sql, params)).rowCount ?? 0;
    } catch (err) {
      throw toStoreError(err);
    }
  }
}

/** Applies the migrations not yet recorded, in one transaction under a lock keyed by the schema. */
async function migrate(db: PostgresDb, schema: string): Promise<void> {
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
export function refusedByDatabase(err: unknown): boolean {
  // A RemexError (UNAVAILABLE from toStoreError) carries a code of ours, not a SQLSTATE.
  return !isRemexError(err) && sqlState(err) !== undefined && !isConnectionError(err) && !isTransient(err);
}

/** int8 arrives as a decimal string; remex's integers (times in ms, sizes, counts) are safe integers. */
export function int(value: string | number): number {
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isSafeInteger(n)) throw new RangeError(`integer out of JavaScript's safe range: ${value}`);
  return n;
}

export function intOrNull(value: string | number | null): number | null {
  return value === null ? null : int(value);
}
