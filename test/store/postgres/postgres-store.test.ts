/**
 * PostgresStore: the Store conformance suite on a real PostgreSQL (each test in its own schema), plus what
 * is PostgreSQL's own: migrations run concurrently by several controllers, claims from two pools (two
 * controllers) on one queue, and the merge guarantee across pools.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pg from 'pg';
import { isRemexError } from '../../../src/core/errors.js';
import { POSTGRES_MIGRATIONS } from '../../../src/store/postgres/schema.js';
import { PostgresStore } from '../../../src/store/postgres/postgres-store.js';
import type { Store } from '../../../src/store/ports.js';
import { usePostgres } from '../../helpers/postgres.js';
import { eventually } from '../../helpers/processes.js';
import { actionDigestOf, ARM, makeReport, makeSpec, X86 } from '../fixtures.js';
import { storeConformance } from '../store-conformance.js';
import type { StoreHandle } from '../store-conformance.js';

const T0 = 1_700_000_000_000;

const pgFixture = usePostgres();

if (pgFixture) {
  const fixture = pgFixture;
  const POOL_SIZE = 4;

  /** A store on a fresh schema; `reopen` closes it and opens the same schema again, as a restart would. */
  async function schemaStore(): Promise<StoreHandle> {
    const schema = fixture.newSchema('conf');
    let current = await PostgresStore.open({ url: fixture.url, schema, poolSize: POOL_SIZE });
    return {
      store: current,
      async reopen(): Promise<Store> {
        await current.close();
        current = await PostgresStore.open({ url: fixture.url, schema, poolSize: POOL_SIZE });
        return current;
      },
      async cleanup(): Promise<void> {
        await current.close();
        await fixture.dropSchema(schema);
      },
    };
  }

  storeConformance('postgres', schemaStore, { durable: true });

  describe('PostgresStore specifics', () => {
    function newJob(label: string, platform = X86) {
      const spec = makeSpec({ label, platform });
      return { id: `id-${label}`, actionDigest: actionDigestOf(spec), instance: '', priority: 0, spec, nowMs: T0, mergeable: true };
    }

    async function withStores<T>(n: number, fn: (stores: PostgresStore[], schema: string) => Promise<T>): Promise<T> {
      const schema = fixture.newSchema('spec');
      const stores = await Promise.all(Array.from({ length: n }, () => PostgresStore.open({ url: fixture.url, schema, poolSize: POOL_SIZE })));
      try {
        return await fn(stores, schema);
      } finally {
        await Promise.all(stores.map((s) => s.close()));
        await fixture.dropSchema(schema);
      }
    }

    test('migrations run concurrently from three controllers at once: no error, each version applied once', async () => {
      await withStores(3, async ([a, b, c], schema) => {
        assert.ok(a && b && c);
        const versions = await fixture.sql<{ version: number }>(`SELECT version FROM "${schema}".remex_migrations ORDER BY version`);
        assert.deepEqual(versions.map((v) => v.version), POSTGRES_MIGRATIONS.map((_, i) => i + 1));
        const tables = await fixture.sql<{ table_name: string }>(
          `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`,
          [schema],
        );
        assert.deepEqual(tables.map((t) => t.table_name), ['action_cache', 'blob_refs', 'blob_refs_released', 'comparisons', 'jobs', 'log_pieces', 'remex_migrations', 'workers']);
        // Every controller sees one and the same data.
        const { job } = await a.jobs.enqueue(newJob('seen-by-all'));
        assert.deepEqual(await b.jobs.get(job.id), job);
        assert.deepEqual(await c.jobs.get(job.id), job);
        // And opening again applies nothing.
        const again = await PostgresStore.open({ url: fixture.url, schema, poolSize: 1 });
        await again.close();
        assert.equal((await fixture.sql(`SELECT 1 FROM "${schema}".remex_migrations`)).length, POSTGRES_MIGRATIONS.length);
      });
    });

    test('a role without the right to create anything can use a schema its owner migrated', async () => {
      await withStores(1, async (_stores, schema) => {
        const role = `r_${schema}`;
        const q = (id: string) => `"${id}"`;
        await fixture.sql(`CREATE ROLE ${q(role)} LOGIN`);
        try {
          await fixture.sql(`GRANT USAGE ON SCHEMA ${q(schema)} TO ${q(role)}`);
          await fixture.sql(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ${q(schema)} TO ${q(role)}`);
          const url = new URL(fixture.url);
          url.username = role;
          url.password = '';
          const limited = await PostgresStore.open({ url: url.toString(), schema, poolSize: 1 });
          try {
            const { job } = await limited.jobs.enqueue(newJob('limited-role'));
            assert.equal((await limited.jobs.get(job.id))?.state, 'queued');
          } finally {
            await limited.close();
          }
        } finally {
          await fixture.sql(`DROP OWNED BY ${q(role)}`);
          await fixture.sql(`DROP ROLE ${q(role)}`);
        }
      });
    });

    test('a schema migrated by a newer remex is refused rather than misread', async () => {
      await withStores(1, async (_stores, schema) => {
        await fixture.sql(`INSERT INTO "${schema}".remex_migrations (version) VALUES ($1)`, [POSTGRES_MIGRATIONS.length + 1]);
        await assert.rejects(PostgresStore.open({ url: fixture.url, schema }), /newer than this remex knows/);
      });
    });

    test('two controllers (two pools) claiming from one queue concurrently never double-claim', async () => {
      await withStores(2, async ([a, b]) => {
        assert.ok(a && b);
        const total = 120;
        for (let i = 0; i < total; i++) await (i % 2 ? a : b).jobs.enqueue(newJob(`two-pools-${i}`, i % 3 ? X86 : ARM));
        const claims = await Promise.all(
          Array.from({ length: 40 }, (_, i) =>
            (i % 2 ? a : b).jobs.claim({ platforms: i % 4 < 2 ? [X86, ARM] : [ARM, X86], workerId: `w${i}`, max: 4, leaseMs: 1_000, nowMs: T0 }),
          ),
        );
        const ids = claims.flat().map((j) => j.id);
        assert.equal(new Set(ids).size, ids.length, 'a job was handed to two workers');
        // SKIP LOCKED passes over rows being claimed elsewhere, so one round may leave some queued: drain them.
        let rest = await a.jobs.claim({ platforms: [X86, ARM], workerId: 'sweeper', max: total, leaseMs: 1_000, nowMs: T0 });
        rest = [...rest, ...(await b.jobs.claim({ platforms: [X86, ARM], workerId: 'sweeper', max: total, leaseMs: 1_000, nowMs: T0 }))];
        const all = [...ids, ...rest.map((j) => j.id)];
        assert.equal(all.length, total);
        assert.equal(new Set(all).size, total);
        for (const [i, batch] of claims.entries()) {
          assert.ok(batch.length <= 4);
          for (const job of batch) {
            const seen = await a.jobs.get(job.id);
            assert.equal(seen?.leaseOwner, `w${i}`);
            assert.equal(seen?.attempt, 1);
          }
        }
      });
    });

    test('the merge guarantee is held by the database: concurrent identical enqueues on two pools make one job', async () => {
      await withStores(2, async ([a, b]) => {
        assert.ok(a && b);
        const results = await Promise.all(
          Array.from({ length: 16 }, (_, i) => (i % 2 ? a : b).jobs.enqueue({ ...newJob('merge-across'), id: `merge-${i}` })),
        );
        const ids = new Set(results.map((r) => r.job.id));
        assert.equal(ids.size, 1);
        assert.equal(results.filter((r) => !r.merged).length, 1);
        assert.equal((await a.jobs.list({ limit: 100 })).length, 1);
      });
    });

    test('a value the database refuses fails its own enqueue only, not the others sharing its statement', async () => {
      await withStores(1, async ([store]) => {
        assert.ok(store);
        const jobs = Array.from({ length: 12 }, (_, i) => ({ ...newJob(`poison-${i}`), id: `poison-${i}`, mergeable: false }));
        // int4 overflow: PostgreSQL refuses this row (SQLite would take it; the HTTP and gRPC doors bound priorities).
        const poisoned = { ...newJob('poison-bad'), id: 'poison-bad', priority: 2 ** 40, mergeable: false };
        const outcomes = await Promise.allSettled([...jobs, poisoned].map((j) => store.jobs.enqueue(j)));
        const bad = outcomes.at(-1);
        assert.equal(bad?.status, 'rejected');
        outcomes.slice(0, -1).forEach((o, i) => {
          assert.equal(o.status, 'fulfilled', `job ${i} was refused with its neighbour`);
          if (o.status === 'fulfilled') assert.equal(o.value.job.id, `poison-${i}`);
        });
        assert.equal((await store.jobs.list({ limit: 100 })).length, jobs.length);
      });
    });

    test('only one of two controllers expiring the same leases at once reports each job', async () => {
      await withStores(2, async ([a, b]) => {
        assert.ok(a && b);
        for (let i = 0; i < 30; i++) await a.jobs.enqueue(newJob(`expire-race-${i}`));
        await a.jobs.claim({ platforms: [X86], workerId: 'w', max: 30, leaseMs: 10, nowMs: T0 });
        const [ea, eb] = await Promise.all([a.jobs.expireLeases(T0 + 1_000, 3), b.jobs.expireLeases(T0 + 1_000, 3)]);
        assert.ok(ea && eb);
        const requeued = [...ea.requeued, ...eb.requeued].map((j) => j.id);
        assert.equal(new Set(requeued).size, requeued.length, 'a job was requeued twice');
        // Whatever one skipped because the other held it, the next tick finds nothing left expired.
        const later = await a.jobs.expireLeases(T0 + 1_000, 3);
        assert.equal(requeued.length + later.requeued.length, 30);
      });
    });

    test('JSON documents round-trip exactly, NUL escapes and all', async () => {
      await withStores(1, async ([s]) => {
        assert.ok(s);
        const report = makeReport({ stdoutText: 'nul \u0000 and emoji 🎉 and "quotes"\n' });
        const job = newJob('json-exact');
        job.spec.command.environmentVariables.push({ name: 'NUL', value: 'a\u0000b' });
        const { job: stored } = await s.jobs.enqueue(job);
        assert.deepEqual((await s.jobs.get(stored.id))?.spec, job.spec);
        const [claimed] = await s.jobs.claim({ platforms: [X86], workerId: 'w', max: 1, leaseMs: 1_000, nowMs: T0 });
        assert.ok(claimed);
        const done = await s.jobs.finish({ id: claimed.id, attempt: 1, workerId: 'w', outcome: { state: 'completed', result: report }, nowMs: T0 + 1 });
        assert.deepEqual(done?.result, report);
        await s.actionCache.put('', job.actionDigest, report, T0);
        assert.deepEqual(await s.actionCache.get('', job.actionDigest), report);
      });
    });

    test('an unreachable database is UNAVAILABLE, not an opaque driver error', async () => {
      const url = new URL(fixture.url);
      url.hostname = '127.0.0.1';
      url.port = '1'; // nothing listens on port 1
      await assert.rejects(PostgresStore.open({ url: url.toString(), schema: 'unused' }), (err: unknown) => {
        assert.ok(isRemexError(err, 'UNAVAILABLE'), String(err));
        return true;
      });
    });

    test('a connection lost in the middle of a transaction fails that call UNAVAILABLE; the process and the store go on', async () => {
      const schema = fixture.newSchema('lost');
      const applicationName = `remex-${schema}`;
      const s = await PostgresStore.open({ url: fixture.url, schema, poolSize: 2, applicationName });
      const holder = new pg.Client({ connectionString: fixture.url });
      await holder.connect();
      try {
        const { job } = await s.jobs.enqueue(newJob('lost-mid-transaction'));
        await s.jobs.claim({ platforms: [X86], workerId: 'w', max: 1, leaseMs: 1_000, nowMs: T0 });
        // Another session holds the job's row, so the release waits for it inside its transaction.
        await holder.query('BEGIN');
        await holder.query(`SELECT 1 FROM "${schema}".jobs WHERE id = $1 FOR UPDATE`, [job.id]);
        // Its outcome is taken at once: it may fail before the kill below returns, and must not be unhandled meanwhile.
        const releasing = s.jobs.releaseLeasesOf(['w'], T0 + 1, 3).then(() => undefined, (err: unknown) => err);
        await eventually(
          async () => ((await fixture.sql(`SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`, [applicationName])).length > 0 ? true : undefined),
          10_000,
          'the release to wait on the row lock',
        );
        // The server ends that connection (as a restart or an administrator would) mid-transaction: without
        // a listener on the checked-out client, its 'error' event would crash the process.
        await fixture.sql(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`, [applicationName]);
        const err = await releasing;
        assert.ok(isRemexError(err, 'UNAVAILABLE'), `the release ended with ${String(err)}`);
        await holder.query('ROLLBACK');
        const after = await s.jobs.get(job.id);
        assert.equal(after?.state, 'running', 'the transaction was rolled back');
        assert.equal((await s.jobs.releaseLeasesOf(['w'], T0 + 2, 3)).requeued.length, 1, 'a new connection serves the next call');
      } finally {
        await holder.end();
        await s.close();
        await fixture.dropSchema(schema);
      }
    });

    test('a bad schema name or pool size is refused before connecting', async () => {
      await assert.rejects(PostgresStore.open({ url: fixture.url, schema: '' }), RangeError);
      await assert.rejects(PostgresStore.open({ url: fixture.url, schema: 'x'.repeat(64) }), RangeError);
      await assert.rejects(PostgresStore.open({ url: fixture.url, poolSize: 0 }), RangeError);
    });

    test('a schema name that needs quoting works', async () => {
      const schema = `Odd "name" ${fixture.newSchema()}`;
      const s = await PostgresStore.open({ url: fixture.url, schema, poolSize: 2 });
      try {
        const { job } = await s.jobs.enqueue(newJob('odd-schema'));
        assert.equal((await s.jobs.get(job.id))?.state, 'queued');
      } finally {
        await s.close();
        await fixture.dropSchema(schema);
      }
    });
  });
}
