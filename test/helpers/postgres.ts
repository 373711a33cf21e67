/**
 * A real PostgreSQL for tests. `REMEX_TEST_POSTGRES_URL` names one to use (each test then works in its own
 * schema of that database); otherwise the server binaries (Debian's `postgresql` package) start a private
 * one in a temporary directory on a free loopback port, once per test file. Without either, the tests are
 * skipped locally and fail in CI (CI=true), so a skip can never pass as green.
 *
 * A test's schemas are dropped when it passes. A failed test keeps them for inspection, and the log says
 * where they are and how to connect; a private server then keeps its data directory when its file ends,
 * and the log says how to start it again. REMEX_TEST_KEEP_SCHEMAS=1 keeps every schema (a private server
 * still goes, data and all, when no test failed).
 */
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, test } from 'node:test';
import pg from 'pg';
import { IN_CI, which } from './tools.js';

export interface TestPostgres {
  /** Connection URL of a database the tests may use freely. */
  readonly url: string;
  /** Stops the server (when this helper started it) and removes its files, unless `keepData`. */
  stop(opts?: { keepData?: boolean }): Promise<void>;
  /** Restarts the server on the same port, keeping its data; absent for an external URL. */
  restart?(): Promise<void>;
  /** The shell command that starts a stopped private server again on its data; absent for an external URL. */
  readonly startCommand?: string;
}

const EXTERNAL_URL = process.env.REMEX_TEST_POSTGRES_URL;
const KEEP_SCHEMAS = process.env.REMEX_TEST_KEEP_SCHEMAS === '1';
const DATABASE = 'remex_test';
const READY_TIMEOUT_MS = 30_000;

/** The directory holding initdb and postgres: PATH first, then Debian's versioned directories, newest first. */
export function findPostgresBin(): string | undefined {
  const initdb = which('initdb');
  if (initdb && which('postgres')) return join(initdb, '..');
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a));
  for (const v of versions) {
    const dir = join(root, v, 'bin');
    if (existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'postgres'))) return dir;
  }
  return undefined;
}

/** Why no PostgreSQL can be had, or undefined when one can (a URL or the binaries). */
export function postgresUnavailable(): string | undefined {
  if (EXTERNAL_URL) return undefined;
  if (findPostgresBin()) return undefined;
  return 'no PostgreSQL: set REMEX_TEST_POSTGRES_URL or install the server (apt-get install postgresql)';
}

/** Uses REMEX_TEST_POSTGRES_URL when set; otherwise starts a private server and creates a database in it. */
export async function startPostgres(): Promise<TestPostgres> {
  if (EXTERNAL_URL) return { url: EXTERNAL_URL, stop: async () => undefined };
  const bin = findPostgresBin();
  if (!bin) throw new Error(postgresUnavailable());
  return startPrivatePostgres(bin);
}

/**
 * Per-file fixture: registers root hooks that start PostgreSQL before the file's tests and stop it after,
 * and returns an accessor. When PostgreSQL is unavailable it registers instead one test that skips
 * locally and fails in CI, and returns undefined: the caller then registers nothing else.
 */
export function usePostgres(): PostgresFixture | undefined {
  const missing = postgresUnavailable();
  if (missing) {
    test('PostgreSQL is available', (t) => {
      if (IN_CI) throw new Error(missing);
      t.skip(missing);
    });
    return undefined;
  }
  let server: TestPostgres | undefined;
  const fixture = new PostgresFixture(() => {
    if (!server) throw new Error('PostgreSQL is not started yet: use the fixture inside tests or hooks');
    return server;
  });
  before(async () => {
    server = await startPostgres();
  });
  // Registered before the file's own hooks: root hooks run in that order, and this afterEach must learn
  // the verdict before a later root afterEach releases the test's schemas (inner hooks run before it).
  beforeEach((t) => fixture.testStarted(t));
  afterEach((t) => fixture.testEnded(t));
  after(async () => {
    const keepData = fixture.kept.length > 0 && server?.startCommand !== undefined;
    await server?.stop({ keepData });
    if (keepData) {
      log(`PostgreSQL data of the failed tests kept; start the server again with:\n  ${server?.startCommand}\n` +
        `then connect with: psql '${server?.url}' and SET search_path TO the schema named above`);
    }
  });
  return fixture;
}

/** Goes to the test run's output whatever the reporter: a kept schema must be findable after CI. */
function log(line: string): void {
  process.stderr.write(`[postgres] ${line}\n`);
}

/** What a hook is given of its test (@types/node 20 does not declare `passed`, which Node 20.20's contexts carry). */
type HookContext = { readonly name: string };

/** Whether a finished test passed; a context without `passed` counts as passed (dropped, as before). */
function testPassed(t: HookContext): boolean {
  const passed: unknown = (t as { passed?: unknown }).passed;
  return passed !== false;
}

export class PostgresFixture {
  /** The test running now, and the schemas released during it: dropped or kept by its verdict. */
  private running: { name: string; released: string[] } | undefined;
  /** The test that ended last, until the next starts: root hooks after ours release schemas after its verdict. */
  private ended: { name: string; passed: boolean } | undefined;
  /** Schemas kept because their test failed. */
  readonly kept: string[] = [];

  constructor(private readonly current: () => TestPostgres) {}

  /** @internal Called by the fixture's beforeEach. */
  testStarted(t: HookContext): void {
    this.running = { name: t.name, released: [] };
    this.ended = undefined;
  }

