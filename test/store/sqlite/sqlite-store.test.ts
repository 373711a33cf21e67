/** SqliteStore: the Store conformance suite on a file and in memory, plus what is SQLite's own (migrations, connections). */
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { SQLITE_MIGRATIONS } from '../../../src/store/sqlite/schema.js';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store.js';
import type { Store } from '../../../src/store/ports.js';
import { actionDigestOf, makeSpec, X86 } from '../fixtures.js';
import { storeConformance } from '../store-conformance.js';
import type { StoreHandle } from '../store-conformance.js';

const T0 = 1_700_000_000_000;

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'remex-sqlite-store-'));
}

/** A store on a fresh file; `reopen` closes it and opens the same file again, as a restart would. */
async function fileStore(): Promise<StoreHandle> {
  const dir = tempDir();
  const path = join(dir, 'nested', 'remex.db');
  let current: SqliteStore = new SqliteStore({ path });
  return {
    store: current,
    async reopen(): Promise<Store> {
      await current.close();
      current = new SqliteStore({ path });
      return current;
    },
    async cleanup(): Promise<void> {
      await current.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function memoryStore(): Promise<StoreHandle> {
  const store = new SqliteStore({ path: ':memory:' });
  return { store, cleanup: () => store.close() };
}

storeConformance('sqlite (file)', fileStore, { durable: true });
storeConformance('sqlite (:memory:)', memoryStore, { durable: false });

describe('SqliteStore specifics', () => {
  const dirs: string[] = [];
  after(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });
  function dbPath(): string {
    const dir = tempDir();
    dirs.push(dir);
    return join(dir, 'remex.db');
  }

  function newJob(label: string) {
    const spec = makeSpec({ label });
    return { id: `id-${label}`, actionDigest: actionDigestOf(spec), instance: '', priority: 0, spec, nowMs: T0, mergeable: true };
  }

  test('migrations run once: reopening applies none again and keeps the data', async () => {
    const path = dbPath();
    const first = new SqliteStore({ path });
    await first.jobs.enqueue(newJob('kept'));
    await first.close();
    for (let i = 0; i < 3; i++) {
      const again = new SqliteStore({ path });
      assert.equal((await again.jobs.get('id-kept'))?.state, 'queued');
      await again.close();
    }
    const raw = new Database(path, { readonly: true });
    try {
      assert.equal(raw.pragma('user_version', { simple: true }), SQLITE_MIGRATIONS.length);
      assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
      const tables = raw.prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all();
      assert.deepEqual(tables.map((t) => t.name), ['action_cache', 'blob_refs', 'blob_refs_released', 'comparisons', 'jobs', 'log_pieces', 'workers']);
    } finally {
      raw.close();
    }
  });

  test('a database at an older version is brought up to date without losing rows', async () => {
    const path = dbPath();
    const raw = new Database(path);
    raw.exec(SQLITE_MIGRATIONS[0] as string);
    raw.pragma('user_version = 1');
    raw.prepare(`INSERT INTO action_cache (instance, action_hash, action_size, result, stored_at) VALUES ('', ?, 1, '{"exitCode":0}', 1)`).run('a'.repeat(64));
    raw.close();
    const store = new SqliteStore({ path });
    try {
      assert.deepEqual(await store.actionCache.get('', { hash: 'a'.repeat(64), sizeBytes: 1 }), { exitCode: 0 });
    } finally {
      await store.close();
    }
  });

  test('migration 8 rebuilds the jobs table for emergency_stopped, keeping every row, index and the seq counter', async () => {
    const path = dbPath();
    const raw = new Database(path);
    for (const m of SQLITE_MIGRATIONS.slice(0, 7)) raw.exec(m);
    raw.pragma('user_version = 7');
    const kept = 'job-before-migration-7';
    const spec = makeSpec({ label: kept });
    const action = actionDigestOf(spec);
    raw
      .prepare(`INSERT INTO jobs (id, instance, action_hash, action_size, platform, state, mergeable, spec, created_at, queued_at, labels)
        VALUES (?, '', ?, ?, ?, 'queued', 1, ?, ?, ?, '{"suite":"old"}')`)
      .run(kept, action.hash, action.sizeBytes, X86, JSON.stringify(spec), T0, T0);
    raw.close();
    const store = new SqliteStore({ path });
    try {
      assert.deepEqual([(await store.jobs.get(kept))?.state, (await store.jobs.get(kept))?.labels], ['queued', { suite: 'old' }]);
      const [claimed] = await store.jobs.claim({ platforms: [X86], workerId: 'w1', max: 1, leaseMs: 1_000, nowMs: T0 });
      assert.equal(claimed?.id, kept);
      const stopped = await store.jobs.finish({ id: kept, attempt: 1, workerId: 'w1', outcome: { state: 'emergency_stopped', failure: { code: 'DEADLINE_EXCEEDED', message: 'x' } }, nowMs: T0 + 1 });
      assert.equal(stopped?.state, 'emergency_stopped');
      const later = (await store.jobs.enqueue(newJob('after-migration-7'))).job;
      assert.deepEqual((await store.jobs.list({ limit: 2 })).map((j) => j.id), [later.id, kept], 'newer rows still sort after the old ones');
    } finally {
      await store.close();
    }
  });

  test('two connections to one file never hand one job to two workers', async () => {
    const path = dbPath();
    const a = new SqliteStore({ path });
    const b = new SqliteStore({ path });
    try {
      for (let i = 0; i < 30; i++) await a.jobs.enqueue(newJob(`two-connections-${i}`));
      const claims = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          (i % 2 ? a : b).jobs.claim({ platforms: [X86], workerId: `w${i}`, max: 2, leaseMs: 1_000, nowMs: T0 }),
        ),
      );
      const ids = claims.flat().map((j) => j.id);
      assert.equal(ids.length, 30);
      assert.equal(new Set(ids).size, 30);
      for (const [i, batch] of claims.entries()) {
        for (const job of batch) assert.equal((await b.jobs.get(job.id))?.leaseOwner, `w${i}`);
      }
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('the merge guarantee is held by the database: a second connection merges too', async () => {
    const path = dbPath();
    const a = new SqliteStore({ path });
    const b = new SqliteStore({ path });
    try {
      const first = await a.jobs.enqueue(newJob('merge-across'));
      const second = await b.jobs.enqueue({ ...newJob('merge-across'), id: 'another-id' });
      assert.equal(second.merged, true);
      assert.equal(second.job.id, first.job.id);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
