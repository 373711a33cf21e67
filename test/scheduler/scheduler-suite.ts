/**
 * The Scheduler's behavioural suite, run on every backend a deployment can have: a store and the event bus
 * that goes with it (sqlite-scheduler.test.ts: SqliteStore and InMemoryEventBus; postgres-scheduler.test.ts:
 * PostgresStore and PostgresEventBus). Short lease and silence timings make expiry paths run in well under
 * a second. Blob presence is a test double (a set of digests): the CAS itself has its own tests. Waits are
 * on events wherever one exists; otherwise bounded polls.
 */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, before, describe, test } from 'node:test';
import type { Digest } from '../../src/core/digest.js';
import { EMPTY_DIGEST, formatDigest } from '../../src/core/digest.js';
import { ConflictError, isRemexError, MissingBlobsError, NotFoundError, UnsupportedPlatformError } from '../../src/core/errors.js';
import type { ExecutionSpec, JobState, RunReport } from '../../src/core/model.js';
import type { EventBus } from '../../src/events/event-bus.js';
import { Scheduler } from '../../src/scheduler/scheduler.js';
import type { BlobPresence, SchedulerOptions, SubmitRequest, SubmitResult } from '../../src/scheduler/scheduler.js';
import type { Lease } from '../../src/scheduler/worker-link.js';
import type { JobRecord, Outcome, PlatformOffer, Store } from '../../src/store/ports.js';
import { actionDigestOf, ARM, makeReport, makeSpec, RISCV, X86 } from '../store/fixtures.js';
import type { SpecOptions } from '../store/fixtures.js';

/**
 * Test double for the scheduler's view of the CAS: which digests are present. Like the real blob store,
 * the empty blob is always present.
 */
export class FakeBlobPresence implements BlobPresence {
  private readonly present = new Set<string>();

  add(...digests: Digest[]): void {
    for (const d of digests) this.present.add(formatDigest(d));
  }

  remove(d: Digest): void {
    this.present.delete(formatDigest(d));
  }

  async findMissing(digests: readonly Digest[]): Promise<Digest[]> {
    const seen = new Set<string>();
    return digests.filter((d) => {
      const key = formatDigest(d);
      if (key === formatDigest(EMPTY_DIGEST) || this.present.has(key) || seen.has(key)) return false;
      seen.add(key);
      return true;
    });
  }
}

const FAST: Partial<SchedulerOptions> = {
  leaseTimeoutMs: 200,
  heartbeatIntervalMs: 40,
  reaperIntervalMs: 50,
  workerSilenceMs: 300,
  maxAttempts: 3,
};
/** For tests where nothing may expire on its own. */
export const SLOW: Partial<SchedulerOptions> = { leaseTimeoutMs: 30_000, workerSilenceMs: 30_000, reaperIntervalMs: 50 };

/** A fresh store, empty, and the event bus that carries its jobs' changes. */
export interface SchedulerBackendHandle {
  store: Store;
  events: EventBus;
  /** Another store and bus on the same data, as the next process after a crash opens them; `close` closes both. */
  reopen(): Promise<{ store: Store; events: EventBus; close(): Promise<void> }>;
  /** Closes the store and the bus and deletes the data. */
  cleanup(): Promise<void>;
}

export interface SchedulerBackend {
  name: string;
  open(): Promise<SchedulerBackendHandle>;
  /**
   * How soon a parked call hears of what this process did (a submit, an abort, a close): the bound of the
   * tests that tell a wake-up by an event from the end of a wait. An in-process store answers within a
   * few milliseconds; a database server needs a few round trips, which a loaded machine stretches.
   */
  promptMs: number;
}

interface Harness {
  store: Store;
  blobs: FakeBlobPresence;
  events: EventBus;
  scheduler: Scheduler;
  /** Every event published, in order. */
  published: JobRecord[];
  reopen: SchedulerBackendHandle['reopen'];
}

const teardowns: Array<() => Promise<void> | void> = [];
let backend: SchedulerBackend;

async function harness(opts: Partial<SchedulerOptions> = FAST, o: { now?: () => number; start?: boolean } = {}): Promise<Harness> {
  const handle = await backend.open();
  teardowns.push(() => handle.cleanup());
  const { store, events } = handle;
  const blobs = new FakeBlobPresence();
  const published: JobRecord[] = [];
  events.subscribeAll((job) => published.push(job));
  const scheduler = new Scheduler(store, blobs, events, opts, o.now);
  teardowns.push(() => scheduler.close());
  if (o.start !== false) await scheduler.start();
  return { store, blobs, events, scheduler, published, reopen: () => handle.reopen() };
}

/** Registers a worker; with `heartbeat`, keeps it alive (and its leases renewed) until the test ends. */
async function addWorker(
  h: Harness,
  o: { id?: string; platforms?: Array<string | PlatformOffer>; slots?: number; heartbeat?: boolean } = {},
): Promise<{ id: string; stopHeartbeat(): void }> {
  const platforms = (o.platforms ?? [X86]).map((p) => (typeof p === 'string' ? { platform: p, emulated: false } : p));
  const session = await h.scheduler.register({ id: o.id, name: o.id ?? 'worker', platforms, slots: o.slots ?? 2 });
  let timer: NodeJS.Timeout | undefined;
  const stopHeartbeat = () => clearInterval(timer);
  if (o.heartbeat !== false) {
    timer = setInterval(() => void h.scheduler.heartbeat(session.workerId, false).catch(() => undefined), 30);
    teardowns.push(stopHeartbeat);
  }
  return { id: session.workerId, stopHeartbeat };
}

/** Puts the spec's inputs in the (fake) CAS and submits it. */
async function submit(h: Harness, spec: ExecutionSpec, extra: Partial<SubmitRequest> = {}): Promise<SubmitResult> {
  h.blobs.add(spec.inputRootDigest, ...(spec.stdinDigest ? [spec.stdinDigest] : []));
  return h.scheduler.submit({ actionDigest: actionDigestOf(spec), spec, ...extra });
}

/** A report whose blobs (stdout, stderr, output files) are in the CAS, as a real worker leaves them. */
function storedReport(h: Harness, o: Parameters<typeof makeReport>[0] = {}): RunReport {
  const report = makeReport(o);
  h.blobs.add(report.stdout.digest, report.stderr.digest, ...report.outputFiles.map((f) => f.digest));
  return report;
}

async function leaseOne(h: Harness, workerId: string, waitMs = 0): Promise<Lease> {
  const leases = await h.scheduler.lease(workerId, 1, waitMs);
  assert.equal(leases.length, 1, 'expected one lease');
  return leases[0] as Lease;
}

function complete(h: Harness, workerId: string, lease: Lease, outcome: Outcome): Promise<void> {
  return h.scheduler.complete(workerId, { jobId: lease.jobId, attempt: lease.attempt, outcome });
}

/** Resolves with the first event of this job in one of `states`; rejects after `timeoutMs`. */
function nextEvent(h: Harness, jobId: string, states: readonly JobState[], timeoutMs = 3_000): Promise<JobRecord> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`no ${states.join('/')} event for ${jobId} within ${timeoutMs} ms`));
    }, timeoutMs);
    const stop = h.events.subscribe(jobId, (job) => {
      if (!states.includes(job.state)) return;
      clearTimeout(timer);
      stop();
      resolve(job);
    });
  });
}