  /** @internal Called by the fixture's afterEach: drops what the test released if it passed, else keeps it. */
  async testEnded(t: HookContext): Promise<void> {
    const released = this.running?.released ?? [];
    this.running = undefined;
    this.ended = { name: t.name, passed: testPassed(t) };
    for (const schema of released) await this.release(schema);
  }

  get server(): TestPostgres {
    return this.current();
  }

  get url(): string {
    return this.current().url;
  }

  /** A fresh schema name, unique across files and runs (it is created by whoever opens a store on it). */
  newSchema(prefix = 't'): string {
    return `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
  }

  /**
   * Drops a schema and everything in it once its test is known to have passed (at once outside a test);
   * keeps it, and says where, when the test failed. REMEX_TEST_KEEP_SCHEMAS=1 keeps every schema.
   */
  async dropSchema(schema: string): Promise<void> {
    if (KEEP_SCHEMAS) return;
    if (this.running) this.running.released.push(schema);
    else await this.release(schema);
  }

  private async release(schema: string): Promise<void> {
    if (this.ended && !this.ended.passed) {
      this.kept.push(schema);
      log(`test '${this.ended.name}' failed: its schema "${schema}" is kept in ${this.url}`);
      return;
    }
    await this.sql(`DROP SCHEMA IF EXISTS "${schema.replace(/"/g, '""')}" CASCADE`);
  }

  /** Runs one statement on a connection of its own. */
  async sql<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, params: unknown[] = []): Promise<R[]> {
    const client = new pg.Client({ connectionString: this.url });
    await client.connect();
    try {
      return (await client.query<R>(text, params)).rows;
    } finally {
      await client.end();
    }
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** initdb refuses to run as root: then run the server as the `postgres` user (or nobody). */
function serverIdentity(): { name: string; uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  for (const user of ['postgres', 'nobody']) {
    try {
      const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8' }).trim());
      if (Number.isInteger(uid) && Number.isInteger(gid) && uid !== 0) return { name: user, uid, gid };
    } catch {
      // no such user: try the next
    }
  }
  throw new Error('running as root, and neither a postgres nor a nobody user exists to run PostgreSQL as');
}

async function startPrivatePostgres(bin: string): Promise<TestPostgres> {
  const identity = serverIdentity();
  const dir = mkdtempSync(join(tmpdir(), 'remex-pg-'));
  const dataDir = join(dir, 'data');
  const socketDir = join(dir, 'sock');
  mkdirSync(socketDir);
  if (identity) for (const d of [dir, socketDir]) chownSync(d, identity.uid, identity.gid);
  const asServer = identity ? { uid: identity.uid, gid: identity.gid } : {};

  execFileSync(join(bin, 'initdb'), ['-D', dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync'], {
    ...asServer,
    stdio: ['ignore', 'ignore', 'pipe'],
    cwd: dir,
  });

  let port = 0;
  let child: ChildProcess | undefined;
  let output = '';
  const launch = (): ChildProcess => {
    output = '';
    const p = spawn(
      join(bin, 'postgres'),
      [
        '-D', dataDir, '-p', String(port), '-k', socketDir,
        '-c', 'listen_addresses=127.0.0.1',
        // A test database: durability against an OS crash buys nothing and costs seconds.
        '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off',
        '-c', 'max_connections=300',
      ],
      { ...asServer, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    p.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    p.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    return p;
  };
  // If the test process dies without stopping it, take the server down with it (SIGQUIT: immediate shutdown).
  const onExit = () => child?.kill('SIGQUIT');
  process.on('exit', onExit);

  const adminUrl = () => `postgres://postgres@127.0.0.1:${port}/postgres`;
  const waitReady = async (p: ChildProcess): Promise<void> => {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (p.exitCode !== null || p.signalCode !== null) throw new Error(`postgres exited while starting:\n${output}`);
      const client = new pg.Client({ connectionString: adminUrl() });
      client.on('error', () => undefined);
      try {
        await client.connect();
        await client.query('SELECT 1');
        return;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`postgres not ready within ${READY_TIMEOUT_MS} ms: ${String(err)}\n${output}`);
      } finally {
        await client.end().catch(() => undefined);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const stopServer = async (): Promise<void> => {
    const p = child;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGINT'); // fast shutdown: disconnects clients, writes a checkpoint
    const timer = setTimeout(() => p.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };

  // The free port may be taken between probe and bind: try a few.
  for (let tries = 1; ; tries++) {
    port = await freePort();
    child = launch();
    try {
      await waitReady(child);
      break;
    } catch (err) {
      await stopServer();
      if (tries >= 3 || !/could not bind|Address already in use/i.test(output)) {
        process.off('exit', onExit);
        rmSync(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }

  const admin = new pg.Client({ connectionString: adminUrl() });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${DATABASE}`);
  } finally {
    await admin.end();
  }

  const user = identity ? `runuser -u ${identity.name} -- ` : '';
  return {
    url: `postgres://postgres@127.0.0.1:${port}/${DATABASE}`,
    startCommand: `${user}${join(bin, 'postgres')} -D ${dataDir} -p ${port} -k ${socketDir} -c listen_addresses=127.0.0.1`,
    async stop(opts: { keepData?: boolean } = {}): Promise<void> {
      await stopServer();
      process.off('exit', onExit);
      if (!opts.keepData) rmSync(dir, { recursive: true, force: true });
    },
    async restart(): Promise<void> {
      await stopServer();
      child = launch();
      await waitReady(child);
    },
  };
}
