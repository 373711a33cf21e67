/**
 * PostgresEventBus on a real PostgreSQL: two bus instances (two controllers) on one database, each reading
 * jobs back from a PostgresStore. The EventBus conformance suite runs on such a pair; then what is
 * PostgreSQL's own: a job change is read back once per notice and only where someone follows it, local
 * subscribers get it at once and once, the listener comes back after its connection is killed and after
 * a PostgreSQL restart and re-reads what it may have missed meanwhile, and a notice that is not a valid
 * event is reported and ignored.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, test } from 'node:test';
import pg from 'pg';
import type { JobState } from '../../../src/core/model.js';
import { MAX_LOG_CHUNK_BYTES } from '../../../src/events/bus-events.js';
import { PostgresEventBus } from '../../../src/events/postgres/postgres-event-bus.js';
import type { PostgresEventBusOptions } from '../../../src/events/postgres/postgres-event-bus.js';
import { PostgresStore } from '../../../src/store/postgres/postgres-store.js';
import type { JobRecord } from '../../../src/store/ports.js';
import { usePostgres } from '../../helpers/postgres.js';
import type { PostgresFixture } from '../../helpers/postgres.js';
import { actionDigestOf, makeReport, makeSpec, X86 } from '../../store/fixtures.js';
import { eventBusConformance, log, progress, waitUntil as waitFor, worker } from '../event-bus-conformance.js';

const T0 = 1_700_000_000_000;
const pgFixture = usePostgres();

const teardowns: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const fn of teardowns.splice(0).reverse()) await fn();
});

async function waitUntil(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(5);
  }
}

interface Pair {
  store: PostgresStore;
  a: PostgresEventBus;
  b: PostgresEventBus;
  /** Ids the loaders were asked for, per bus. */
  loads: { a: string[]; b: string[] };
  appName: { a: string; b: string };
  channel: string;
  errors: Error[];
}

async function pair(fixture: PostgresFixture, o: Partial<PostgresEventBusOptions> = {}): Promise<Pair> {
  const schema = fixture.newSchema('bus');
  const store = await PostgresStore.open({ url: fixture.url, schema, poolSize: 4 });
  teardowns.push(async () => {
    await store.close();
    await fixture.dropSchema(schema);
  });
  // One channel per test: files and tests sharing a database never hear each other.
  const channel = `ev_${schema}`;
  const loads = { a: [] as string[], b: [] as string[] };
  const errors: Error[] = [];
  const appName = { a: `remex-events-a-${schema}`, b: `remex-events-b-${schema}` };
  const start = (side: 'a' | 'b') =>
    PostgresEventBus.start({
      url: fixture.url,
      channel,
      applicationName: appName[side],
      reconnectDelayMs: 50,
      maxReconnectDelayMs: 200,
      onError: (err) => errors.push(err),
      load: (id) => {
        loads[side].push(id);
        return store.jobs.get(id);
      },
      ...o,
    });
  const a = await start('a');
  teardowns.push(() => a.close());
  const b = await start('b');
  teardowns.push(() => b.close());
  return { store, a, b, loads, appName, channel, errors };
}

async function queuedJob(store: PostgresStore, label: string): Promise<JobRecord> {
  const spec = makeSpec({ label: `${label}-${Math.random()}` });
  const { job } = await store.jobs.enqueue({ id: `${label}-${Math.random().toString(36).slice(2)}`, actionDigest: actionDigestOf(spec), instance: '', priority: 0, spec, nowMs: T0, mergeable: true });
  return job;
}

/** Kills the server side of every connection with this application_name. */
async function killConnections(fixture: PostgresFixture, applicationName: string): Promise<number> {
  const rows = await fixture.sql<{ killed: boolean }>('SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE application_name = $1', [applicationName]);
  return rows.filter((r) => r.killed).length;
}