/**
 * waitForTerminal with a bound. The scheduler's reaper timer is unref'd (it must not keep a server alive),
 * so a bare wait on an event could let the test process's event loop drain; this timer keeps it up.
 */
async function terminal(h: Harness, jobId: string, timeoutMs = 3_000): Promise<JobRecord> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`job ${jobId} not terminal within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([h.scheduler.waitForTerminal(jobId), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export async function waitUntil(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(5);
  }
}

/** Lease long-polls currently parked in the scheduler (white-box: there is no public signal for it). */
function parkedLeases(h: Harness): number {
  return (h.scheduler as unknown as { waiters: Set<unknown> }).waiters.size;
}

function statesOf(h: Harness, jobId: string): JobState[] {
  return h.published.filter((j) => j.id === jobId).map((j) => j.state);
}

function spec(o: SpecOptions = {}): ExecutionSpec {
  return makeSpec({ label: `s-${Math.random().toString(36).slice(2)}`, ...o });
}

/** Defines the suite on one backend. */
export function schedulerSuite(on: SchedulerBackend): void {
  describe(`Scheduler on ${on.name}`, () => {
    before(() => {
      backend = on;
    });
    afterEach(async () => {
      for (const fn of teardowns.splice(0).reverse()) await fn();
    });

    describe('Scheduler: submit refusals', () => {
      test('an unknown, malformed or never-offered platform is refused at once, and nothing is queued', async () => {
        const h = await harness();
        // Before any worker: even a well-formed platform is refused.
        await assert.rejects(submit(h, spec({ platform: X86 })), (err: unknown) => {
          assert.ok(err instanceof UnsupportedPlatformError);
          assert.equal(err.code, 'FAILED_PRECONDITION');
          assert.match(err.message, /no worker has registered/);
          return true;
        });
        await addWorker(h, { platforms: [X86] });
        const cases: Array<[string, RegExp]> = [
          ['sparc64-linux-cpu', /unknown ISA/],
          ['x86_64', /not a triple/],
          ['x86_64-windows-cpu', /unsupported OS/],
          ['x86_64-linux-tpu', /unknown specialty/],
          [ARM, /no worker serves platform aarch64-linux-cpu/],
        ];
        for (const [platform, message] of cases) {
          const started = performance.now();
          await assert.rejects(submit(h, spec({ platform })), (err: unknown) => {
            assert.ok(err instanceof UnsupportedPlatformError, `${platform}: ${String(err)}`);
            assert.ok(isRemexError(err, 'FAILED_PRECONDITION'));
            assert.match(err.message, message);
            return true;
          });
          assert.ok(performance.now() - started < 500, 'refused at once, not after a wait');
        }
        const err = await submit(h, spec({ platform: ARM })).catch((e: unknown) => e);
        assert.ok(err instanceof UnsupportedPlatformError);
        assert.deepEqual(err.details, { platform: ARM, served: [X86] });
        assert.deepEqual(await h.scheduler.list({ limit: 100 }), []);
        assert.equal((await h.store.jobs.queueDepths()).size, 0);
        assert.deepEqual(h.published, []);
      });

      test('acceptPlatforms lets jobs queue before any worker offers the platform', async () => {
        const h = await harness({ ...FAST, acceptPlatforms: ['arm64-linux-cpu'] });
        const r = await submit(h, spec({ platform: 'arm64-linux-cpu' }));
        assert.equal(r.job.state, 'queued');
        assert.equal(r.job.platform, ARM, 'the platform is stored canonical');
        assert.equal(r.job.spec.platform, ARM);
        assert.deepEqual((await h.scheduler.platforms()).map((p) => [p.platform, p.workers, p.queued]), [[ARM, 0, 1]]);
        await assert.rejects(submit(h, spec({ platform: X86 })), UnsupportedPlatformError);

        // A worker that joins later gets the job.
        const w = await addWorker(h, { platforms: [ARM] });
        const lease = await leaseOne(h, w.id);
        assert.equal(lease.jobId, r.job.id);
      });

      test('a missing input root or stdin blob is refused with every missing digest, and nothing is queued', async () => {
        const h = await harness();
        await addWorker(h);
        const s = spec({ stdin: 'input on stdin' });
        await assert.rejects(h.scheduler.submit({ actionDigest: actionDigestOf(s), spec: s }), (err: unknown) => {
          assert.ok(err instanceof MissingBlobsError);
          assert.equal(err.code, 'FAILED_PRECONDITION');
          assert.deepEqual(err.missing, [s.inputRootDigest, s.stdinDigest]);
          return true;
        });
        h.blobs.add(s.inputRootDigest);
        await assert.rejects(h.scheduler.submit({ actionDigest: actionDigestOf(s), spec: s }), (err: unknown) => {
          assert.ok(err instanceof MissingBlobsError);
          assert.deepEqual(err.missing, [s.stdinDigest]);
          return true;
        });
        assert.deepEqual(await h.scheduler.list({ limit: 100 }), []);
        h.blobs.add(s.stdinDigest as Digest);
        assert.equal((await h.scheduler.submit({ actionDigest: actionDigestOf(s), spec: s })).job.state, 'queued');
      });
    });

    describe('Scheduler: dispatch', () => {
      test('submit → lease → complete, with queued, running and completed published once each', async () => {
        const h = await harness();
        const w = await addWorker(h);
        const s = spec({ platform: 'amd64-linux-cpu', stdin: 'stdin bytes' });
        const submitted = await submit(h, s, { instance: 'inst', priority: 2 });
        assert.deepEqual({ cached: submitted.cached, merged: submitted.merged, state: submitted.job.state }, { cached: false, merged: false, state: 'queued' });
        assert.equal(submitted.job.instance, 'inst');
        assert.equal(submitted.job.priority, 2);
        assert.deepEqual(await h.scheduler.get(submitted.job.id), submitted.job);

        const leasedAfter = Date.now();
        const lease = await leaseOne(h, w.id);
        assert.equal(lease.jobId, submitted.job.id);
        assert.equal(lease.attempt, 1);
        assert.deepEqual(lease.spec, { ...s, platform: X86 });
        assert.ok(lease.leaseExpiresAtMs >= leasedAfter + 200 && lease.leaseExpiresAtMs <= Date.now() + 200);

        const finished = h.scheduler.waitForTerminal(submitted.job.id);
        const report = storedReport(h, { worker: w.id });
        await complete(h, w.id, lease, { state: 'completed', result: report });
        const done = await finished;
        assert.equal(done.state, 'completed');
        assert.deepEqual(done.result, report);
        assert.deepEqual(statesOf(h, submitted.job.id), ['queued', 'running', 'completed']);
        // A second completion of the same lease is refused.
        await assert.rejects(complete(h, w.id, lease, { state: 'completed', result: report }), ConflictError);
      });

      test('a parked lease long-poll wakes promptly when a job is submitted', async () => {
        const h = await harness();
        const w = await addWorker(h);
        const polling = h.scheduler.lease(w.id, 1, 10_000);
        await waitUntil('the lease is parked', () => parkedLeases(h) === 1);
        const started = performance.now();
        const r = await submit(h, spec());
        const leases = await polling;
        const elapsed = performance.now() - started;
        assert.equal(leases.length, 1);
        assert.equal(leases[0]?.jobId, r.job.id);
        assert.ok(elapsed < backend.promptMs, `woke after ${elapsed.toFixed(1)} ms`);
      });

      test('one submit wakes one parked worker; the other keeps waiting', async () => {
        const h = await harness();
        const a = await addWorker(h, { id: 'wa' });
        const b = await addWorker(h, { id: 'wb' });
        const ac = new AbortController();
        const pa = h.scheduler.lease(a.id, 1, 10_000, ac.signal);
        const pb = h.scheduler.lease(b.id, 1, 10_000, ac.signal);
        await waitUntil('both leases are parked', () => parkedLeases(h) === 2);
        const r = await submit(h, spec());
        const first = await Promise.race([pa, pb]);
        assert.deepEqual(first.map((l) => l.jobId), [r.job.id]);
        assert.equal(parkedLeases(h), 1);
        ac.abort();
        const both = [...(await pa), ...(await pb)];
        assert.deepEqual(both.map((l) => l.jobId), [r.job.id]);
      });

      test('a wake-up that reaches a worker which began draining meanwhile is passed on to another waiting worker', async () => {
        const h = await harness();
        const a = await addWorker(h, { id: 'drains', heartbeat: false });
        const b = await addWorker(h, { id: 'stays', heartbeat: false });
        const pa = h.scheduler.lease(a.id, 1, 10_000);
        await waitUntil('the first lease is parked', () => parkedLeases(h) === 1);
        const pb = h.scheduler.lease(b.id, 1, 10_000);
        await waitUntil('both leases are parked', () => parkedLeases(h) === 2);
        await h.scheduler.heartbeat(a.id, true); // starts draining while its lease waits (first in line)
        const started = performance.now();
        const r = await submit(h, spec());
        assert.deepEqual(await pa, [], 'the draining worker takes nothing');
        const leases = await pb;
        const elapsed = performance.now() - started;
        assert.deepEqual(leases.map((l) => l.jobId), [r.job.id]);
        assert.ok(elapsed < 1_000, `the other worker got it after ${elapsed.toFixed(1)} ms, not at the end of its wait`);
      });

      test('a lease call opens with a claim only where a job may wait that no worker here was woken for', async () => {
        const h = await harness(SLOW);
        const w = await addWorker(h, { slots: 4 });
        // White-box count of the store's claims (the statement the skipped one would have been).
        let claims = 0;
        const claim = h.store.jobs.claim.bind(h.store.jobs);
        h.store.jobs.claim = (opts) => {
          claims++;
          return claim(opts);
        };
        assert.deepEqual(await h.scheduler.lease(w.id, 1, 0), []);
        assert.equal(claims, 1, 'nothing known yet: it looks');
        assert.deepEqual(await h.scheduler.lease(w.id, 1, 0), []);
        assert.equal(claims, 1, 'its last claim found less than it asked for, and nothing was queued since');

        // Queued with nobody waiting: the next call looks, and a full claim leaves the platform open.
        const [a, b] = [await submit(h, spec()), await submit(h, spec())];
        assert.deepEqual((await h.scheduler.lease(w.id, 1, 0)).map((l) => l.jobId), [a.job.id]);
        assert.deepEqual((await h.scheduler.lease(w.id, 1, 0)).map((l) => l.jobId), [b.job.id]);
        assert.deepEqual(await h.scheduler.lease(w.id, 1, 0), []);
        assert.equal(claims, 4);
        assert.deepEqual(await h.scheduler.lease(w.id, 1, 0), []);
        assert.equal(claims, 4);

        // Queued while a call waits: that call is woken and takes it.
        const waiting = h.scheduler.lease(w.id, 2, 10_000);
        await waitUntil('the lease is parked', () => parkedLeases(h) === 1);
        assert.equal(claims, 4, 'it waits without looking first');
        const c = await submit(h, spec());
        assert.deepEqual((await waiting).map((l) => l.jobId), [c.job.id]);

        // A job this scheduler heard nothing of (queued by another process on the same store, its notice
        // lost) is found when a waiting call's wait ends.
        const stray = makeSpec({ label: 'stray' });
        h.blobs.add(stray.inputRootDigest);
        const { job: strayJob } = await h.store.jobs.enqueue({ id: 'stray', actionDigest: actionDigestOf(stray), instance: '', priority: 0, spec: stray, nowMs: Date.now(), mergeable: false });
        assert.deepEqual((await h.scheduler.lease(w.id, 1, 150)).map((l) => l.jobId), [strayJob.id]);
      });

      test('a job submitted while a worker waits is handed to it in the insert: no claim, no queued state', async () => {
        const h = await harness(SLOW);
        const w = await addWorker(h, { slots: 2 });
        assert.deepEqual(await h.scheduler.lease(w.id, 2, 0), []); // learns the queue is empty
        let claims = 0;
        const claim = h.store.jobs.claim.bind(h.store.jobs);
        h.store.jobs.claim = (opts) => {
          claims++;
          return claim(opts);
        };
        const waiting = h.scheduler.lease(w.id, 2, 10_000);
        await waitUntil('the lease is parked', () => parkedLeases(h) === 1);
        const r = await submit(h, spec());
        assert.equal(r.job.state, 'running');
        const [lease] = await waiting;
        assert.deepEqual({ jobId: lease?.jobId, attempt: lease?.attempt }, { jobId: r.job.id, attempt: 1 });
        assert.equal(claims, 0);
        const running = await h.scheduler.get(r.job.id);
        assert.deepEqual({ owner: running?.leaseOwner, queueTimeMs: running?.queueTimeMs }, { owner: w.id, queueTimeMs: 0 });
        await complete(h, w.id, lease as Lease, { state: 'completed', result: storedReport(h) });
        assert.deepEqual(statesOf(h, r.job.id), ['running', 'completed']);

        // A submit that merges into a job in flight hands nothing: the reserved worker goes on waiting.
        const other = await addWorker(h, { id: 'other' });
        const same = spec();
        const first = await submit(h, same);
        const busy = await leaseOne(h, other.id);
        assert.equal(busy.jobId, first.job.id);
        const stillWaiting = h.scheduler.lease(w.id, 2, 10_000);
        await waitUntil('the lease is parked', () => parkedLeases(h) === 1);
        const joined = await submit(h, same);
        assert.deepEqual({ merged: joined.merged, id: joined.job.id }, { merged: true, id: first.job.id });
        await waitUntil('the worker waits again', () => parkedLeases(h) === 1);
        const next = await submit(h, spec());
        assert.deepEqual((await stillWaiting).map((l) => l.jobId), [next.job.id]);
      });

      test('a lease with waitMs returns [] after the wait, and at once on abort', async () => {
        const h = await harness();
        const w = await addWorker(h);
        let started = performance.now();
        assert.deepEqual(await h.scheduler.lease(w.id, 1, 120), []);
        let elapsed = performance.now() - started;
        assert.ok(elapsed >= 110 && elapsed < 1_000, `waited ${elapsed.toFixed(1)} ms`);

        const ac = new AbortController();
        const polling = h.scheduler.lease(w.id, 1, 10_000, ac.signal);
        await waitUntil('the lease is parked', () => parkedLeases(h) === 1);
        started = performance.now();
        ac.abort();
        assert.deepEqual(await polling, []);
        elapsed = performance.now() - started;
        assert.ok(elapsed < backend.promptMs, `returned ${elapsed.toFixed(1)} ms after the abort`);
        assert.equal(parkedLeases(h), 0);

        assert.deepEqual(await h.scheduler.lease(w.id, 1, 10_000, AbortSignal.abort()), []);
        assert.deepEqual(await h.scheduler.lease(w.id, 1, 0), []);
      });

      test('closing the scheduler ends parked lease long-polls', async () => {
        const h = await harness();
        const w = await addWorker(h);
        const polling = h.scheduler.lease(w.id, 1, 10_000);
        await waitUntil('the lease is parked', () => parkedLeases(h) === 1);
        const started = performance.now();
        await h.scheduler.close();
        assert.deepEqual(await polling, []);
        assert.ok(performance.now() - started < 2 * backend.promptMs);
      });

      test('an unknown worker cannot lease', async () => {
        const h = await harness();
        await assert.rejects(h.scheduler.lease('never-registered', 1, 0), NotFoundError);
      });

      test('dispatch follows priority, then submission order', async () => {
        const h = await harness();
        const w = await addWorker(h);
        const low = await submit(h, spec(), { priority: 5 });
        const first = await submit(h, spec(), { priority: 0 });
        const second = await submit(h, spec(), { priority: 0 });
        const urgent = await submit(h, spec(), { priority: -3 });
        const leases = await h.scheduler.lease(w.id, 4, 0);
        assert.deepEqual(leases.map((l) => l.jobId), [urgent.job.id, first.job.id, second.job.id, low.job.id]);
      });

      test('identical submissions merge into one job, and every waiter gets its result', async () => {
        const h = await harness();
        const w = await addWorker(h);
        const s = spec();
        const a = await submit(h, s);
        const b = await submit(h, s);
        assert.equal(b.merged, true);
        assert.equal(b.job.id, a.job.id);
        const lease = await leaseOne(h, w.id);
        const c = await submit(h, s);
        assert.equal(c.merged, true, 'merges while running too');
        assert.equal(c.job.id, a.job.id);
        assert.deepEqual(await h.scheduler.lease(w.id, 5, 0), [], 'nothing else was queued');

        // doNotCache never merges.
        const nc = spec({ doNotCache: true });
        const n1 = await submit(h, nc);
        const n2 = await submit(h, nc);
        assert.equal(n2.merged, false);
        assert.notEqual(n1.job.id, n2.job.id);

        const waits = [h.scheduler.waitForTerminal(a.job.id), h.scheduler.waitForTerminal(c.job.id)];
        const report = storedReport(h);
        await complete(h, w.id, lease, { state: 'completed', result: report });
        for (const done of await Promise.all(waits)) assert.deepEqual(done.result, report);
        assert.equal(statesOf(h, a.job.id).filter((s) => s === 'queued').length, 1, 'a merge publishes nothing');
      });
    });

    describe('Scheduler: action cache', () => {
      async function runToEnd(h: Harness, s: ExecutionSpec, outcome: (h: Harness) => Outcome, extra: Partial<SubmitRequest> = {}): Promise<JobRecord> {
        const w = await addWorker(h);
        const r = await submit(h, s, extra);
        assert.equal(r.cached, false);
        const lease = await leaseOne(h, w.id);
        assert.equal(lease.jobId, r.job.id);
        await complete(h, w.id, lease, outcome(h));
        const done = await h.scheduler.get(r.job.id);
        assert.ok(done);
        return done;
      }

      test('a completed cacheable result is served to the next identical submit', async () => {
        const h = await harness();
        const s = spec();
        let report!: RunReport;
        const ran = await runToEnd(h, s, (hh) => ({ state: 'completed', result: (report = storedReport(hh, { exitCode: 4 })) }));
        assert.deepEqual(await h.store.actionCache.get('', actionDigestOf(s)), report, 'a non-zero exit is still cacheable');

        const again = await submit(h, s);
        assert.equal(again.cached, true);
        assert.equal(again.merged, false);
        assert.notEqual(again.job.id, ran.id);
        assert.equal(again.job.state, 'completed');
        assert.equal(again.job.cached, true);
        assert.deepEqual(again.job.result, report);
        assert.deepEqual(statesOf(h, again.job.id), ['completed']);
        assert.equal((await h.scheduler.waitForTerminal(again.job.id)).state, 'completed');
        assert.equal((await h.store.jobs.queueDepths()).size, 0);

        // The cache is per instance.
        const other = await submit(h, s, { instance: 'other' });
        assert.equal(other.cached, false);
        assert.equal(other.job.state, 'queued');
      });

      test('doNotCache neither stores nor looks up a result', async () => {
        const h = await harness();
        const s = spec({ doNotCache: true });
        await runToEnd(h, s, (hh) => ({ state: 'completed', result: storedReport(hh) }));
        assert.equal(await h.store.actionCache.get('', actionDigestOf(s)), undefined);
        // Even with an entry under its digest, a doNotCache submit runs.
        await h.store.actionCache.put('', actionDigestOf(s), storedReport(h), Date.now());
        const again = await submit(h, s);
        assert.equal(again.cached, false);
        assert.equal(again.job.state, 'queued');
      });

      test('skipCacheLookup runs again, and its result replaces the entry', async () => {
        const h = await harness();
        const s = spec();
        await runToEnd(h, s, (hh) => ({ state: 'completed', result: storedReport(hh, { stdoutText: 'old\n' }) }));
        let fresh!: RunReport;
        const rerun = await runToEnd(h, s, (hh) => ({ state: 'completed', result: (fresh = storedReport(hh, { stdoutText: 'new\n' })) }), { skipCacheLookup: true });
        assert.equal(rerun.cached, false);
        assert.deepEqual(await h.store.actionCache.get('', actionDigestOf(s)), fresh);
        assert.deepEqual((await submit(h, s)).job.result, fresh);
      });

      test('timed-out and limit-stopped runs are not cached', async () => {
        const h = await harness();
        const outcomes: Array<(hh: Harness) => Outcome> = [
          (hh) => ({ state: 'timed_out', result: storedReport(hh, { timedOut: true, limitExceeded: 'wall_time', exitCode: null, signal: 'SIGKILL' }) }),
          (hh) => ({ state: 'completed', result: storedReport(hh, { limitExceeded: 'memory', exitCode: null, signal: 'SIGKILL' }) }),
          (hh) => ({ state: 'completed', result: storedReport(hh, { limitExceeded: 'output', exitCode: 0 }) }),
          (hh) => ({ state: 'cancelled', result: storedReport(hh, { exitCode: null, signal: 'SIGTERM' }) }),
          () => ({ state: 'failed', failure: { code: 'INTERNAL', message: 'sandbox failed' } }),
        ];
        for (const outcome of outcomes) {
          const s = spec();
          const done = await runToEnd(h, s, outcome);
          assert.equal(await h.store.actionCache.get('', actionDigestOf(s)), undefined, `${done.state} was cached`);
          const again = await submit(h, s);
          assert.equal(again.cached, false);
          assert.equal(again.job.state, 'queued');
          await h.scheduler.cancel(again.job.id); // keep the queue empty for the next round
        }
      });

      test('an entry whose blobs have disappeared is not served, and is dropped', async () => {
        const h = await harness();
        for (const lose of ['stdout', 'output file'] as const) {
          const s = spec();
          let report!: RunReport;
          await runToEnd(h, s, (hh) => ({ state: 'completed', result: (report = storedReport(hh, { stdoutText: `${lose} of ${s.command.arguments[1]}\n` })) }));
          assert.ok(await h.store.actionCache.get('', actionDigestOf(s)));
          h.blobs.remove(lose === 'stdout' ? report.stdout.digest : (report.outputFiles[0]?.digest as Digest));
          const again = await submit(h, s);
          assert.equal(again.cached, false, `served with its ${lose} gone`);
          assert.equal(again.job.state, 'queued');
          assert.equal(await h.store.actionCache.get('', actionDigestOf(s)), undefined, 'the broken entry is dropped');
          await h.scheduler.cancel(again.job.id); // keep the queue empty for the next round
        }
      });
    });

    describe('Scheduler: leases, lost workers and stale results', () => {
      test('a lease whose answer never reached its worker is requeued, though the worker keeps heartbeating', async () => {
        const h = await harness();
        const w = await addWorker(h, { heartbeat: false });
        const r = await submit(h, spec());
        await leaseOne(h, w.id); // the answer is "lost": the worker never starts it
        // The worker heartbeats with what it runs (nothing): the lease is not renewed, expires, and is requeued.
        const beating = setInterval(() => void h.scheduler.heartbeat(w.id, false, []).catch(() => undefined), 20);
        teardowns.push(() => clearInterval(beating));
        await nextEvent(h, r.job.id, ['queued']);
        const again = await leaseOne(h, w.id, 5_000);
        assert.equal(again.jobId, r.job.id);
        assert.equal(again.attempt, 2);
        // Held, it stays leased through the heartbeats well past the lease timeout.
        clearInterval(beating);
        const holding = setInterval(() => void h.scheduler.heartbeat(w.id, false, [{ jobId: again.jobId, attempt: again.attempt }]).catch(() => undefined), 20);
        teardowns.push(() => clearInterval(holding));
        await new Promise((resolve) => setTimeout(resolve, (FAST.leaseTimeoutMs ?? 0) * 3));
        assert.equal((await h.scheduler.get(r.job.id))?.state, 'running');
        assert.equal((await h.scheduler.get(r.job.id))?.attempt, 2);
      });

      test('a stale attempt cannot commit after its lease expired and the job was requeued; the later attempt can', async () => {
        // Workers are never declared silent here: the lease timeout alone requeues the job.
        const h = await harness({ ...FAST, workerSilenceMs: 30_000 });
        const stale = await addWorker(h, { id: 'stale', heartbeat: false });
        const fresh = await addWorker(h, { id: 'fresh' });
        const r = await submit(h, spec());
        const first = await leaseOne(h, stale.id);
        // The fresh worker long-polls; it gets the job once the stale lease expires and the job is requeued.
        const second = await leaseOne(h, fresh.id, 3_000);
        assert.equal(second.jobId, r.job.id);
        assert.equal(second.attempt, 2);

        const staleReport = storedReport(h, { worker: stale.id, stdoutText: 'stale\n' });
        await assert.rejects(complete(h, stale.id, first, { state: 'completed', result: staleReport }), (err: unknown) => {
          assert.ok(err instanceof ConflictError);
          assert.equal(err.code, 'ABORTED');
          return true;
        });
        const freshReport = storedReport(h, { worker: fresh.id, stdoutText: 'fresh\n' });
        await complete(h, fresh.id, second, { state: 'completed', result: freshReport });
        await assert.rejects(complete(h, stale.id, first, { state: 'completed', result: staleReport }), ConflictError);

        const done = await h.scheduler.get(r.job.id);
        assert.equal(done?.state, 'completed');
        assert.equal(done?.attempt, 2);
        assert.deepEqual(done?.result, freshReport);
        assert.deepEqual(statesOf(h, r.job.id), ['queued', 'running', 'queued', 'running', 'completed']);
        assert.deepEqual(await h.store.actionCache.get('', r.job.actionDigest), freshReport);
      });

      test('racing completions of two attempts commit exactly one result', async () => {
        const h = await harness({ ...FAST, workerSilenceMs: 30_000 });
        const a = await addWorker(h, { id: 'a', heartbeat: false });
        const b = await addWorker(h, { id: 'b' });
        const r = await submit(h, spec());
        const la = await leaseOne(h, a.id);
        const lb = await leaseOne(h, b.id, 3_000);
        const results = await Promise.allSettled([
          complete(h, a.id, la, { state: 'completed', result: storedReport(h, { worker: 'a' }) }),
          complete(h, b.id, lb, { state: 'completed', result: storedReport(h, { worker: 'b' }) }),
        ]);
        assert.deepEqual(results.map((x) => x.status), ['rejected', 'fulfilled']);
        assert.equal((await h.scheduler.get(r.job.id))?.result?.worker, 'b');
        assert.equal(statesOf(h, r.job.id).filter((s) => s === 'completed').length, 1);
      });

      test('completeAndLease commits each result on its own, then leases without waiting for the settlements', async () => {
        const h = await harness(SLOW);
        const w = await addWorker(h, { id: 'busy', slots: 3 });
        const other = await addWorker(h, { id: 'other' });
        const [r1, r2, r3] = [await submit(h, spec()), await submit(h, spec()), await submit(h, spec())];
        const l1 = await leaseOne(h, w.id);
        const l2 = await leaseOne(h, w.id);
        const l3 = await leaseOne(h, other.id);
        const queued = await submit(h, spec());

        const mine = storedReport(h, { worker: 'busy', stdoutText: 'one\n' });
        const reply = await h.scheduler.completeAndLease(
          w.id,
          [
            { jobId: l1.jobId, attempt: l1.attempt, outcome: { state: 'completed', result: mine } },
            // Not this worker's lease: stale, and the owner's result still commits later.
            { jobId: l3.jobId, attempt: l3.attempt, outcome: { state: 'completed', result: storedReport(h, { worker: 'busy' }) } },
            { jobId: l2.jobId, attempt: l2.attempt, outcome: { state: 'failed', failure: { code: 'INTERNAL', message: 'boom' } } },
          ],
          2,
          10_000,
        );
        assert.deepEqual(
          reply.settled.map((s) => [s.jobId, s.status]),
          [
            [r1.job.id, 'committed'],
            [r3.job.id, 'stale'],
            [r2.job.id, 'committed'],
          ],
        );
        // The one queued job; with two asked for and none more queued, the call did not wait 10 s for another.
        assert.deepEqual(reply.leases.map((l) => l.jobId), [queued.job.id]);
        assert.deepEqual((await h.scheduler.get(r1.job.id))?.result, mine);
        assert.equal((await h.scheduler.get(r2.job.id))?.failure?.message, 'boom');
        assert.equal((await h.scheduler.get(r3.job.id))?.state, 'running');
        await complete(h, other.id, l3, { state: 'completed', result: storedReport(h, { worker: 'other' }) });
        assert.equal((await h.scheduler.get(r3.job.id))?.result?.worker, 'other');

        // max 0: settle only, take nothing, wait for nothing — and a result sent again is stale, not recommitted.
        const again = await h.scheduler.completeAndLease(w.id, [{ jobId: l1.jobId, attempt: l1.attempt, outcome: { state: 'completed', result: storedReport(h, { worker: 'again' }) } }], 0, 10_000);
        assert.deepEqual(again, { settled: [{ jobId: r1.job.id, attempt: 1, status: 'stale', message: again.settled[0]?.message }], leases: [] });
        assert.deepEqual((await h.scheduler.get(r1.job.id))?.result, mine);
        assert.equal(statesOf(h, r1.job.id).filter((s) => s === 'completed').length, 1);
      });

      test('completeAndLease from an unknown worker commits nothing and says NOT_FOUND', async () => {
        const h = await harness(SLOW);
        const w = await addWorker(h, { id: 'leaving' });
        const r = await submit(h, spec());
        const lease = await leaseOne(h, w.id);
        await assert.rejects(
          h.scheduler.completeAndLease('never-registered', [{ jobId: lease.jobId, attempt: lease.attempt, outcome: { state: 'completed', result: storedReport(h) } }], 1, 0),
          (err: unknown) => isRemexError(err, 'NOT_FOUND'),
        );
        assert.equal((await h.scheduler.get(r.job.id))?.state, 'running');
      });

      test('a worker that goes silent is declared gone and its job runs on another worker', async () => {
        // Leases are long: only the silence detection can free the job.
        const h = await harness({ ...FAST, leaseTimeoutMs: 30_000, workerSilenceMs: 300 });
        const vanishing = await addWorker(h, { id: 'vanishing', heartbeat: false });
        const r = await submit(h, spec());
        const first = await leaseOne(h, vanishing.id);
        const survivor = await addWorker(h, { id: 'survivor' });
        const started = performance.now();
        const second = await leaseOne(h, survivor.id, 3_000);
        assert.ok(performance.now() - started < 2_000);
        assert.equal(second.jobId, r.job.id);
        assert.equal(second.attempt, first.attempt + 1);
        assert.equal((await h.store.workers.get(vanishing.id))?.state, 'gone');
        assert.deepEqual(await h.scheduler.heartbeat(vanishing.id, false), { cancel: [], known: false });
        await assert.rejects(h.scheduler.lease(vanishing.id, 1, 0), NotFoundError);

        await complete(h, survivor.id, second, { state: 'completed', result: storedReport(h, { worker: survivor.id }) });
        const done = await h.scheduler.get(r.job.id);
        assert.equal(done?.state, 'completed');
        assert.equal(done?.result?.worker, survivor.id);
      });

      test('a silent worker\'s job past max-runtime + failsafe is emergency_stopped, not requeued; the worker hears to stop it', async () => {
        // Leases are long: the failsafe deadline (100 ms + 100 ms) passes before anything else frees the job.
        const h = await harness({ ...FAST, leaseTimeoutMs: 30_000, workerSilenceMs: 300 });
        const silent = await addWorker(h, { id: 'silent', heartbeat: false });
        const r = await submit(h, { ...spec(), timeoutMs: 100, failsafeMs: 100 });
        const lease = await leaseOne(h, silent.id);
        assert.equal(lease.failsafeMs, 100);
        const stopped = await terminal(h, r.job.id);
        assert.equal(stopped.state, 'emergency_stopped');
        assert.equal(stopped.failure?.code, 'DEADLINE_EXCEEDED');
        assert.match(stopped.failure?.message ?? '', /still running 200 ms after it started .* with no word from its worker; its lease is revoked/);
        assert.deepEqual(statesOf(h, r.job.id), ['queued', 'running', 'emergency_stopped']);
        // It comes back: whatever it holds is no longer its, and its late result is refused.
        assert.deepEqual(await h.scheduler.heartbeat(silent.id, false, [{ jobId: lease.jobId, attempt: lease.attempt }]), { cancel: [r.job.id], known: false });
        await assert.rejects(complete(h, silent.id, lease, { state: 'completed', result: storedReport(h) }), ConflictError);
        assert.equal((await h.scheduler.get(r.job.id))?.state, 'emergency_stopped');
      });

      test('a heartbeating worker whose run outlives max-runtime + failsafe + a lease is emergency_stopped, and its heartbeat says to stop', async () => {
        const h = await harness({ ...FAST, leaseTimeoutMs: 300, workerSilenceMs: 30_000, failsafeMs: 100 });
        const w = await addWorker(h, { id: 'stuck' });
        // No failsafe of its own: the server's default (100 ms) applies.
        const r = await submit(h, { ...spec(), timeoutMs: 100 });
        const lease = await leaseOne(h, w.id);
        assert.equal(lease.failsafeMs, 100);
        const stopped = await terminal(h, r.job.id, 5_000);
        assert.equal(stopped.state, 'emergency_stopped');
        assert.match(stopped.failure?.message ?? '', /and its worker did not stop it; its lease is revoked/);
        assert.ok((stopped.completedAtMs ?? 0) - (stopped.startedAtMs ?? 0) >= 500, 'not before start + 100 + 100 + the lease');
        const reply = await h.scheduler.heartbeat(w.id, false, [{ jobId: lease.jobId, attempt: lease.attempt }]);
        assert.deepEqual(reply, { cancel: [r.job.id], known: true });
      });

      test('a result whose worker reports no price takes its platform\'s default; a priced worker keeps its own', async () => {
        const h = await harness({ ...SLOW, platformPrices: { [X86]: 0.36 } });
        const w = await addWorker(h, { id: 'priced-by-server' });
        const host = { cpuModel: 'cpu', cores: 2, memoryBytes: 1 << 30, kernel: 'Linux 6 x86_64', slots: 2, pricePerHour: null };
        const unpriced = await submit(h, spec({ label: 'unpriced' }));
        await complete(h, w.id, await leaseOne(h, w.id), { state: 'completed', result: storedReport(h, { host }) });
        assert.equal((await h.scheduler.get(unpriced.job.id))?.result?.host?.pricePerHour, 0.36);
        const own = await submit(h, spec({ label: 'own price' }));
        await complete(h, w.id, await leaseOne(h, w.id), { state: 'completed', result: storedReport(h, { host: { ...host, pricePerHour: 0.5 } }) });
        assert.equal((await h.scheduler.get(own.job.id))?.result?.host?.pricePerHour, 0.5);
        const armWorker = await addWorker(h, { id: 'arm', platforms: [ARM] });
        const arm = await submit(h, spec({ label: 'other platform', platform: ARM }));
        await complete(h, armWorker.id, await leaseOne(h, armWorker.id), { state: 'completed', result: storedReport(h, { host }) });
        assert.equal((await h.scheduler.get(arm.job.id))?.result?.host?.pricePerHour, null, 'no default for that platform');
      });

      test('workers are listed with their price per hour: their own, else their platform\'s default, else none', async () => {
        const h = await harness({ ...SLOW, platformPrices: { [ARM]: 0.0336 } });
        await h.scheduler.register({ id: 'own', name: 'own', platforms: [{ platform: X86, emulated: false }], slots: 1, pricePerHour: 0.25 });
        await h.scheduler.register({ id: 'arm', name: 'arm', platforms: [{ platform: X86, emulated: true }, { platform: ARM, emulated: false }], slots: 1 });
        await h.scheduler.register({ id: 'none', name: 'none', platforms: [{ platform: X86, emulated: false }], slots: 1 });
        const listed = new Map((await h.scheduler.workersWithLoad()).map((w) => [w.id, w]));
        assert.deepEqual(listed.get('own')?.price, { perHour: 0.25, from: 'worker' });
        assert.equal(listed.get('own')?.pricePerHour, 0.25, 'stored with the worker');
        assert.deepEqual(listed.get('arm')?.price, { perHour: 0.0336, from: 'platform' });
        assert.equal(listed.get('none')?.price, null);
        assert.equal('pricePerHour' in (listed.get('none') ?? {}), false);
        // Registering again without a price forgets the old one.
        await h.scheduler.register({ id: 'own', name: 'own', platforms: [{ platform: X86, emulated: false }], slots: 1 });
        assert.equal((await h.scheduler.workersWithLoad()).find((w) => w.id === 'own')?.price, null);
      });

      test('after maxAttempts lost workers the job fails as LOST', async () => {
        const h = await harness({ ...FAST, maxAttempts: 2 });
        const w1 = await addWorker(h, { id: 'first', heartbeat: false });
        const r = await submit(h, spec());
        const l1 = await leaseOne(h, w1.id);
        assert.equal(l1.attempt, 1);
        // The second worker stays alive until it holds the job, then vanishes too.
        const w2 = await addWorker(h, { id: 'second' });
        const l2 = await leaseOne(h, w2.id, 3_000);
        w2.stopHeartbeat();
        assert.equal(l2.jobId, r.job.id);
        assert.equal(l2.attempt, 2);
        const failed = await terminal(h, r.job.id);
        assert.equal(failed.state, 'failed');
        assert.equal(failed.failure?.code, 'LOST');
        assert.equal(failed.attempt, 2);
        assert.equal(statesOf(h, r.job.id).at(-1), 'failed');
        await assert.rejects(complete(h, w2.id, l2, { state: 'completed', result: storedReport(h) }), ConflictError);
      });

      test('heartbeats keep a lease alive well past its timeout; without them it expires', async () => {
        const h = await harness({ ...FAST, workerSilenceMs: 30_000 });
        const w = await addWorker(h, { id: 'steady' });
        const r = await submit(h, spec());
        const lease = await leaseOne(h, w.id);
        const requeued = nextEvent(h, r.job.id, ['queued'], 5_000);
        await sleep(3 * 200);
        const held = await h.scheduler.get(r.job.id);
        assert.equal(held?.state, 'running');
        assert.equal(held?.attempt, 1);
        assert.equal(held?.leaseOwner, w.id);
        assert.ok((held?.leaseExpiresAtMs ?? 0) > lease.leaseExpiresAtMs, 'the lease was extended');

        w.stopHeartbeat();
        const back = await requeued;
        assert.equal(back.attempt, 1);
        assert.equal(back.leaseOwner, null);
      });

      test('heartbeat of an unknown worker says so; a draining heartbeat is recorded', async () => {
        const h = await harness();
        assert.deepEqual(await h.scheduler.heartbeat('nobody', false), { cancel: [], known: false });
        const w = await addWorker(h, { heartbeat: false });
        assert.deepEqual(await h.scheduler.heartbeat(w.id, true), { cancel: [], known: true });
        assert.equal((await h.store.workers.get(w.id))?.state, 'draining');
      });

      test('unregister releases the worker\'s leases at once', async () => {
        const h = await harness(SLOW);
        const leaving = await addWorker(h, { id: 'leaving' });
        const staying = await addWorker(h, { id: 'staying' });
        const r = await submit(h, spec());
        const first = await leaseOne(h, leaving.id);
        const polling = h.scheduler.lease(staying.id, 1, 3_000);
        await waitUntil('the lease is parked', () => parkedLeases(h) === 1);
        await h.scheduler.unregister(leaving.id);
        const [second] = await polling;
        assert.equal(second?.jobId, r.job.id);
        assert.equal(second?.attempt, 2);
        assert.equal((await h.store.workers.get(leaving.id))?.state, 'gone');
        await assert.rejects(h.scheduler.lease(leaving.id, 1, 0), NotFoundError);
        await assert.rejects(complete(h, leaving.id, first, { state: 'completed', result: storedReport(h) }), ConflictError);
      });
    });

    describe('Scheduler: cancellation and waiting', () => {
      test('cancel of a queued job cancels it at once', async () => {
        const h = await harness();
        await addWorker(h);
        const r = await submit(h, spec());
        const waiting = h.scheduler.waitForTerminal(r.job.id);
        const cancelled = await h.scheduler.cancel(r.job.id);
        assert.equal(cancelled.state, 'cancelled');
        assert.equal((await waiting).state, 'cancelled');
        assert.deepEqual(statesOf(h, r.job.id), ['queued', 'cancelled']);
        assert.deepEqual(await h.scheduler.lease((await addWorker(h)).id, 1, 0), []);
        // Cancelling again, or a finished job, changes nothing.
        assert.deepEqual(await h.scheduler.cancel(r.job.id), cancelled);
        await assert.rejects(h.scheduler.cancel('no-such-job'), NotFoundError);
      });

      test('cancel of a running job calls the worker\'s onCancel hook and is reported by heartbeat', async () => {
        const h = await harness();
        const w = await addWorker(h, { heartbeat: false });
        const heard: string[] = [];
        h.scheduler.onCancel(w.id, (jobId) => heard.push(jobId));
        const r = await submit(h, spec());
        const lease = await leaseOne(h, w.id);
        const flagged = await h.scheduler.cancel(r.job.id);
        assert.equal(flagged.state, 'running');
        assert.equal(flagged.cancelRequested, true);
        assert.deepEqual(heard, [r.job.id]);
        assert.deepEqual(await h.scheduler.heartbeat(w.id, false), { cancel: [r.job.id], known: true });

        await complete(h, w.id, lease, { state: 'cancelled', result: storedReport(h, { exitCode: null, signal: 'SIGKILL' }) });
        const done = await h.scheduler.waitForTerminal(r.job.id);
        assert.equal(done.state, 'cancelled');
        assert.deepEqual(await h.scheduler.heartbeat(w.id, false), { cancel: [], known: true });
      });

      test('a running job cancelled before its worker was lost ends cancelled and does not run again', async () => {
        const h = await harness();
        const w = await addWorker(h, { heartbeat: false });
        const r = await submit(h, spec());
        await leaseOne(h, w.id);
        await h.scheduler.cancel(r.job.id);
        const done = await terminal(h, r.job.id);
        assert.equal(done.state, 'cancelled');
        const other = await addWorker(h);
        assert.deepEqual(await h.scheduler.lease(other.id, 1, 0), []);
      });

      test('waitForTerminal resolves on completion, at once for a finished job, and with the current state on abort', async () => {
        const h = await harness();
        const w = await addWorker(h);
        const r = await submit(h, spec());
        const waiting = h.scheduler.waitForTerminal(r.job.id);
        const ac = new AbortController();
        const aborted = h.scheduler.waitForTerminal(r.job.id, ac.signal);
        const lease = await leaseOne(h, w.id);
        ac.abort();
        assert.equal((await aborted).state, 'running');
        await complete(h, w.id, lease, { state: 'completed', result: storedReport(h) });
        const done = await waiting;
        assert.equal(done.state, 'completed');
        assert.deepEqual(await h.scheduler.waitForTerminal(r.job.id), done);
        await assert.rejects(h.scheduler.waitForTerminal('no-such-job'), NotFoundError);
      });
    });

    describe('Scheduler: status and timing', () => {
      test('platforms() reports workers, slots, free slots, queue depth, running and emulation', async () => {
        const h = await harness({ ...SLOW, acceptPlatforms: [RISCV] });
        const native = await addWorker(h, { id: 'native', platforms: [X86], slots: 2 });
        const emu = await addWorker(h, { id: 'emu', platforms: [{ platform: ARM, emulated: true }, { platform: X86, emulated: true }], slots: 3 });
        for (let i = 0; i < 3; i++) await submit(h, spec({ platform: X86 }));
        await submit(h, spec({ platform: ARM }));
        await leaseOne(h, native.id);

        const status = (await h.scheduler.platforms()).map(({ platform, ...rest }) => [platform, rest]);
        assert.deepEqual(status, [
          [ARM, { emulated: true, workers: 1, slots: 3, freeSlots: 3, sharedSlots: 3, queued: 1, running: 0 }],
          [RISCV, { emulated: false, workers: 0, slots: 0, freeSlots: 0, sharedSlots: 0, queued: 0, running: 0 }],
          [X86, { emulated: false, workers: 2, slots: 5, freeSlots: 4, sharedSlots: 3, queued: 2, running: 1 }],
        ]);

        // The emulating worker takes the two oldest jobs of its platforms (one dispatch order across them): both x86_64.
        assert.equal((await h.scheduler.lease(emu.id, 2, 0)).length, 2);
        const after = new Map((await h.scheduler.platforms()).map((p) => [p.platform, p]));
        assert.deepEqual([after.get(ARM)?.queued, after.get(ARM)?.running, after.get(ARM)?.freeSlots], [1, 0, 1]);
        assert.deepEqual([after.get(X86)?.queued, after.get(X86)?.running, after.get(X86)?.freeSlots], [0, 3, 2]);

        // Without its native worker, x86_64 is served only by emulation.
        await h.scheduler.unregister(native.id);
        const gone = new Map((await h.scheduler.platforms()).map((p) => [p.platform, p]));
        assert.deepEqual(
          [gone.get(X86)?.emulated, gone.get(X86)?.workers, gone.get(X86)?.slots, gone.get(X86)?.queued, gone.get(X86)?.running],
          [true, 1, 3, 1, 2],
        );
      });

      test('queue time is measured apart from execution time', async () => {
        let nowMs = 1_700_000_000_000;
        const h = await harness(SLOW, { now: () => nowMs, start: false });
        const w = await addWorker(h, { heartbeat: false });
        const r = await submit(h, spec());
        nowMs += 750; // waiting for a worker
        const lease = await leaseOne(h, w.id);
        const running = await h.scheduler.get(lease.jobId);
        assert.equal(running?.queueTimeMs, 750);
        assert.equal(running?.startedAtMs, nowMs);
        nowMs += 300; // running
        await complete(h, w.id, lease, { state: 'completed', result: storedReport(h) });
        const done = await h.scheduler.get(r.job.id);
        assert.equal(done?.queueTimeMs, 750);
        assert.equal((done?.completedAtMs ?? 0) - (done?.startedAtMs ?? 0), 300);
        assert.equal((done?.startedAtMs ?? 0) - (done?.createdAtMs ?? 0), 750);
      });

      test('queue time measured on the real clock reflects the wait', async () => {
        const h = await harness(SLOW);
        const w = await addWorker(h);
        const r = await submit(h, spec());
        const queuedAt = Date.now();
        await waitUntil('some queue time has passed', () => Date.now() - queuedAt >= 120);
        const lease = await leaseOne(h, w.id);
        const running = await h.scheduler.get(lease.jobId);
        assert.equal(running?.id, r.job.id);
        assert.ok((running?.queueTimeMs ?? 0) >= 120, `queueTimeMs ${running?.queueTimeMs}`);
        assert.ok((running?.queueTimeMs ?? 0) < 2_000);
      });

      test('start({ releaseOwnerPrefix }) requeues jobs a previous process\'s local workers held', async () => {
        // The previous process: a local worker and a remote one each hold a job; a third job waits.
        const previous = await harness(SLOW);
        const local = await addWorker(previous, { id: 'local-1', heartbeat: false });
        const remote = await addWorker(previous, { id: 'remote-1', heartbeat: false });
        const localJob = await submit(previous, spec());
        const remoteJob = await submit(previous, spec());
        const waitingJob = await submit(previous, spec());
        assert.equal((await leaseOne(previous, local.id)).jobId, localJob.job.id);
        assert.equal((await leaseOne(previous, remote.id)).jobId, remoteJob.job.id);
        // It stops without unregistering anyone (a crash or a kill).
        await previous.scheduler.close();
        await previous.store.close();

        const { store, events, close } = await previous.reopen();
        teardowns.push(close);
        const published: JobRecord[] = [];
        events.subscribeAll((j) => published.push(j));
        const blobs = new FakeBlobPresence();
        const scheduler = new Scheduler(store, blobs, events, SLOW);
        teardowns.push(() => scheduler.close());
        await scheduler.start({ releaseOwnerPrefix: 'local-' });

        const requeued = await scheduler.get(localJob.job.id);
        assert.equal(requeued?.state, 'queued');
        assert.equal(requeued?.leaseOwner, null);
        assert.equal(requeued?.attempt, 1);
        assert.deepEqual(published.map((j) => [j.id, j.state]), [[localJob.job.id, 'queued']]);
        const stillRemote = await scheduler.get(remoteJob.job.id);
        assert.equal(stillRemote?.state, 'running');
        assert.equal(stillRemote?.leaseOwner, remote.id);
        assert.equal((await scheduler.get(waitingJob.job.id))?.state, 'queued');

        // The new process's local worker picks both up, the requeued one first.
        const session = await scheduler.register({ id: 'local-2', name: 'local-2', platforms: [{ platform: X86, emulated: false }], slots: 2 });
        const leases = await scheduler.lease(session.workerId, 2, 0);
        assert.deepEqual(leases.map((l) => [l.jobId, l.attempt]), [[localJob.job.id, 2], [waitingJob.job.id, 1]]);
      });
    });
  });
}
