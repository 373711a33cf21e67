/**
 * CasLogStore (decision 0043): live-log pieces as CAS blobs, indexed in the store's LogPieceIndex, on the
 * embedded SQLite store and on a real PostgreSQL, with a filesystem CAS. The LogStore's contract as
 * FsLogStore keeps it (appends by offset, a chunk again stored once, one past the end refused with where to
 * resume, reads across pieces, remove), and what sharing adds: another controller's store (a second
 * connection to the same database and CAS) reads what the first took in and goes on from its end, and two
 * controllers appending the same bytes at once keep them once.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { FsBlobStore } from '../../src/cas/fs/fs-blob-store.js';
import { CasLogStore } from '../../src/logs/cas-log-store.js';
import { PostgresStore } from '../../src/store/postgres/postgres-store.js';
import type { Store } from '../../src/store/ports.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { usePostgres } from '../helpers/postgres.js';

const OUT = { jobId: 'job-1', attempt: 1, stream: 'stdout' as const };
const bytes = (text: string): Buffer => Buffer.from(text);

/** Opens a store on the same database each call (one controller each); `cleanup` after they are closed. */
interface Opener {
  open(): Promise<Store>;
  cleanup(): Promise<void> | void;
}

function backends(t: TestContext, open: Opener): { controller(): Promise<CasLogStore> } {
  const dir = mkdtempSync(join(tmpdir(), 'remex-cas-logs-'));
  const blobs = new FsBlobStore({ root: join(dir, 'cas'), maxBlobBytes: 1 << 30, fsync: false });
  const stores: Store[] = [];
  t.after(async () => {
    for (const s of stores) await s.close();
    await open.cleanup();
    await blobs.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    async controller() {
      const store = await open.open();
      stores.push(store);
      return new CasLogStore(blobs, store.logPieces);
    },
  };
}

function contract(name: string, opener: () => Opener): void {
  describe(`CasLogStore on ${name}`, () => {
    test('appends by offset: a chunk sent again is stored once, one past the end is refused with where to resume; reads cross pieces', async (t) => {
      const logs = await backends(t, opener()).controller();
      assert.equal(await logs.append(OUT, 0, bytes('hello ')), 6);
      assert.equal(await logs.append(OUT, 0, bytes('hello ')), 6, 'the same chunk again');
      assert.equal(await logs.append(OUT, 3, bytes('lo world')), 11, 'overlapping: only the new bytes');
      assert.equal(await logs.append(OUT, 20, bytes('later')), 11, 'past the end: nothing stored');
      assert.equal((await logs.read(OUT, 0, 100)).toString(), 'hello world');
      assert.equal((await logs.read(OUT, 4, 4)).toString(), 'o wo', 'a read across two pieces');
      assert.equal((await logs.read(OUT, 11, 10)).byteLength, 0);
      assert.equal((await logs.read({ ...OUT, stream: 'stderr' }, 0, 10)).byteLength, 0, 'a log never written reads empty');
      assert.equal(await logs.size({ ...OUT, attempt: 2 }), 0);
      await logs.remove(OUT.jobId);
      assert.equal(await logs.size(OUT), 0);
    });

    test('another controller reads what one took in and goes on from its end; the same bytes from both at once are kept once', async (t) => {
      const cluster = backends(t, opener());
      const [a, b] = [await cluster.controller(), await cluster.controller()];
      assert.equal(await a.append(OUT, 0, bytes('line 1\n')), 7);
      assert.equal(await b.size(OUT), 7);
      assert.equal((await b.read(OUT, 0, 100)).toString(), 'line 1\n');
      assert.equal(await b.append(OUT, 0, bytes('line 1\nline 2\n')), 14, 'a worker that moved sends from where it was');
      await Promise.all([a.append(OUT, 14, bytes('line 3\n')), b.append(OUT, 14, bytes('line 3\n'))]);
      assert.equal((await a.read(OUT, 0, 100)).toString(), 'line 1\nline 2\nline 3\n');
      assert.equal(await b.size(OUT), 21);
    });
  });
}

contract('SQLite', () => {
  const dir = mkdtempSync(join(tmpdir(), 'remex-cas-logs-db-'));
  return { open: async () => new SqliteStore({ path: join(dir, 'remex.db') }), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
});

const pgFixture = usePostgres();
if (pgFixture) {
  const fixture = pgFixture;
  contract('PostgreSQL', () => {
    const schema = fixture.newSchema('logs');
    return { open: () => PostgresStore.open({ url: fixture.url, schema, poolSize: 2 }), cleanup: () => fixture.dropSchema(schema) };
  });
}
