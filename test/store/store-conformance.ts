/**
 * The behavioural suite of the Store port. Every adapter runs it unchanged (sqlite/sqlite-store.test.ts,
 * postgres/postgres-store.test.ts): `storeConformance('name', () => …)` is all a new backend's test file
 * needs. Times are passed in explicitly (`nowMs`), so nothing here depends on the wall clock.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import type { Digest } from '../../src/core/digest.js';
import { digestOf } from '../../src/core/digest.js';
import type { ExecutionSpec } from '../../src/core/model.js';
import { CANCELLED_BEFORE_START, CANCELLED_WORKER_LOST, LOST_NO_RETRY, lostFailure } from '../../src/store/job-rules.js';
import type { JobQuery, JobRecord, NewJob, Store, WorkerRecord } from '../../src/store/ports.js';
import { isRemexError } from '../../src/core/errors.js';
import { actionDigestOf, ARM, makeReport, makeSpec, RISCV, X86 } from './fixtures.js';

export interface StoreHandle {
  store: Store;
  /** Closes whatever store is current and deletes its data. */
  cleanup(): Promise<void>;
  /**
   * Closes the store and opens a new one over the same data (a restart). Absent when the backend keeps
   * nothing across a close (SQLite ':memory:'); the durability tests are then skipped.
   */
  reopen?(): Promise<Store>;
}

export type StoreFactory = () => Promise<StoreHandle>;

const T0 = 1_700_000_000_000;
const LEASE_MS = 1_000;

let seq = 0;

function newJob(
  o: { label?: string; platform?: string; instance?: string; priority?: number; mergeable?: boolean; nowMs?: number; spec?: ExecutionSpec; name?: string; labels?: Record<string, string>; noRetry?: boolean; notifyUrl?: string } = {},
): NewJob {
  const spec = o.spec ?? makeSpec({ label: o.label ?? `job-${++seq}`, platform: o.platform ?? X86 });
  return {
    id: `job-${++seq}-${Math.random().toString(36).slice(2, 8)}`,
    actionDigest: actionDigestOf(spec),
    instance: o.instance ?? '',
    priority: o.priority ?? 0,
    spec,
    nowMs: o.nowMs ?? T0,
    mergeable: o.mergeable ?? true,
    ...(o.name !== undefined ? { name: o.name } : {}),
    ...(o.labels ? { labels: o.labels } : {}),
    ...(o.noRetry ? { noRetry: true } : {}),
    ...(o.notifyUrl !== undefined ? { notifyUrl: o.notifyUrl } : {}),
  };
}

function worker(id: string, o: Partial<WorkerRecord> = {}): WorkerRecord {
  return {
    id,
    name: `${id}-name`,
    platforms: [{ platform: X86, emulated: false }],
    slots: 2,
    state: 'active',
    registeredAtMs: T0,
    lastSeenAtMs: T0,
    labels: {},
    instanceId: null,
    drainRequested: false,
    ...o,
  };
}

function sortedIds(jobs: readonly JobRecord[]): string[] {
  return jobs.map((j) => j.id).sort();
}

/** What a backend can do; the suite defines only the tests that apply (never a skip counted as a pass). */
export interface StoreCapabilities {
  /** Keeps its data across close and reopen. */
  durable: boolean;
}