if (pgFixture) {
  const fixture = pgFixture;

  eventBusConformance('postgres', async () => {
    const p = await pair(fixture);
    return { store: p.store, bus: p.a, peer: p.b, cleanup: async () => {
      for (const fn of teardowns.splice(0).reverse()) await fn();
    } };
  });

  describe('PostgresEventBus', () => {
    test('an event published on one controller reaches subscribers of that job on the other, read back once', async () => {
      const p = await pair(fixture);
      const job = await queuedJob(p.store, 'cross');
      const onB: JobRecord[] = [];
      const again: JobRecord[] = [];
      p.b.subscribe(job.id, (j) => onB.push(j));
      p.b.subscribe(job.id, (j) => again.push(j));
      p.a.publish(job);
      await waitUntil('B hears of the job', () => onB.length === 1 && again.length === 1);
      assert.deepEqual(onB[0], job);
      assert.deepEqual(again[0], job);
      assert.deepEqual(p.loads.b, [job.id], 'B re-read the job once, for both subscribers');
    });

    test('a job queued elsewhere is told by its platform alone: no job is read for it, and listeners of all jobs hear only local publishes', async () => {
      // No periodic re-read here: it would announce that any platform may have queued jobs.
      const p = await pair(fixture, { resyncIntervalMs: 0 });
      const job = await queuedJob(p.store, 'queued');
      const queuedOnB: Array<string | null> = [];
      const queuedOnA: Array<string | null> = [];
      const allOnB: JobRecord[] = [];
      p.b.onQueuedElsewhere((platform) => queuedOnB.push(platform));
      p.a.onQueuedElsewhere((platform) => queuedOnA.push(platform));
      p.b.subscribeAll((j) => allOnB.push(j));
      p.a.publish(job);
      await waitUntil('B hears that work was queued', () => queuedOnB.length === 1);
      assert.deepEqual(queuedOnB, [X86]);
      // A running job is not work waiting: no wake-up for it.
      const [claimed] = await p.store.jobs.claim({ platforms: [X86], workerId: 'w', max: 1, leaseMs: 60_000, nowMs: T0 });
      assert.ok(claimed);
      p.a.publish(claimed);
      // Nor a queued job a worker on A was already woken for.
      p.a.publish(await queuedJob(p.store, 'taken-on-a'), { workerWoken: true });
      const marker = await queuedJob(p.store, 'marker');
      p.a.publish(marker);
      await waitUntil('B hears of the marker', () => queuedOnB.length === 2);
      assert.deepEqual(queuedOnB, [X86, X86], 'the running job and the job A woke a worker for woke nobody on B');
      assert.deepEqual(queuedOnA, [], 'a controller is not told of its own publishes');
      assert.deepEqual(allOnB, [], 'jobs changed elsewhere reach only their own subscribers');
      assert.deepEqual(p.loads.b, [], 'nothing was read back');
    });

    test('local subscribers get a publish at once and only once; the publisher never re-reads its own', async () => {
      const p = await pair(fixture);
      const job = await queuedJob(p.store, 'local');
      const onA: JobRecord[] = [];
      const onB: JobRecord[] = [];
      p.a.subscribe(job.id, (j) => onA.push(j));
      p.a.subscribeAll((j) => onA.push(j));
      p.b.subscribe(job.id, (j) => onB.push(j));
      p.a.publish(job);
      assert.equal(onA.length, 2, 'delivered synchronously, without the round trip');
      assert.equal(onA[0], job, 'the very object published');
      await waitUntil('B hears of it', () => onB.length === 1);
      await sleep(100);
      assert.equal(onA.length, 2, 'A got its own NOTIFY back and ignored it');
      assert.deepEqual(p.loads.a, []);
    });

    test('a burst of changes elsewhere arrives in order, ends at the newest version, and never repeats one', async () => {
      const p = await pair(fixture);
      const job = await queuedJob(p.store, 'burst');
      const seen: JobState[] = [];
      p.b.subscribe(job.id, (j) => seen.push(j.state));
      p.a.publish(job);
      const [running] = await p.store.jobs.claim({ platforms: [X86], workerId: 'w', max: 1, leaseMs: 10_000, nowMs: T0 });
      assert.ok(running);
      p.a.publish(running);
      const done = await p.store.jobs.finish({ id: job.id, attempt: 1, workerId: 'w', outcome: { state: 'completed', result: makeReport() }, nowMs: T0 + 1 });
      assert.ok(done);
      p.a.publish(done);
      await waitUntil('B sees it completed', () => seen.at(-1) === 'completed');
      await sleep(100);
      const order: JobState[] = ['queued', 'running', 'completed'];
      assert.deepEqual(seen, [...new Set(seen)], `a version delivered twice: ${seen.join(',')}`);
      assert.deepEqual(seen, order.filter((s) => seen.includes(s)), `out of order: ${seen.join(',')}`);
      assert.ok(p.loads.b.length <= 3);
    });

    test('nobody listening on the other side: nothing is read', async () => {
      const p = await pair(fixture);
      const job = await queuedJob(p.store, 'unheard');
      const other = await queuedJob(p.store, 'heard');
      const heard: JobRecord[] = [];
      p.b.subscribe(other.id, (j) => heard.push(j));
      p.a.publish(job);
      p.a.publish(other);
      await waitUntil('B hears of the other job', () => heard.length === 1);
      assert.deepEqual(p.loads.b, [other.id]);
    });

    test('the listener comes back after its connection is killed, re-reads the jobs waited on, and says jobs of any platform may wait', async () => {
      const p = await pair(fixture);
      const job = await queuedJob(p.store, 'resync');
      const onB: JobRecord[] = [];
      p.b.subscribe(job.id, (j) => onB.push(j));
      const queuedOnB: Array<string | null> = [];
      p.b.onQueuedElsewhere((platform) => queuedOnB.push(platform));
      // A change whose NOTIFY B never gets (published nowhere), then B's connections die.
      const cancelled = await p.store.jobs.cancel(job.id, T0 + 1);
      assert.equal(cancelled?.state, 'cancelled');
      assert.ok((await killConnections(fixture, p.appName.b)) >= 1);
      await waitUntil('B re-read the job after reconnecting', () => onB.length === 1);
      assert.equal(onB[0]?.state, 'cancelled');
      // Notices of jobs queued meanwhile are lost with the connection: the scheduler must look for itself.
      await waitUntil('B says any platform may have queued jobs', () => queuedOnB.includes(null));
      await p.b.whenListening();
      assert.equal(p.b.listening, true);
      // And it keeps working.
      const next = await queuedJob(p.store, 'after-kill');
      const later: JobRecord[] = [];
      p.b.subscribe(next.id, (j) => later.push(j));
      p.a.publish(next);
      await waitUntil('B hears of a new job', () => later.length === 1);
      assert.ok(p.errors.length >= 1, 'the connection loss was reported');
    });

    test('a change whose NOTIFY was lost (its controller died after the commit) still reaches waiters by the periodic re-read, and queued work is looked for', async () => {
      const p = await pair(fixture, { resyncIntervalMs: 100 });
      const job = await queuedJob(p.store, 'lost-notify');
      const onB: JobState[] = [];
      p.b.subscribe(job.id, (j) => onB.push(j.state));
      const queuedOnB: Array<string | null> = [];
      p.b.onQueuedElsewhere((platform) => queuedOnB.push(platform));
      await p.store.jobs.cancel(job.id, T0 + 1); // committed, never published
      await waitUntil('B re-read it', () => onB.includes('cancelled'), 2_000);
      await sleep(250);
      assert.deepEqual(onB, ['cancelled'], 'the unchanged job is not delivered again on later re-reads');
      // A queued job whose notice was lost is looked for as often: any platform may have one.
      assert.ok(queuedOnB.filter((x) => x === null).length >= 2, JSON.stringify(queuedOnB));
    });

    test('publishing survives a killed publishing connection', async () => {
      const p = await pair(fixture);
      const first = await queuedJob(p.store, 'pub-1');
      const onB: string[] = [];
      p.b.subscribe(first.id, (j) => onB.push(j.id));
      p.a.publish(first);
      await waitUntil('B hears of the first', () => onB.includes(first.id));
      await killConnections(fixture, p.appName.a);
      await p.a.whenListening();
      const second = await queuedJob(p.store, 'pub-2');
      p.b.subscribe(second.id, (j) => onB.push(j.id));
      p.a.publish(second);
      await waitUntil('B hears of the second', () => onB.includes(second.id));
    });

    test('both controllers carry on after PostgreSQL restarts', async (t) => {
      const restart = fixture.server.restart;
      if (!restart) {
        t.skip('PostgreSQL given by URL: this test cannot restart it');
        return;
      }
      const p = await pair(fixture);
      const job = await queuedJob(p.store, 'restart');
      const onB: JobState[] = [];
      p.b.subscribe(job.id, (j) => onB.push(j.state));
      await restart();
      await Promise.all([p.a.whenListening(), p.b.whenListening()]);
      const [running] = await p.store.jobs.claim({ platforms: [X86], workerId: 'w', max: 1, leaseMs: 10_000, nowMs: T0 });
      assert.ok(running);
      p.a.publish(running);
      await waitUntil('B hears of the change after the restart', () => onB.includes('running'), 10_000);
    });

    test('progress, log and worker events are delivered from their notice, with no read; a kind listener of job changes makes a controller read every job changed elsewhere', async () => {
      const p = await pair(fixture);
      const job = await queuedJob(p.store, 'kinds');
      const onB: string[] = [];
      p.b.subscribeJobEvents(job.id, (e) => onB.push(e.kind));
      p.b.subscribeKind('worker', (e) => onB.push(`worker:${e.state}`));
      p.a.publishEvent(progress(job.id, 50));
      p.a.publishEvent(log(job.id, 0, Buffer.from('line\n')));
      p.a.publishEvent(worker('w', 'drained'));
      await waitFor('B hears all three', () => onB.length === 3);
      assert.deepEqual(onB, ['progress', 'log', 'worker:drained']);
      assert.deepEqual(p.loads.b, [], 'nothing was read for them');
      // A job nobody on B follows is read there once someone listens to every job change.
      const unfollowed = await queuedJob(p.store, 'unfollowed');
      const changes: string[] = [];
      const stop = p.b.subscribeKind('job', (e) => changes.push(e.job.id));
      p.a.publish(unfollowed);
      await waitFor('B hears the change', () => changes.length === 1);
      assert.deepEqual(p.loads.b, [unfollowed.id]);
      stop();
      p.a.publish(await queuedJob(p.store, 'unheard'));
      p.a.publishEvent(worker('marker', 'gone'));
      await waitFor('B hears the marker', () => onB.includes('worker:gone'));
      assert.deepEqual(p.loads.b, [unfollowed.id], 'without such a listener, jobs nobody follows are not read');
    });

    test('a log chunk bigger than one NOTIFY goes in several, each within the limit', async () => {
      const p = await pair(fixture);
      const notices: string[] = [];
      const spy = new pg.Client({ connectionString: fixture.url });
      await spy.connect();
      teardowns.push(() => spy.end());
      spy.on('notification', (msg) => notices.push(msg.payload ?? ''));
      await spy.query(`LISTEN "${p.channel}"`);
      const chunks: number[] = [];
      p.b.subscribeKind('log', (e) => chunks.push(e.data.byteLength));
      p.a.publishEvent(log('big', 0, Buffer.alloc(MAX_LOG_CHUNK_BYTES, 7)));
      await waitFor('B has every byte', () => chunks.reduce((a, b) => a + b, 0) === MAX_LOG_CHUNK_BYTES);
      await waitFor('the spy has every notice', () => notices.length === chunks.length);
      assert.ok(chunks.length > 1, `${chunks.length} chunks`);
      assert.ok(notices.every((n) => Buffer.byteLength(n) < 8_000));
    });

    test('a notice of a known kind that is not a valid event is reported and ignored, anything else ignored quietly, and the bus goes on', async () => {
      const p = await pair(fixture);
      const heard: string[] = [];
      p.b.subscribeKind('progress', (e) => heard.push(e.jobId));
      const invalid = [JSON.stringify({ o: 'x', k: 'progress', jobId: 'j', attempt: 1, percent: 500, atMs: 1 }), JSON.stringify({ o: 'x', k: 'log', jobId: 'j', attempt: 1, stream: 'stdout', offset: 0, data: '', atMs: 1 })];
      const notOurs = ['not json', '[]', JSON.stringify({ o: 'x', k: 'job', id: 'j' }), JSON.stringify({ o: 'x', k: 'a-later-kind' })];
      for (const payload of [...notOurs, ...invalid]) await fixture.sql('SELECT pg_notify($1, $2)', [p.channel, payload]);
      p.a.publishEvent(progress('after-junk', 1));
      await waitFor('B hears the valid event', () => heard.length === 1);
      assert.deepEqual(heard, ['after-junk']);
      // Both buses listen on the channel: each reports each.
      await waitFor('both buses report the invalid ones', () => p.errors.filter((e) => /not a valid event/.test(e.message)).length === 2 * invalid.length);
      await sleep(50);
      assert.equal(p.errors.length, 2 * invalid.length, p.errors.map((e) => e.message).join('; '));
    });

    test('close stops delivery and releases the connections', async () => {
      const p = await pair(fixture);
      const job = await queuedJob(p.store, 'closed');
      const onB: JobRecord[] = [];
      p.b.subscribe(job.id, (j) => onB.push(j));
      await p.b.close();
      p.a.publish(job);
      await sleep(100);
      assert.deepEqual(onB, []);
      await waitUntil('B has no connection left', async () => (await fixture.sql('SELECT 1 FROM pg_stat_activity WHERE application_name = $1', [p.appName.b])).length === 0);
    });
  });
}
