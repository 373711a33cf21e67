/**
 * The store's LeaderLease on both adapters: one holder at a time, and another takes over when the holder
 * gives up or dies — on PostgreSQL (real server) the holder's store closing ends its session and its lock.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { PostgresStore } from '../../src/store/postgres/postgres-store.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { withRecentActionResults } from '../../src/store/recent-action-results.js';
import { usePostgres } from '../helpers/postgres.js';

describe('LeaderLease on SQLite', () => {
  test('one holder; released or expired, another takes it', async () => {
    const store = new SqliteStore({ path: ':memory:' });
    const lease = store.leader;
    assert.equal(await lease.tryAcquire('autoscaler', 'a', 1000, 0), true);
    assert.equal(await lease.tryAcquire('autoscaler', 'b', 1000, 10), false);
    assert.equal(await lease.tryAcquire('autoscaler', 'a', 1000, 500), true, 'the holder renews');
    assert.equal(await lease.tryAcquire('autoscaler', 'b', 1000, 1600), true, 'a holder that stopped renewing lost it');
    await lease.release('autoscaler', 'a');
    assert.equal(await lease.tryAcquire('autoscaler', 'a', 1000, 1700), false, 'releasing what one does not hold does nothing');
    await lease.release('autoscaler', 'b');
    assert.equal(await lease.tryAcquire('autoscaler', 'a', 1000, 1800), true);
    await store.close();
  });
});

const pg = usePostgres();
if (pg) {
  describe('LeaderLease on PostgreSQL', () => {
    test('two controllers: exactly one leads; when its controller dies, the other takes over', async () => {
      const schema = pg.newSchema('lease');
      const a = await PostgresStore.open({ url: pg.url, schema, poolSize: 2 });
      const b = await PostgresStore.open({ url: pg.url, schema, poolSize: 2 });
      let closedA = false;
      const name = `autoscaler-${randomUUID()}`; // advisory locks are per database: a name of this test's own
      try {
        assert.equal(await a.leader.tryAcquire(name, 'a', 30_000, 0), true);
        assert.equal(await b.leader.tryAcquire(name, 'b', 30_000, 0), false);
        assert.equal(await a.leader.tryAcquire(name, 'a', 30_000, 0), true, 'the holder keeps it');
        assert.equal(await b.leader.tryAcquire(name, 'b', 30_000, 0), false);
        await a.close(); // the controller dies: its session and lock go with it
        closedA = true;
        assert.equal(await b.leader.tryAcquire(name, 'b', 30_000, 0), true, 'the other takes over');
        await b.leader.release(name, 'b');
        const c = await PostgresStore.open({ url: pg.url, schema, poolSize: 2 });
        assert.equal(await c.leader.tryAcquire(name, 'c', 30_000, 0), true, 'released: free for anyone');
        await c.close();
      } finally {
        await b.close();
        if (!closedA) await a.close();
        await pg.dropSchema(schema);
      }
    });

    test('the store a controller serves with (its action cache behind the recent-results front) keeps the shared lease', async () => {
      const schema = pg.newSchema('lease');
      const a = withRecentActionResults(await PostgresStore.open({ url: pg.url, schema, poolSize: 2 }));
      const b = withRecentActionResults(await PostgresStore.open({ url: pg.url, schema, poolSize: 2 }));
      const name = `autoscaler-${randomUUID()}`;
      try {
        assert.ok(a.leader && b.leader, 'the lease is passed through');
        assert.equal(await a.leader.tryAcquire(name, 'a', 30_000, 0), true);
        assert.equal(await b.leader.tryAcquire(name, 'b', 30_000, 0), false, 'one controller leads, not both');
        await a.leader.release(name, 'a');
      } finally {
        await a.close();
        await b.close();
        await pg.dropSchema(schema);
      }
    });
  });
}