export function storeConformance(name: string, factory: StoreFactory, capabilities: StoreCapabilities): void {
  describe(`Store conformance: ${name}`, () => {
    let handle: StoreHandle;
    let store: Store;

    beforeEach(async () => {
      handle = await factory();
      store = handle.store;
    });
    afterEach(async () => {
      await handle.cleanup();
    });

    async function enqueue(o: Parameters<typeof newJob>[0] = {}): Promise<JobRecord> {
      const { job, merged } = await store.jobs.enqueue(newJob(o));
      assert.equal(merged, false);
      return job;
    }

    async function claimOne(workerId: string, nowMs = T0, platforms: readonly string[] = [X86]): Promise<JobRecord> {
      const [job, ...rest] = await store.jobs.claim({ platforms, workerId, max: 1, leaseMs: LEASE_MS, nowMs });
      assert.ok(job, 'expected a job to claim');
      assert.equal(rest.length, 0);
      return job;
    }

    describe('jobs: retention', () => {
      test('deleteFinishedBefore removes finished jobs completed before the cutoff, in batches, and never a queued or running one', async () => {
        const old = [];
        for (let i = 0; i < 3; i++) {
          const job = await enqueue({ label: `old-${i}` });
          await store.jobs.fail(job.id, { code: 'INTERNAL', message: 'boom' }, T0 + 10);
          old.push(job.id);
        }
        const recent = await enqueue({ label: 'recent' });
        await store.jobs.cancel(recent.id, T0 + 1000);
        const queued = await enqueue({ label: 'queued' });
        const running = await enqueue({ label: 'running', platform: ARM });
        await claimOne('w1', T0, [ARM]);

        assert.equal(await store.jobs.deleteFinishedBefore(T0 + 500, 2), 2);
        assert.equal(await store.jobs.deleteFinishedBefore(T0 + 500, 2), 1);
        assert.equal(await store.jobs.deleteFinishedBefore(T0 + 500, 2), 0);
        for (const id of old) assert.equal(await store.jobs.get(id), undefined);
        for (const id of [recent.id, queued.id, running.id]) assert.ok(await store.jobs.get(id), `${id} kept`);
      });
    });

    describe('blob references (decision 0047)', () => {
      test('an action-cache entry replaced or deleted releases the hashes it named; a hash another owner names stays', async () => {
        const action = digestOf('an action');
        const first = makeReport({ stdoutText: 'first result' });
        await store.actionCache.put('', action, first, T0);
        const [entry] = await store.blobReferences.unrecorded(10);
        assert.equal(entry?.kind, 'cache');
        const shared = digestOf('named by a job too').hash;
        await store.blobReferences.record({ jobs: [], trees: [], cache: [{ instance: '', actionDigest: action, hashes: [first.stdout.digest.hash, shared] }] });
        const job = await enqueue({ label: 'holder' });
        await store.jobs.fail(job.id, { code: 'INTERNAL', message: 'boom' }, T0 + 1);
        await store.blobReferences.record({ jobs: [{ id: job.id, hashes: [shared] }], trees: [], cache: [] });
        assert.deepEqual(await store.blobReferences.unrecorded(10), []);
        assert.deepEqual(await store.blobReferences.takeUnreferenced(10), []);

        await store.actionCache.put('', action, makeReport({ stdoutText: 'second result' }), T0 + 2);
        assert.deepEqual(await store.blobReferences.takeUnreferenced(10), [first.stdout.digest.hash]);
        assert.equal((await store.blobReferences.unrecorded(10))[0]?.kind, 'cache', 'the replaced entry is recorded again');
        await store.actionCache.delete('', action);
        assert.deepEqual(await store.blobReferences.unrecorded(10), []);
        assert.equal(await store.jobs.deleteFinishedBefore(T0 + 10, 10), 1);
        assert.deepEqual(await store.blobReferences.takeUnreferenced(10), [shared]);
      });

      test('a tree stays recorded while a job names it, and releases its members with the last one', async () => {
        const [a, b] = [await enqueue({ label: 'tree-a' }), await enqueue({ label: 'tree-b' })];
        for (const j of [a, b]) await store.jobs.fail(j.id, { code: 'INTERNAL', message: 'boom' }, j === a ? T0 + 1 : T0 + 100);
        const root = digestOf('a root').hash;
        const member = digestOf('a member').hash;
        await store.blobReferences.record({ trees: [{ root, hashes: [member] }], cache: [], jobs: [a, b].map((j) => ({ id: j.id, hashes: [root] })) });
        assert.deepEqual([...(await store.blobReferences.recordedTrees([root, digestOf('unknown').hash]))], [root]);
        assert.equal(await store.jobs.deleteFinishedBefore(T0 + 50, 10), 1);
        assert.deepEqual(await store.blobReferences.takeUnreferenced(10), []);
        assert.equal(await store.jobs.deleteFinishedBefore(T0 + 500, 10), 1);
        assert.deepEqual((await store.blobReferences.takeUnreferenced(10)).sort(), [member, root].sort());
        assert.deepEqual([...(await store.blobReferences.recordedTrees([root]))], []);
      });
    });

    describe('jobs: enqueue and get', () => {
      test('round trip keeps every field and the spec JSON intact', async () => {
        const spec = makeSpec({ label: 'round-trip', platform: ARM, stdin: 'some stdin' });
        const nj = { ...newJob({ spec, instance: 'inst-a', priority: 7, nowMs: T0 + 5 }) };
        const { job, merged } = await store.jobs.enqueue(nj);
        assert.equal(merged, false);
        const expected: JobRecord = {
          id: nj.id,
          actionDigest: nj.actionDigest,
          instance: 'inst-a',
          platform: ARM,
          state: 'queued',
          attempt: 0,
          priority: 7,
          spec,
          createdAtMs: T0 + 5,
          queuedAtMs: T0 + 5,
          startedAtMs: null,
          completedAtMs: null,
          queueTimeMs: 0,
          leaseOwner: null,
          leaseExpiresAtMs: null,
          cancelRequested: false,
          cached: false,
          result: null,
          failure: null,
          name: null,
          labels: {},
          progress: null,
          noRetry: false,
          notifyUrl: null,
        };
        assert.deepEqual(job, expected);
        assert.deepEqual(await store.jobs.get(nj.id), expected);
        assert.equal((await store.jobs.get(nj.id))?.spec.command.arguments[2], 'ünïcødé ✓');
      });

      test('a name and labels are kept, never merged on, and select in listings: by state, name, every label, age, page', async () => {
        const labelled = (label: string, name: string | null, labels: Record<string, string>, nowMs: number) =>
          newJob({ spec: makeSpec({ label }), nowMs, ...(name !== null ? { name } : {}), labels });
        const a = (await store.jobs.enqueue(labelled('a', 'stream-c7g', { suite: 'stream', 'app.kubernetes.io/part': 'x' }, T0 + 1))).job;
        const b = (await store.jobs.enqueue(labelled('b', 'stream-c7i', { suite: 'stream', isa: 'x86_64' }, T0 + 2))).job;
        const c = (await store.jobs.enqueue(labelled('c', null, { suite: 'hpl' }, T0 + 3))).job;
        assert.deepEqual([a.name, a.labels], ['stream-c7g', { suite: 'stream', 'app.kubernetes.io/part': 'x' }]);
        assert.deepEqual((await store.jobs.get(c.id))?.labels, { suite: 'hpl' });
        const ids = async (q: Partial<JobQuery>) => (await store.jobs.list({ limit: 10, ...q })).map((j) => j.id);
        assert.deepEqual(await ids({ labels: { suite: 'stream' } }), [b.id, a.id]);
        assert.deepEqual(await ids({ labels: { suite: 'stream', isa: 'x86_64' } }), [b.id]);
        assert.deepEqual(await ids({ labels: { 'app.kubernetes.io/part': 'x' } }), [a.id]);
        assert.deepEqual(await ids({ labels: { suite: 'none' } }), []);
        assert.deepEqual(await ids({ name: 'stream-c7i' }), [b.id]);
        const arm = (await store.jobs.enqueue(newJob({ spec: makeSpec({ label: 'd', platform: ARM }), nowMs: T0 + 4 }))).job;
        assert.deepEqual(await ids({ platforms: [ARM] }), [arm.id]);
        assert.deepEqual(await ids({ platforms: [ARM, X86] }), [arm.id, c.id, b.id, a.id]);
        assert.deepEqual(await ids({ platforms: [ARM, X86], labels: { suite: 'stream' } }), [b.id, a.id]);
        assert.deepEqual(await ids({ platforms: [RISCV] }), []);
        assert.deepEqual(await ids({ platforms: [] }), []);
        assert.deepEqual(await ids({ createdSinceMs: T0 + 2 }), [arm.id, c.id, b.id]);
        assert.deepEqual(await ids({ states: ['queued'], labels: { suite: 'stream' }, limit: 1 }), [b.id]);
        assert.deepEqual(await ids({ labels: { suite: 'stream' }, afterId: b.id }), [a.id], 'the next page');
        assert.deepEqual(await ids({ afterId: 'no-such-job' }), []);
        // A label selector is checked: a name that could break out of a JSON path is refused.
        await assert.rejects(store.jobs.list({ limit: 1, labels: { 'x") = 1 OR ("': 'y' } }), (err: unknown) => isRemexError(err, 'INVALID_ARGUMENT'));
      });

      test('get of an unknown id is undefined', async () => {
        assert.equal(await store.jobs.get('no-such-job'), undefined);
      });

      test('list is newest first, honours limit and filters by state', async () => {
        const a = await enqueue({ nowMs: T0 });
        const b = await enqueue({ nowMs: T0 + 1 });
        const c = await enqueue({ nowMs: T0 + 2 });
        assert.deepEqual((await store.jobs.list({ limit: 10 })).map((j) => j.id), [c.id, b.id, a.id]);
        assert.deepEqual((await store.jobs.list({ limit: 2 })).map((j) => j.id), [c.id, b.id]);
        await claimOne('w1'); // takes a (FIFO)
        assert.deepEqual((await store.jobs.list({ limit: 10, states: ['running'] })).map((j) => j.id), [a.id]);
        assert.deepEqual((await store.jobs.list({ limit: 10, states: ['queued'] })).map((j) => j.id), [c.id, b.id]);
        assert.deepEqual((await store.jobs.list({ limit: 10, states: ['queued', 'running'] })).length, 3);
        assert.deepEqual(await store.jobs.list({ limit: 10, states: ['failed'] }), []);
        assert.deepEqual(await store.jobs.list({ limit: 10, states: [] }), []);
      });
    });

    describe('jobs: merging of identical in-flight work', () => {
      test('an identical mergeable job merges into the queued one, then into the running one', async () => {
        const spec = makeSpec({ label: 'merge' });
        const first = await store.jobs.enqueue(newJob({ spec }));
        const second = await store.jobs.enqueue(newJob({ spec, nowMs: T0 + 10 }));
        assert.equal(second.merged, true);
        assert.equal(second.job.id, first.job.id);
        assert.equal(second.job.state, 'queued');

        await claimOne('w1');
        const third = await store.jobs.enqueue(newJob({ spec, nowMs: T0 + 20 }));
        assert.equal(third.merged, true);
        assert.equal(third.job.id, first.job.id);
        assert.equal(third.job.state, 'running');
        assert.equal((await store.jobs.list({ limit: 10 })).length, 1);
      });

      test('does not merge across instances', async () => {
        const spec = makeSpec({ label: 'instances' });
        const a = await store.jobs.enqueue(newJob({ spec, instance: 'a' }));
        const b = await store.jobs.enqueue(newJob({ spec, instance: 'b' }));
        assert.equal(b.merged, false);
        assert.notEqual(a.job.id, b.job.id);
        // Each instance still merges with its own.
        const a2 = await store.jobs.enqueue(newJob({ spec, instance: 'a' }));
        assert.equal(a2.merged, true);
        assert.equal(a2.job.id, a.job.id);
      });

      test('does not merge when either job is not mergeable', async () => {
        const spec = makeSpec({ label: 'unmergeable' });
        const plain = await store.jobs.enqueue(newJob({ spec, mergeable: false }));
        const mergeable = await store.jobs.enqueue(newJob({ spec, mergeable: true }));
        assert.equal(mergeable.merged, false, 'a mergeable job must not join an unmergeable one');
        const plain2 = await store.jobs.enqueue(newJob({ spec, mergeable: false }));
        assert.equal(plain2.merged, false, 'an unmergeable job never merges');
        assert.equal(new Set([plain.job.id, mergeable.job.id, plain2.job.id]).size, 3);
        const mergeable2 = await store.jobs.enqueue(newJob({ spec, mergeable: true }));
        assert.equal(mergeable2.merged, true);
        assert.equal(mergeable2.job.id, mergeable.job.id);
      });

      test('does not merge into a job that is already terminal', async () => {
        for (const end of ['completed', 'failed', 'cancelled'] as const) {
          const spec = makeSpec({ label: `terminal-${end}` });
          const first = await store.jobs.enqueue(newJob({ spec }));
          if (end === 'cancelled') {
            await store.jobs.cancel(first.job.id, T0 + 1);
          } else if (end === 'failed') {
            await store.jobs.fail(first.job.id, { code: 'INTERNAL', message: 'boom' }, T0 + 1);
          } else {
            const running = await claimOne('w1');
            assert.equal(running.id, first.job.id);
            const done = await store.jobs.finish({ id: running.id, attempt: 1, workerId: 'w1', outcome: { state: 'completed', result: makeReport() }, nowMs: T0 + 2 });
            assert.equal(done?.state, 'completed');
          }
          assert.equal((await store.jobs.get(first.job.id))?.state, end);
          const second = await store.jobs.enqueue(newJob({ spec, nowMs: T0 + 3 }));
          assert.equal(second.merged, false, `merged into a ${end} job`);
          assert.notEqual(second.job.id, first.job.id);
          assert.equal(second.job.state, 'queued');
        }
      });
    });

    describe('jobs: insertCached', () => {
      test('inserts a completed, cached job that is never claimed nor merged into', async () => {
        const spec = makeSpec({ label: 'cached' });
        const report = makeReport({ stdoutText: 'from the cache\n' });
        const nj = newJob({ spec, nowMs: T0 + 3 });
        const job = await store.jobs.insertCached(nj, report);
        assert.equal(job.id, nj.id);
        assert.equal(job.state, 'completed');
        assert.equal(job.cached, true);
        assert.deepEqual(job.result, report);
        assert.equal(job.failure, null);
        assert.equal(job.completedAtMs, T0 + 3);
        assert.equal(job.attempt, 0);
        assert.deepEqual(await store.jobs.get(nj.id), job);

        assert.deepEqual(await store.jobs.claim({ platforms: [X86], workerId: 'w1', max: 10, leaseMs: LEASE_MS, nowMs: T0 + 4 }), []);
        const next = await store.jobs.enqueue(newJob({ spec }));
        assert.equal(next.merged, false);
        assert.notEqual(next.job.id, nj.id);
      });

      test('a cached insert may coexist with an identical in-flight job', async () => {
        const spec = makeSpec({ label: 'cached-while-inflight' });
        const inflight = await store.jobs.enqueue(newJob({ spec }));
        const cached = await store.jobs.insertCached(newJob({ spec }), makeReport());
        assert.notEqual(cached.id, inflight.job.id);
        assert.equal((await store.jobs.get(inflight.job.id))?.state, 'queued');
      });
    });

    describe('jobs: claim', () => {
      test('lower priority first, then first in first out', async () => {
        const p5a = await enqueue({ priority: 5, nowMs: T0 });
        const p0a = await enqueue({ priority: 0, nowMs: T0 + 1 });
        const p5b = await enqueue({ priority: 5, nowMs: T0 + 2 });
        const pm1 = await enqueue({ priority: -1, nowMs: T0 + 3 });
        const p0b = await enqueue({ priority: 0, nowMs: T0 + 4 });
        const order: string[] = [];
        for (let i = 0; i < 5; i++) order.push((await claimOne('w1', T0 + 10)).id);
        assert.deepEqual(order, [pm1.id, p0a.id, p0b.id, p5a.id, p5b.id]);
        assert.deepEqual(await store.jobs.claim({ platforms: [X86], workerId: 'w1', max: 1, leaseMs: LEASE_MS, nowMs: T0 + 10 }), []);
      });

      test('a batch takes the head of the queue, in dispatch order', async () => {
        const p5 = await enqueue({ priority: 5 });
        const p0a = await enqueue({ priority: 0 });
        const p0b = await enqueue({ priority: 0 });
        const pm1 = await enqueue({ priority: -1 });
        const batch = await store.jobs.claim({ platforms: [X86], workerId: 'w1', max: 3, leaseMs: LEASE_MS, nowMs: T0 + 10 });
        assert.deepEqual(batch.map((j) => j.id), [pm1.id, p0a.id, p0b.id]);
        assert.equal((await store.jobs.get(p5.id))?.state, 'queued');
      });

      test('only the platforms asked for', async () => {
        const x = await enqueue({ platform: X86 });
        const a = await enqueue({ platform: ARM });
        const r = await enqueue({ platform: RISCV });
        const armOnly = await store.jobs.claim({ platforms: [ARM], workerId: 'w-arm', max: 10, leaseMs: LEASE_MS, nowMs: T0 });
        assert.deepEqual(armOnly.map((j) => j.id), [a.id]);
        assert.equal(armOnly[0]?.platform, ARM);
        const both = await store.jobs.claim({ platforms: [X86, RISCV], workerId: 'w-multi', max: 10, leaseMs: LEASE_MS, nowMs: T0 });
        assert.deepEqual(sortedIds(both), [x.id, r.id].sort());
        assert.deepEqual(await store.jobs.claim({ platforms: ['mips64el-linux-cpu'], workerId: 'w', max: 10, leaseMs: LEASE_MS, nowMs: T0 }), []);
        assert.deepEqual(await store.jobs.claim({ platforms: [], workerId: 'w', max: 10, leaseMs: LEASE_MS, nowMs: T0 }), []);
      });

      test('max is respected, also across platforms; max 0 claims nothing', async () => {
        for (let i = 0; i < 3; i++) await enqueue({ platform: X86 });
        for (let i = 0; i < 3; i++) await enqueue({ platform: ARM });
        assert.deepEqual(await store.jobs.claim({ platforms: [X86, ARM], workerId: 'w1', max: 0, leaseMs: LEASE_MS, nowMs: T0 }), []);
        const two = await store.jobs.claim({ platforms: [X86, ARM], workerId: 'w1', max: 2, leaseMs: LEASE_MS, nowMs: T0 });
        assert.equal(two.length, 2);
        const four = await store.jobs.claim({ platforms: [X86, ARM], workerId: 'w1', max: 4, leaseMs: LEASE_MS, nowMs: T0 });
        assert.equal(four.length, 4);
        assert.equal(new Set([...two, ...four].map((j) => j.id)).size, 6);
        assert.equal((await store.jobs.claim({ platforms: [X86, ARM], workerId: 'w1', max: 4, leaseMs: LEASE_MS, nowMs: T0 })).length, 0);
      });

      test('across platforms: one dispatch order, so a quiet platform is not held behind a busy one', async () => {
        const x1 = await enqueue({ platform: X86, nowMs: T0 });
        const a1 = await enqueue({ platform: ARM, nowMs: T0 + 1 });
        const x2 = await enqueue({ platform: X86, nowMs: T0 + 2 });
        const a2 = await enqueue({ platform: ARM, nowMs: T0 + 3, priority: -1 });
        const x3 = await enqueue({ platform: X86, nowMs: T0 + 4 });
        // One slot at a time, as a worker whose runs end one by one claims: x86 first in its list of platforms.
        const order: string[] = [];
        for (let i = 0; i < 5; i++) order.push((await claimOne('w1', T0 + 10, [X86, ARM])).id);
        assert.deepEqual(order, [a2.id, x1.id, a1.id, x2.id, x3.id]);
        assert.deepEqual(await store.jobs.claim({ platforms: [X86, ARM], workerId: 'w1', max: 3, leaseMs: LEASE_MS, nowMs: T0 + 10 }), []);
        // A batch takes the head of the merged order too.
        const y1 = await enqueue({ platform: X86, nowMs: T0 + 20 });
        const b1 = await enqueue({ platform: ARM, nowMs: T0 + 21 });
        const y2 = await enqueue({ platform: X86, nowMs: T0 + 22 });
        await enqueue({ platform: X86, nowMs: T0 + 23 });
        const batch = await store.jobs.claim({ platforms: [X86, ARM], workerId: 'w2', max: 3, leaseMs: LEASE_MS, nowMs: T0 + 30 });
        assert.deepEqual(batch.map((j) => j.id), [y1.id, b1.id, y2.id]);
        assert.ok(batch.every((j) => j.state === 'running' && j.leaseOwner === 'w2' && j.attempt === 1));
      });

      test('sets running, lease owner and expiry, start time, and increments the attempt', async () => {
        const queued = await enqueue({ nowMs: T0 });
        const job = await claimOne('w1', T0 + 250);
        assert.equal(job.id, queued.id);
        assert.equal(job.state, 'running');
        assert.equal(job.attempt, 1);
        assert.equal(job.leaseOwner, 'w1');
        assert.equal(job.leaseExpiresAtMs, T0 + 250 + LEASE_MS);
        assert.equal(job.startedAtMs, T0 + 250);
        assert.equal(job.queueTimeMs, 250);
        assert.deepEqual(job.spec, queued.spec);
        assert.deepEqual(await store.jobs.get(job.id), job);
      });

      test('a job handed straight to a waiting worker is inserted running under that lease; it is never claimed, its owner finishes it', async () => {
        const handed = await store.jobs.enqueue({ ...newJob({ nowMs: T0 }), leaseTo: { workerId: 'w1', leaseExpiresAtMs: T0 + LEASE_MS } });
        assert.equal(handed.merged, false);
        const job = handed.job;
        assert.deepEqual(
          { state: job.state, attempt: job.attempt, owner: job.leaseOwner, expires: job.leaseExpiresAtMs, started: job.startedAtMs, queueTime: job.queueTimeMs },
          { state: 'running', attempt: 1, owner: 'w1', expires: T0 + LEASE_MS, started: T0, queueTime: 0 },
        );
        assert.deepEqual(await store.jobs.get(job.id), job);
        assert.deepEqual(await store.jobs.claim({ platforms: [X86], workerId: 'w2', max: 5, leaseMs: LEASE_MS, nowMs: T0 + 1 }), []);
        // An identical mergeable job joins it; a handed job that merges is not inserted.
        const again = await store.jobs.enqueue({ ...newJob({ spec: job.spec, nowMs: T0 + 2 }), leaseTo: { workerId: 'w3', leaseExpiresAtMs: T0 + LEASE_MS } });
        assert.deepEqual({ merged: again.merged, id: again.job.id, owner: again.job.leaseOwner }, { merged: true, id: job.id, owner: 'w1' });
        assert.equal(await store.jobs.finish({ id: job.id, attempt: 1, workerId: 'w2', outcome: { state: 'completed', result: makeReport() }, nowMs: T0 + 3 }), undefined);
        const done = await store.jobs.finish({ id: job.id, attempt: 1, workerId: 'w1', outcome: { state: 'completed', result: makeReport() }, nowMs: T0 + 4 });
        assert.equal(done?.state, 'completed');
        // Its lease expires as any other: requeued for attempt 2.
        const lost = await store.jobs.enqueue({ ...newJob({ nowMs: T0 }), leaseTo: { workerId: 'w1', leaseExpiresAtMs: T0 + LEASE_MS } });
        const expiry = await store.jobs.expireLeases(T0 + LEASE_MS + 1, 3);
        assert.deepEqual(expiry.requeued.map((j) => [j.id, j.state, j.attempt]), [[lost.job.id, 'queued', 1]]);
        assert.equal((await claimOne('w2', T0 + 5_000)).attempt, 2);
      });

      test('concurrent enqueues, some handed to waiting workers: each row as asked', async () => {
        const jobs = Array.from({ length: 12 }, (_, i) => ({
          ...newJob({ label: `mixed-${i}` }),
          ...(i % 3 === 0 ? { leaseTo: { workerId: `w${i}`, leaseExpiresAtMs: T0 + LEASE_MS } } : {}),
        }));
        const results = await Promise.all(jobs.map((j) => store.jobs.enqueue(j)));
        results.forEach((r, i) => {
          const handedTo = jobs[i]?.leaseTo?.workerId ?? null;
          assert.deepEqual([r.job.id, r.job.state, r.job.leaseOwner, r.job.attempt], [jobs[i]?.id, handedTo ? 'running' : 'queued', handedTo, handedTo ? 1 : 0]);
        });
        const claimed = await store.jobs.claim({ platforms: [X86], workerId: 'late', max: 20, leaseMs: LEASE_MS, nowMs: T0 + 1 });
        assert.deepEqual(claimed.map((j) => j.id).sort(), jobs.filter((j) => !j.leaseTo).map((j) => j.id).sort());
      });

      test('queue time accumulates over attempts and excludes time running', async () => {
        await enqueue({ nowMs: T0 });
        const first = await claimOne('w1', T0 + 300);
        assert.equal(first.queueTimeMs, 300);
        // Lease runs out at T0 + 1300; requeued at T0 + 2000, claimed again at T0 + 2500.
        const expiry = await store.jobs.expireLeases(T0 + 2_000, 3);
        assert.deepEqual(expiry.requeued.map((j) => j.id), [first.id]);
        assert.equal(expiry.requeued[0]?.queuedAtMs, T0 + 2_000);
        const second = await claimOne('w2', T0 + 2_500);
        assert.equal(second.attempt, 2);
        assert.equal(second.queueTimeMs, 300 + 500);
        assert.equal(second.startedAtMs, T0 + 2_500);
      });

      test('concurrent single-platform claims of many workers: each gets its own jobs, in dispatch order, with its own lease', async () => {
        const ids: string[] = [];
        for (let i = 0; i < 20; i++) ids.push((await enqueue({ priority: i % 4 === 0 ? -1 : 0 })).id);
        const workers = Array.from({ length: 8 }, (_, i) => `sp${i}`);
        const batches = await Promise.all(
          workers.map((workerId, i) => store.jobs.claim({ platforms: [X86], workerId, max: 3, leaseMs: LEASE_MS, nowMs: T0 + i })),
        );
        const claimed = batches.flat();
        assert.equal(claimed.length, 20, 'every job claimed once (8 workers x 3 slots for 20 jobs)');
        assert.deepEqual(claimed.map((j) => j.id).sort(), [...ids].sort());
        for (const [i, batch] of batches.entries()) {
          assert.ok(batch.length <= 3);
          for (const job of batch) {
            assert.equal(job.leaseOwner, workers[i]);
            assert.equal(job.startedAtMs, T0 + i);
            assert.equal(job.leaseExpiresAtMs, T0 + i + LEASE_MS);
            assert.deepEqual(await store.jobs.get(job.id), job);
          }
          const order = batch.map((j) => [j.priority, ids.indexOf(j.id)] as const);
          const sorted = [...order].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
          assert.deepEqual(order, sorted, 'a worker gets its jobs lowest priority first, then first in');
        }
      });

      test('concurrent claims never hand one job to two workers', async () => {
        const ids: string[] = [];
        for (let i = 0; i < 25; i++) ids.push((await enqueue({ platform: i % 2 ? ARM : X86 })).id);
        const workers = Array.from({ length: 12 }, (_, i) => `w${i}`);
        const batches = await Promise.all(
          workers.map((workerId) => store.jobs.claim({ platforms: [X86, ARM], workerId, max: 3, leaseMs: LEASE_MS, nowMs: T0 })),
        );
        const claimed = batches.flat();
        assert.equal(claimed.length, 25);
        assert.deepEqual(claimed.map((j) => j.id).sort(), ids.sort());
        for (const [i, batch] of batches.entries()) {
          assert.ok(batch.length <= 3);
          for (const job of batch) {
            assert.equal(job.leaseOwner, workers[i]);
            assert.equal((await store.jobs.get(job.id))?.leaseOwner, workers[i]);
            assert.equal(job.attempt, 1);
          }
        }
      });
    });

    describe('jobs: leases and completion', () => {
      test('renewLeases with the leases a worker holds renews only those, at their attempt; the others expire', async () => {
        const a = await enqueue();
        const b = await enqueue();
        const c = await enqueue();
        await claimOne('w1', T0);
        await claimOne('w1', T0);
        await claimOne('w1', T0);
        await store.jobs.cancel(b.id, T0 + 1);
        // w1 knows of a and b only (c's lease never reached it); it names a stale attempt of b too.
        const r = await store.jobs.renewLeases('w1', T0 + 5_000, [
          { jobId: a.id, attempt: 1 },
          { jobId: b.id, attempt: 1 },
          { jobId: b.id, attempt: 7 },
          { jobId: 'no-such-job', attempt: 1 },
        ]);
        assert.equal(r.renewed, 2);
        assert.deepEqual([...r.renewedIds].sort(), [a.id, b.id].sort());
        assert.deepEqual(r.cancelRequested, [b.id]);
        assert.equal((await store.jobs.get(a.id))?.leaseExpiresAtMs, T0 + 5_000);
        assert.equal((await store.jobs.get(c.id))?.leaseExpiresAtMs, T0 + LEASE_MS, 'not renewed');
        const expired = await store.jobs.expireLeases(T0 + LEASE_MS + 1, 3);
        assert.deepEqual(expired.requeued.map((j) => j.id), [c.id], 'the lease nobody runs is requeued');
        assert.deepEqual(await store.jobs.renewLeases('w1', T0 + 6_000, []), { renewed: 0, renewedIds: [], cancelRequested: [] });
      });

      test('renewLeases stores the progress a held lease carries (the latest wins), only for the lease owner and attempt', async () => {
        const a = await enqueue();
        const b = await enqueue();
        await claimOne('w1', T0);
        await claimOne('w1', T0);
        const first = { percent: 10, message: 'stage 1', atMs: T0 + 1, history: [] };
        const second = { percent: 42.5, message: 'stage 3 — ünï', metrics: { triad_mbps: 48532.5 }, atMs: T0 + 2, history: [{ percent: 10, atMs: T0 + 1 }] };
        await store.jobs.renewLeases('w1', T0 + 5_000, [{ jobId: a.id, attempt: 1, progress: first }, { jobId: b.id, attempt: 1 }]);
        assert.deepEqual((await store.jobs.get(a.id))?.progress, first);
        assert.equal((await store.jobs.get(b.id))?.progress, null);
        await store.jobs.renewLeases('w1', T0 + 5_000, [{ jobId: a.id, attempt: 1, progress: second }]);
        assert.deepEqual((await store.jobs.get(a.id))?.progress, second);
        await store.jobs.renewLeases('w1', T0 + 5_000, [{ jobId: a.id, attempt: 1 }]);
        assert.deepEqual((await store.jobs.get(a.id))?.progress, second, 'a renewal without progress keeps it');
        // Another worker, or a stale attempt, changes nothing.
        await store.jobs.renewLeases('w2', T0 + 5_000, [{ jobId: b.id, attempt: 1, progress: first }]);
        await store.jobs.renewLeases('w1', T0 + 5_000, [{ jobId: b.id, attempt: 2, progress: first }]);
        assert.equal((await store.jobs.get(b.id))?.progress, null);
      });

      test('renewLeases extends only that worker\'s running leases and returns cancel-requested ids', async () => {
        const a = await enqueue();
        const b = await enqueue();
        const c = await enqueue();
        await claimOne('w1', T0);
        await claimOne('w1', T0);
        await claimOne('w2', T0);
        await store.jobs.cancel(b.id, T0 + 1);

        const r = await store.jobs.renewLeases('w1', T0 + 5_000);
        assert.equal(r.renewed, 2);
        assert.deepEqual(r.cancelRequested, [b.id]);
        assert.equal((await store.jobs.get(a.id))?.leaseExpiresAtMs, T0 + 5_000);
        assert.equal((await store.jobs.get(b.id))?.leaseExpiresAtMs, T0 + 5_000);
        assert.equal((await store.jobs.get(c.id))?.leaseExpiresAtMs, T0 + LEASE_MS);
        assert.deepEqual(await store.jobs.renewLeases('nobody', T0 + 5_000), { renewed: 0, renewedIds: [], cancelRequested: [] });
      });

      test('finish commits the outcome of the current lease once', async () => {
        await enqueue();
        const job = await claimOne('w1', T0);
        const report = makeReport({ exitCode: 3 });
        const done = await store.jobs.finish({ id: job.id, attempt: 1, workerId: 'w1', outcome: { state: 'completed', result: report }, nowMs: T0 + 40 });
        assert.ok(done);
        assert.equal(done.state, 'completed');
        assert.deepEqual(done.result, report);
        assert.equal(done.failure, null);
        assert.equal(done.completedAtMs, T0 + 40);
        assert.equal(done.leaseOwner, null);
        assert.equal(done.leaseExpiresAtMs, null);
        assert.equal(done.attempt, 1);
        assert.deepEqual(await store.jobs.get(job.id), done);
        const again = await store.jobs.finish({ id: job.id, attempt: 1, workerId: 'w1', outcome: { state: 'completed', result: makeReport({ exitCode: 9 }) }, nowMs: T0 + 50 });
        assert.equal(again, undefined);
        assert.deepEqual(await store.jobs.get(job.id), done);
      });

      test('finish with a failure, a timeout or a cancellation', async () => {
        const outcomes = [
          { state: 'failed', failure: { code: 'INTERNAL', message: 'sandbox broke' } },
          { state: 'timed_out', result: makeReport({ timedOut: true, limitExceeded: 'wall_time', exitCode: null, signal: 'SIGKILL' }) },
          { state: 'cancelled', result: makeReport({ exitCode: null, signal: 'SIGTERM' }) },
          { state: 'cancelled', failure: { code: 'CANCELLED', message: 'stopped before start' } },
        ] as const;
        for (const outcome of outcomes) {
          await enqueue();
          const job = await claimOne('w1', T0);
          const done = await store.jobs.finish({ id: job.id, attempt: job.attempt, workerId: 'w1', outcome, nowMs: T0 + 1 });
          assert.equal(done?.state, outcome.state);
          if ('result' in outcome) {
            assert.deepEqual(done?.result, outcome.result);
            assert.equal(done?.failure, null);
          } else {
            assert.deepEqual(done?.failure, outcome.failure);
            assert.equal(done?.result, null);
          }
        }
      });

      test('finish is compare-and-set: wrong attempt, wrong worker or not running changes nothing', async () => {
        const queued = await enqueue();
        const outcome = { state: 'completed', result: makeReport() } as const;
        // Not running yet.
        assert.equal(await store.jobs.finish({ id: queued.id, attempt: 0, workerId: 'w1', outcome, nowMs: T0 }), undefined);
        assert.equal(await store.jobs.finish({ id: queued.id, attempt: 1, workerId: 'w1', outcome, nowMs: T0 }), undefined);
        assert.deepEqual(await store.jobs.get(queued.id), queued);

        const running = await claimOne('w1', T0 + 5);
        const before = await store.jobs.get(running.id);
        assert.equal(await store.jobs.finish({ id: running.id, attempt: 2, workerId: 'w1', outcome, nowMs: T0 + 6 }), undefined);
        assert.equal(await store.jobs.finish({ id: running.id, attempt: 0, workerId: 'w1', outcome, nowMs: T0 + 6 }), undefined);
        assert.equal(await store.jobs.finish({ id: running.id, attempt: 1, workerId: 'w2', outcome, nowMs: T0 + 6 }), undefined);
        assert.equal(await store.jobs.finish({ id: 'no-such-job', attempt: 1, workerId: 'w1', outcome, nowMs: T0 + 6 }), undefined);
        assert.deepEqual(await store.jobs.get(running.id), before);

        // A later attempt: the first attempt's worker can no longer commit, even with its own id.
        await store.jobs.expireLeases(T0 + 5 + LEASE_MS + 1, 3);
        const retried = await claimOne('w1', T0 + 5_000);
        assert.equal(retried.attempt, 2);
        const snapshot = await store.jobs.get(retried.id);
        assert.equal(await store.jobs.finish({ id: retried.id, attempt: 1, workerId: 'w1', outcome, nowMs: T0 + 5_001 }), undefined);
        assert.deepEqual(await store.jobs.get(retried.id), snapshot);
        assert.equal((await store.jobs.finish({ id: retried.id, attempt: 2, workerId: 'w1', outcome, nowMs: T0 + 5_002 }))?.state, 'completed');
      });
    });

    describe('jobs: many callers at once (adapters may share statements between them)', () => {
      test('concurrent enqueues each get their own job; identical mergeable ones get one job between them', async () => {
        const distinct = Array.from({ length: 40 }, (_, i) => newJob({ label: `burst-${i}`, mergeable: i % 2 === 0 }));
        const spec = makeSpec({ label: 'burst-same' });
        const same = Array.from({ length: 10 }, () => newJob({ spec }));
        const results = await Promise.all([...distinct, ...same].map((j) => store.jobs.enqueue(j)));
        const own = results.slice(0, distinct.length);
        own.forEach((r, i) => {
          assert.equal(r.merged, false);
          assert.equal(r.job.id, distinct[i]?.id, 'each caller gets its own job back, not a neighbour\'s');
          assert.deepEqual(r.job.spec, distinct[i]?.spec);
          assert.equal(r.job.state, 'queued');
        });
        const merged = results.slice(distinct.length);
        const ids = new Set(merged.map((r) => r.job.id));
        assert.equal(ids.size, 1, 'one in-flight job for the identical action');
        assert.equal(merged.filter((r) => !r.merged).length, 1, 'exactly one caller inserted it');
        assert.equal((await store.jobs.list({ limit: 100 })).length, distinct.length + 1);
      });

      test('concurrent finishes each commit their own job; of two finishes of one lease, exactly one commits', async () => {
        const jobs = await Promise.all(Array.from({ length: 30 }, (_, i) => store.jobs.enqueue(newJob({ label: `fin-${i}` }))));
        const claimed = await store.jobs.claim({ platforms: [X86], workerId: 'w1', max: 30, leaseMs: LEASE_MS, nowMs: T0 });
        assert.equal(claimed.length, jobs.length);
        const finishes = claimed.flatMap((job, i) => {
          const finish = (exitCode: number) =>
            store.jobs.finish({ id: job.id, attempt: job.attempt, workerId: 'w1', outcome: { state: 'completed', result: makeReport({ exitCode }) }, nowMs: T0 + 10 });
          // Every third job is finished twice at once, with different results.
          return i % 3 === 0 ? [finish(i), finish(1000 + i)] : [finish(i)];
        });
        const outcomes = await Promise.all(finishes);
        const committed = outcomes.filter((o) => o !== undefined);
        assert.equal(committed.length, claimed.length, 'one commit per job');
        for (const job of claimed) {
          const stored = await store.jobs.get(job.id);
          const mine = committed.filter((o) => o?.id === job.id);
          assert.equal(mine.length, 1);
          assert.deepEqual(stored, mine[0], 'the stored result is the one its caller was told committed');
        }
      });
    });

    describe('jobs: cancel and fail', () => {
      test('cancel of a queued job cancels it at once; it is never claimed', async () => {
        const job = await enqueue();
        const cancelled = await store.jobs.cancel(job.id, T0 + 7);
        assert.ok(cancelled);
        assert.equal(cancelled.state, 'cancelled');
        assert.equal(cancelled.completedAtMs, T0 + 7);
        assert.deepEqual(cancelled.failure, CANCELLED_BEFORE_START);
        assert.deepEqual(await store.jobs.get(job.id), cancelled);
        assert.deepEqual(await store.jobs.claim({ platforms: [X86], workerId: 'w1', max: 5, leaseMs: LEASE_MS, nowMs: T0 + 8 }), []);
      });

      test('cancel of a running job only flags it; its worker still completes it', async () => {
        await enqueue();
        const job = await claimOne('w1');
        const flagged = await store.jobs.cancel(job.id, T0 + 7);
        assert.ok(flagged);
        assert.equal(flagged.state, 'running');
        assert.equal(flagged.cancelRequested, true);
        assert.equal(flagged.leaseOwner, 'w1');
        assert.equal(flagged.completedAtMs, null);
        const done = await store.jobs.finish({ id: job.id, attempt: 1, workerId: 'w1', outcome: { state: 'cancelled', result: makeReport({ signal: 'SIGKILL', exitCode: null }) }, nowMs: T0 + 9 });
        assert.equal(done?.state, 'cancelled');
      });

      test('cancel of a terminal job returns it unchanged; of an unknown job, undefined', async () => {
        await enqueue();
        const job = await claimOne('w1');
        const done = await store.jobs.finish({ id: job.id, attempt: 1, workerId: 'w1', outcome: { state: 'completed', result: makeReport() }, nowMs: T0 + 1 });
        assert.deepEqual(await store.jobs.cancel(job.id, T0 + 2), done);
        assert.deepEqual(await store.jobs.get(job.id), done);
        assert.equal(await store.jobs.cancel('no-such-job', T0), undefined);
      });

      test('fail ends a queued or running job regardless of lease, and nothing else', async () => {
        const queued = await enqueue();
        const failure = { code: 'FAILED_PRECONDITION' as const, message: 'input vanished' };
        const failedQueued = await store.jobs.fail(queued.id, failure, T0 + 3);
        assert.equal(failedQueued?.state, 'failed');
        assert.deepEqual(failedQueued?.failure, failure);
        assert.equal(failedQueued?.completedAtMs, T0 + 3);

        await enqueue();
        const running = await claimOne('w1');
        const failedRunning = await store.jobs.fail(running.id, failure, T0 + 4);
        assert.equal(failedRunning?.state, 'failed');
        assert.equal(failedRunning?.leaseOwner, null);
        // Its worker can no longer commit.
        assert.equal(await store.jobs.finish({ id: running.id, attempt: 1, workerId: 'w1', outcome: { state: 'completed', result: makeReport() }, nowMs: T0 + 5 }), undefined);
        // A terminal job is not failed again.
        assert.equal(await store.jobs.fail(running.id, { code: 'INTERNAL', message: 'again' }, T0 + 6), undefined);
        assert.deepEqual((await store.jobs.get(running.id))?.failure, failure);
        assert.equal(await store.jobs.fail('no-such-job', failure, T0), undefined);
      });
    });

    describe('jobs: the failsafe deadline', () => {
      test('overdue lists running jobs past start + timeout + failsafe (its own, else the default); finish ends one emergency_stopped', async () => {
        // makeSpec's timeout is 5 s; one job names a failsafe of 2 s, the other takes the default of 10 s.
        const own = await enqueue({ spec: { ...makeSpec({ label: 'failsafe-own' }), failsafeMs: 2_000 } });
        const byDefault = await enqueue({ label: 'failsafe-default' });
        await enqueue({ label: 'failsafe-queued' });
        const [a, b] = await store.jobs.claim({ platforms: [X86], workerId: 'w1', max: 2, leaseMs: LEASE_MS, nowMs: T0 });
        assert.deepEqual([a?.id, b?.id], [own.id, byDefault.id]);
        assert.deepEqual(await store.jobs.overdue(T0 + 7_000, 10_000, 10), [], 'not past 5 s + 2 s yet');
        assert.deepEqual((await store.jobs.overdue(T0 + 7_001, 10_000, 10)).map((j) => j.id), [own.id]);
        assert.deepEqual((await store.jobs.overdue(T0 + 15_001, 10_000, 10)).map((j) => j.id).sort(), [own.id, byDefault.id].sort());
        assert.equal((await store.jobs.overdue(T0 + 15_001, 10_000, 1)).length, 1, 'at most the limit');

        const failure = { code: 'DEADLINE_EXCEEDED' as const, message: 'emergency stop' };
        const stopped = await store.jobs.finish({ id: own.id, attempt: 1, workerId: 'w1', outcome: { state: 'emergency_stopped', failure }, nowMs: T0 + 7_001 });
        assert.equal(stopped?.state, 'emergency_stopped');
        assert.deepEqual(stopped?.failure, failure);
        assert.equal(stopped?.leaseOwner, null);
        assert.equal(stopped?.completedAtMs, T0 + 7_001);
        assert.deepEqual(await store.jobs.get(own.id), stopped);
        // Terminal: the worker's late result is stale, and it is overdue no more.
        assert.equal(await store.jobs.finish({ id: own.id, attempt: 1, workerId: 'w1', outcome: { state: 'completed', result: makeReport() }, nowMs: T0 + 8_000 }), undefined);
        assert.deepEqual((await store.jobs.overdue(T0 + 15_001, 10_000, 10)).map((j) => j.id), [byDefault.id]);
        assert.deepEqual((await store.jobs.list({ limit: 10, states: ['emergency_stopped'] })).map((j) => j.id), [own.id]);
      });
    });

    describe('jobs: lease expiry and release', () => {
      test('expireLeases requeues an expired lease, then fails it as LOST after maxAttempts', async () => {
        const queued = await enqueue();
        const first = await claimOne('w1', T0);
        // Not yet expired (expiry is exclusive of the instant itself).
        assert.deepEqual(await store.jobs.expireLeases(T0 + LEASE_MS, 2), { requeued: [], failed: [], cancelled: [] });

        const e1 = await store.jobs.expireLeases(T0 + LEASE_MS + 1, 2);
        assert.deepEqual(e1.failed, []);
        assert.equal(e1.requeued.length, 1);
        const requeued = e1.requeued[0] as JobRecord;
        assert.equal(requeued.id, queued.id);
        assert.equal(requeued.state, 'queued');
        assert.equal(requeued.leaseOwner, null);
        assert.equal(requeued.leaseExpiresAtMs, null);
        assert.equal(requeued.attempt, first.attempt, 'attempt counts attempts started; the next claim makes it 2');
        assert.deepEqual(await store.jobs.get(queued.id), requeued);

        const second = await claimOne('w2', T0 + 2_000);
        assert.equal(second.attempt, 2);
        const e2 = await store.jobs.expireLeases(T0 + 2_000 + LEASE_MS + 1, 2);
        assert.deepEqual(e2.requeued, []);
        assert.equal(e2.failed.length, 1);
        const lost = e2.failed[0] as JobRecord;
        assert.equal(lost.state, 'failed');
        assert.deepEqual(lost.failure, lostFailure(2));
        assert.equal(lost.completedAtMs, T0 + 2_000 + LEASE_MS + 1);
        assert.equal(lost.leaseOwner, null);
        assert.deepEqual(await store.jobs.get(queued.id), lost);
        assert.deepEqual(await store.jobs.expireLeases(T0 + 1_000_000, 2), { requeued: [], failed: [], cancelled: [] });
      });

      test('a lost job whose cancellation was requested is cancelled, not run again', async () => {
        const queued = await enqueue();
        await claimOne('w1', T0);
        await store.jobs.cancel(queued.id, T0 + 1);
        const e = await store.jobs.expireLeases(T0 + LEASE_MS + 1, 3);
        assert.deepEqual(e.requeued, []);
        assert.deepEqual(e.failed, []);
        assert.deepEqual(e.cancelled.map((j) => j.id), [queued.id]);
        const job = await store.jobs.get(queued.id);
        assert.equal(job?.state, 'cancelled');
        assert.deepEqual(job?.failure, CANCELLED_WORKER_LOST);
        assert.equal(job?.completedAtMs, T0 + LEASE_MS + 1);
        assert.deepEqual(await store.jobs.claim({ platforms: [X86], workerId: 'w2', max: 1, leaseMs: LEASE_MS, nowMs: T0 + 5_000 }), []);
      });

      test('a job that asked not to run twice fails as LOST when its lease expires; the others are requeued', async () => {
        const once = await enqueue({ noRetry: true });
        const again = await enqueue();
        assert.equal(once.noRetry, true);
        assert.equal((await enqueue({ notifyUrl: 'https://ci.example/hook?x=1' })).notifyUrl, 'https://ci.example/hook?x=1');
        await claimOne('w1', T0);
        await claimOne('w1', T0);
        const expired = await store.jobs.expireLeases(T0 + LEASE_MS + 1, 3);
        assert.deepEqual(expired.requeued.map((j) => j.id), [again.id]);
        assert.deepEqual(expired.failed.map((j) => [j.id, j.attempt, j.failure]), [[once.id, 1, LOST_NO_RETRY]]);
        assert.equal((await store.jobs.get(once.id))?.state, 'failed');
      });

      test('expireLeases leaves live leases alone', async () => {
        await enqueue();
        await enqueue();
        const early = await claimOne('w1', T0);
        const late = await claimOne('w2', T0 + 500);
        const e = await store.jobs.expireLeases(T0 + LEASE_MS + 1, 3);
        assert.deepEqual(e.requeued.map((j) => j.id), [early.id]);
        assert.equal((await store.jobs.get(late.id))?.state, 'running');
      });

      test('releaseLeasesOf worker ids requeues their jobs at once, and only theirs', async () => {
        for (let i = 0; i < 3; i++) await enqueue();
        const a = await claimOne('wa', T0);
        const b = await claimOne('wb', T0);
        const c = await claimOne('wc', T0);
        const e = await store.jobs.releaseLeasesOf(['wa', 'wb', 'unknown'], T0 + 1, 3);
        assert.deepEqual(sortedIds(e.requeued), [a.id, b.id].sort());
        assert.deepEqual(e.failed, []);
        for (const id of [a.id, b.id]) {
          const job = await store.jobs.get(id);
          assert.equal(job?.state, 'queued');
          assert.equal(job?.leaseOwner, null);
        }
        assert.equal((await store.jobs.get(c.id))?.state, 'running');
        assert.equal((await store.jobs.get(c.id))?.leaseOwner, 'wc');
        assert.deepEqual(await store.jobs.releaseLeasesOf([], T0 + 2, 3), { requeued: [], failed: [], cancelled: [] });
      });

      test('releaseLeasesOf a prefix requeues the jobs of every worker whose id starts with it', async () => {
        for (let i = 0; i < 4; i++) await enqueue();
        const l1 = await claimOne('local-1', T0);
        const l2 = await claimOne('local-2', T0);
        const remote = await claimOne('remote-local-3', T0);
        const other = await claimOne('loc', T0);
        const e = await store.jobs.releaseLeasesOf({ prefix: 'local-' }, T0 + 1, 3);
        assert.deepEqual(sortedIds(e.requeued), [l1.id, l2.id].sort());
        assert.equal((await store.jobs.get(remote.id))?.state, 'running');
        assert.equal((await store.jobs.get(other.id))?.state, 'running');
      });

      test('releaseLeasesOf cancels a released job whose cancellation was requested', async () => {
        await enqueue();
        await enqueue();
        const flagged = await claimOne('w1', T0);
        const plain = await claimOne('w1', T0);
        await store.jobs.cancel(flagged.id, T0 + 1);
        const e = await store.jobs.releaseLeasesOf(['w1'], T0 + 2, 3);
        assert.deepEqual(e.cancelled.map((j) => j.id), [flagged.id]);
        assert.deepEqual(e.requeued.map((j) => j.id), [plain.id]);
        assert.equal((await store.jobs.get(flagged.id))?.state, 'cancelled');
      });

      test('releaseLeasesOf fails jobs that have used up their attempts', async () => {
        await enqueue();
        const job = await claimOne('w1', T0);
        const e = await store.jobs.releaseLeasesOf(['w1'], T0 + 1, 1);
        assert.deepEqual(e.requeued, []);
        assert.deepEqual(e.failed.map((j) => j.id), [job.id]);
        assert.equal((await store.jobs.get(job.id))?.failure?.code, 'LOST');
      });
    });

    describe('jobs: counts', () => {
      test('queueDepths, runningCounts and runningByWorker', async () => {
        assert.equal((await store.jobs.queueDepths()).size, 0);
        assert.equal((await store.jobs.runningCounts()).size, 0);
        assert.equal((await store.jobs.runningByWorker()).size, 0);
        for (let i = 0; i < 4; i++) await enqueue({ platform: X86 });
        for (let i = 0; i < 3; i++) await enqueue({ platform: ARM });
        await store.jobs.claim({ platforms: [X86], workerId: 'w1', max: 2, leaseMs: LEASE_MS, nowMs: T0 });
        await store.jobs.claim({ platforms: [ARM], workerId: 'w2', max: 1, leaseMs: LEASE_MS, nowMs: T0 });
        await store.jobs.claim({ platforms: [X86, ARM], workerId: 'w3', max: 2, leaseMs: LEASE_MS, nowMs: T0 });
        const [done] = await store.jobs.claim({ platforms: [ARM], workerId: 'w4', max: 1, leaseMs: LEASE_MS, nowMs: T0 });
        assert.ok(done);
        await store.jobs.finish({ id: done.id, attempt: 1, workerId: 'w4', outcome: { state: 'completed', result: makeReport() }, nowMs: T0 });
        // x86: 4 jobs, w1 took 2, w3 took 2 → 0 queued, 4 running. arm: 3 jobs, w2 took 1, w4 took 1 (done) → 1 queued, 1 running.
        assert.deepEqual(await store.jobs.queueDepths(), new Map([[ARM, 1]]));
        assert.deepEqual(await store.jobs.runningCounts(), new Map([[X86, 4], [ARM, 1]]));
        assert.deepEqual(await store.jobs.runningByWorker(), new Map([['w1', 2], ['w2', 1], ['w3', 2]]));
      });
    });

    describe('action cache', () => {
      const d1: Digest = digestOf('action one');
      const d2: Digest = digestOf('action two');

      test('put, get, overwrite and delete', async () => {
        assert.equal(await store.actionCache.get('', d1), undefined);
        const r1 = makeReport({ stdoutText: 'first\n' });
        await store.actionCache.put('', d1, r1, T0);
        assert.deepEqual(await store.actionCache.get('', d1), r1);
        assert.equal(await store.actionCache.get('', d2), undefined);
        const r2 = makeReport({ stdoutText: 'second\n', exitCode: 1 });
        await store.actionCache.put('', d1, r2, T0 + 1);
        assert.deepEqual(await store.actionCache.get('', d1), r2);
        await store.actionCache.delete('', d1);
        assert.equal(await store.actionCache.get('', d1), undefined);
        await store.actionCache.delete('', d1); // deleting a missing entry is fine
      });

      test('instances are separate, and the size is part of the key', async () => {
        const ra = makeReport({ stdoutText: 'a\n' });
        const rb = makeReport({ stdoutText: 'b\n' });
        await store.actionCache.put('a', d1, ra, T0);
        await store.actionCache.put('b', d1, rb, T0);
        assert.deepEqual(await store.actionCache.get('a', d1), ra);
        assert.deepEqual(await store.actionCache.get('b', d1), rb);
        assert.equal(await store.actionCache.get('', d1), undefined);
        assert.equal(await store.actionCache.get('a', { hash: d1.hash, sizeBytes: d1.sizeBytes + 1 }), undefined);
        await store.actionCache.delete('a', d1);
        assert.equal(await store.actionCache.get('a', d1), undefined);
        assert.deepEqual(await store.actionCache.get('b', d1), rb);
      });
    });

    describe('comparisons', () => {
      test('save inserts, then replaces the document whole; get reads it back as saved', async () => {
        assert.equal(await store.comparisons.get('c1'), undefined);
        const first = { id: 'c1', state: 'running', createdAtMs: T0, updatedAtMs: T0, document: { runs: [], note: 'é \u0000 ok' } };
        await store.comparisons.save(first);
        assert.deepEqual(await store.comparisons.get('c1'), first);
        const done = { ...first, state: 'completed', updatedAtMs: T0 + 5, document: { runs: [{ wallTimeMs: 12.5 }] } };
        await store.comparisons.save(done);
        assert.deepEqual(await store.comparisons.get('c1'), done);
        assert.equal(await store.comparisons.get('c2'), undefined);
      });

      test('list: the newest first, a page at a time after a cursor; an unknown cursor lists none', async () => {
        const row = (id: string, at: number) => ({ id, state: 'completed', createdAtMs: at, updatedAtMs: at, document: { id } });
        // Two share a creation time: the id breaks the tie, so no page repeats or skips one.
        for (const r of [row('l-a', T0 + 100), row('l-b', T0 + 300), row('l-c', T0 + 200), row('l-d', T0 + 300)]) await store.comparisons.save(r);
        const ids = async (q: { limit: number; afterId?: string }) => (await store.comparisons.list(q)).map((r) => r.id).filter((id) => id.startsWith('l-'));
        assert.deepEqual(await ids({ limit: 100 }), ['l-d', 'l-b', 'l-c', 'l-a']);
        const [first] = await store.comparisons.list({ limit: 1 });
        assert.deepEqual(first, row('l-d', T0 + 300));
        assert.deepEqual(await ids({ limit: 2, afterId: 'l-d' }), ['l-b', 'l-c']);
        assert.deepEqual(await ids({ limit: 2, afterId: 'l-c' }), ['l-a']);
        assert.deepEqual(await ids({ limit: 2, afterId: 'l-a' }), []);
        assert.deepEqual(await store.comparisons.list({ limit: 5, afterId: 'no-such' }), []);
      });
    });

    describe('worker registry', () => {
      test('upsert inserts and then updates; get and list', async () => {
        assert.equal(await store.workers.get('w1'), undefined);
        assert.deepEqual(await store.workers.list(), []);
        const w1 = worker('w1');
        await store.workers.upsert(w1);
        assert.deepEqual(await store.workers.get('w1'), w1);
        await store.workers.upsert(worker('w2', { registeredAtMs: T0 + 1 }));
        assert.deepEqual((await store.workers.list()).map((w) => w.id), ['w1', 'w2']);

        const updated = worker('w1', {
          name: 'renamed',
          platforms: [{ platform: ARM, emulated: true }],
          slots: 8,
          state: 'draining',
          lastSeenAtMs: T0 + 50,
        });
        await store.workers.upsert(updated);
        const got = await store.workers.get('w1');
        assert.equal(got?.name, 'renamed');
        assert.deepEqual(got?.platforms, [{ platform: ARM, emulated: true }]);
        assert.equal(got?.slots, 8);
        assert.equal(got?.state, 'draining');
        assert.equal(got?.lastSeenAtMs, T0 + 50);
        assert.equal((await store.workers.list()).length, 2);
      });

      test('touch updates last seen and optionally the state; undefined for unknown or gone workers', async () => {
        await store.workers.upsert(worker('w1'));
        assert.deepEqual(await store.workers.touch('w1', T0 + 10), { drainRequested: false });
        assert.equal((await store.workers.get('w1'))?.lastSeenAtMs, T0 + 10);
        assert.equal((await store.workers.get('w1'))?.state, 'active');
        assert.ok(await store.workers.touch('w1', T0 + 20, 'draining'));
        assert.equal((await store.workers.get('w1'))?.state, 'draining');
        assert.ok(await store.workers.touch('w1', T0 + 30));
        assert.equal((await store.workers.get('w1'))?.state, 'draining', 'a touch without a state keeps it');
        assert.ok(await store.workers.touch('w1', T0 + 40, 'gone'));
        assert.equal(await store.workers.touch('w1', T0 + 50), undefined);
        assert.equal((await store.workers.get('w1'))?.lastSeenAtMs, T0 + 40);
        assert.equal(await store.workers.touch('nobody', T0), undefined);
        // Registering again revives a gone worker.
        await store.workers.upsert(worker('w1', { lastSeenAtMs: T0 + 60 }));
        assert.ok(await store.workers.touch('w1', T0 + 70));
      });

      test('labels and instance id round-trip; a drain order is told by touch and stands across a new registration, not for a gone worker', async () => {
        const labels = { pool: 'arm-spot', 'app.kubernetes.io/version': '1.4', quote: 'it\'s "x"' };
        await store.workers.upsert(worker('w1', { labels, instanceId: 'i-0abc' }));
        const got = await store.workers.get('w1');
        assert.deepEqual([got?.labels, got?.instanceId, got?.drainRequested], [labels, 'i-0abc', false]);
        assert.equal(await store.workers.requestDrain('w1'), true);
        assert.equal((await store.workers.get('w1'))?.drainRequested, true);
        assert.deepEqual(await store.workers.touch('w1', T0 + 10), { drainRequested: true });
        // The worker registers again (a controller failed over): the order stands.
        await store.workers.upsert(worker('w1', { labels, instanceId: 'i-0abc', lastSeenAtMs: T0 + 20 }));
        assert.deepEqual(await store.workers.touch('w1', T0 + 30), { drainRequested: true });
        assert.equal(await store.workers.requestDrain('nobody'), false);
        await store.workers.upsert(worker('w2', { state: 'gone' }));
        assert.equal(await store.workers.requestDrain('w2'), false);
        assert.equal((await store.workers.get('w2'))?.drainRequested, false);
      });

      test('cancelDrain withdraws an order an active worker has not acted on; not for a draining, gone or unknown one', async () => {
        await store.workers.upsert(worker('w1'));
        assert.equal(await store.workers.requestDrain('w1'), true);
        assert.equal(await store.workers.cancelDrain('w1'), true);
        assert.deepEqual(await store.workers.touch('w1', T0 + 10), { drainRequested: false });
        assert.equal(await store.workers.cancelDrain('w1'), true, 'withdrawing no order is no error');
        assert.equal(await store.workers.requestDrain('w1'), true);
        assert.ok(await store.workers.touch('w1', T0 + 20, 'draining'));
        assert.equal(await store.workers.cancelDrain('w1'), false);
        assert.equal((await store.workers.get('w1'))?.drainRequested, true, 'the order of a draining worker stands');
        await store.workers.upsert(worker('w2', { state: 'gone' }));
        assert.equal(await store.workers.cancelDrain('w2'), false);
        assert.equal(await store.workers.cancelDrain('nobody'), false);
      });

      test('markSilentGone marks workers not seen since the cutoff, once', async () => {
        await store.workers.upsert(worker('old', { lastSeenAtMs: T0 }));
        await store.workers.upsert(worker('edge', { lastSeenAtMs: T0 + 100 }));
        await store.workers.upsert(worker('fresh', { lastSeenAtMs: T0 + 200 }));
        await store.workers.upsert(worker('draining-old', { lastSeenAtMs: T0, state: 'draining' }));
        assert.deepEqual((await store.workers.markSilentGone(T0 + 100)).sort(), ['draining-old', 'old']);
        assert.equal((await store.workers.get('old'))?.state, 'gone');
        assert.equal((await store.workers.get('edge'))?.state, 'active');
        assert.deepEqual(await store.workers.markSilentGone(T0 + 100), []);
        assert.deepEqual(await store.workers.markSilentGone(T0 + 1_000), ['edge', 'fresh'].sort());
      });

      test('offeredPlatforms: every platform offered by any registered worker, native preferred', async () => {
        assert.deepEqual(await store.workers.offeredPlatforms(), []);
        await store.workers.upsert(worker('emu', { platforms: [{ platform: ARM, emulated: true }, { platform: RISCV, emulated: true }] }));
        await store.workers.upsert(worker('native', { registeredAtMs: T0 + 1, platforms: [{ platform: X86, emulated: false }, { platform: ARM, emulated: false }] }));
        await store.workers.upsert(worker('emu2', { registeredAtMs: T0 + 2, platforms: [{ platform: X86, emulated: true }] }));
        await store.workers.upsert(worker('gone', { registeredAtMs: T0 + 3, state: 'gone', platforms: [{ platform: 's390x-linux-cpu', emulated: false }] }));
        const offers = (await store.workers.offeredPlatforms()).sort((a, b) => a.platform.localeCompare(b.platform));
        assert.deepEqual(offers, [
          { platform: ARM, emulated: false },
          { platform: RISCV, emulated: true },
          { platform: 's390x-linux-cpu', emulated: false },
          { platform: X86, emulated: false },
        ]);
      });
    });

    if (capabilities.durable) describe('durability', () => {
      test('queued and running jobs, the cache and the registry survive a close and reopen', async () => {
        if (!handle.reopen) throw new Error('a durable backend must provide reopen()');
        const running = await enqueue({ priority: 0, label: 'durable-running' });
        const finished = await enqueue({ priority: 1, label: 'durable-finished' });
        const queued = await enqueue({ priority: 3, label: 'durable-queued' });
        assert.equal((await claimOne('w1', T0 + 5)).id, running.id);
        await store.jobs.cancel(running.id, T0 + 6);
        assert.equal((await claimOne('w1', T0 + 7)).id, finished.id);
        const report = makeReport();
        await store.jobs.finish({ id: finished.id, attempt: 1, workerId: 'w1', outcome: { state: 'completed', result: report }, nowMs: T0 + 8 });
        await store.actionCache.put('i', digestOf('cached action'), report, T0);
        await store.workers.upsert(worker('w1', { platforms: [{ platform: X86, emulated: false }, { platform: ARM, emulated: true }] }));

        const beforeJobs = await store.jobs.list({ limit: 100 });
        store = await handle.reopen();
        assert.deepEqual(await store.jobs.list({ limit: 100 }), beforeJobs);
        const r = await store.jobs.get(running.id);
        assert.equal(r?.state, 'running');
        assert.equal(r?.leaseOwner, 'w1');
        assert.equal(r?.attempt, 1);
        assert.equal(r?.cancelRequested, true);
        assert.equal((await store.jobs.get(finished.id))?.state, 'completed');
        assert.deepEqual((await store.jobs.get(finished.id))?.result, report);
        assert.deepEqual(await store.jobs.get(queued.id), queued);
        assert.deepEqual(await store.actionCache.get('i', digestOf('cached action')), report);
        assert.deepEqual((await store.workers.get('w1'))?.platforms, [{ platform: X86, emulated: false }, { platform: ARM, emulated: true }]);
        assert.deepEqual(await store.jobs.renewLeases('w1', T0 + 9_000), { renewed: 1, renewedIds: [running.id], cancelRequested: [running.id] });

        // The queue keeps working where it stopped.
        const next = await claimOne('w2', T0 + 10_000);
        assert.equal(next.id, queued.id);
        assert.equal(next.attempt, 1);
        assert.equal((await store.jobs.finish({ id: next.id, attempt: 1, workerId: 'w2', outcome: { state: 'completed', result: report }, nowMs: T0 + 10_001 }))?.state, 'completed');
      });

      test('a running job keeps its lease across a reopen and its worker can still complete it', async () => {
        if (!handle.reopen) throw new Error('a durable backend must provide reopen()');
        const spec = makeSpec({ label: 'running-across-restart' });
        await store.jobs.enqueue(newJob({ spec }));
        const running = await claimOne('w1', T0);
        const queued = await enqueue({ label: 'queued-across-restart' });
        store = await handle.reopen();
        assert.deepEqual(await store.jobs.get(running.id), running);
        assert.deepEqual(await store.jobs.get(queued.id), queued);
        // The merge guarantee holds after the restart too.
        const merged = await store.jobs.enqueue(newJob({ spec }));
        assert.equal(merged.merged, true);
        assert.equal(merged.job.id, running.id);
        const done = await store.jobs.finish({ id: running.id, attempt: 1, workerId: 'w1', outcome: { state: 'completed', result: makeReport() }, nowMs: T0 + 1 });
        assert.equal(done?.state, 'completed');
      });
    });
  });
}
