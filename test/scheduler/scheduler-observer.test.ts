/**
 * The scheduler's observation: what its observers hear of each job and worker, its log, and a lease
 * reaper that says it fails and backs off instead of failing silently. Real SqliteStore and in-memory
 * bus; the failing store is the real one with one method made to throw (no database outage can be
 * staged on an embedded SQLite file), named as such where it is done.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import type { Digest } from '../../src/core/digest.js';
import { InMemoryEventBus } from '../../src/events/memory/in-memory-event-bus.js';
import type { SchedulerObserver } from '../../src/scheduler/observer.js';
import { Scheduler } from '../../src/scheduler/scheduler.js';
import type { SchedulerOptions } from '../../src/scheduler/scheduler.js';
import type { JobRecord } from '../../src/store/ports.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { eventually } from '../helpers/processes.js';
import { actionDigestOf, makeReport, makeSpec, X86 } from '../store/fixtures.js';

const FAST: Partial<SchedulerOptions> = { leaseTimeoutMs: 200, heartbeatIntervalMs: 40, reaperIntervalMs: 20, workerSilenceMs: 300, maxAttempts: 3 };

/** Every blob present: this suite is about observation, not inputs. */
const allPresent = { findMissing: async (_: readonly Digest[]): Promise<Digest[]> => [] };

type Heard = Array<[string, ...unknown[]]>;

/** An observer that writes down every call, with the job's id and state where one is passed. */
function recorder(): { heard: Heard; observer: SchedulerObserver } {
  const heard: Heard = [];
  const brief = (arg: unknown): unknown => (arg && typeof arg === 'object' && 'state' in arg && 'id' in arg ? `${(arg as JobRecord).state}` : arg);
  const observer = new Proxy({} as SchedulerObserver, {
    get: (_t, key) => (...args: unknown[]) => heard.push([String(key), ...args.map(brief)]),
  });
  return { heard, observer };
}

function capturedLogger(): { lines: Array<Record<string, unknown>>; logger: pino.Logger } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { lines, logger };
}

const teardowns: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const fn of teardowns.splice(0).reverse()) await fn();
});

async function harness(observers: SchedulerObserver[], logger: pino.Logger, opts = FAST): Promise<{ store: SqliteStore; scheduler: Scheduler }> {
  const dir = mkdtempSync(join(tmpdir(), 'remex-observer-'));
  const store = new SqliteStore({ path: join(dir, 'remex.db') });
  const scheduler = new Scheduler(store, allPresent, new InMemoryEventBus(), opts, Date.now, { logger, observers });
  await scheduler.start();
  teardowns.push(async () => {
    await scheduler.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { store, scheduler };
}

describe('scheduler observation', () => {
  test('observers hear a job queued, leased, finished; then a cache hit, a merge, and a job handed to a waiting worker', async () => {
    const { heard, observer } = recorder();
    const { logger } = capturedLogger();
    const { scheduler } = await harness([observer], logger);
    const { workerId } = await scheduler.register({ name: 'w', platforms: [{ platform: X86, emulated: false }], slots: 2 });
    assert.deepEqual(heard.splice(0).map(([m]) => m), ['workerRegistered']);

    const spec = makeSpec({ label: 'first' });
    const { job } = await scheduler.submit({ actionDigest: actionDigestOf(spec), spec });
    const merged = await scheduler.submit({ actionDigest: actionDigestOf(spec), spec });
    assert.equal(merged.merged, true);
    const [lease] = await scheduler.lease(workerId, 1, 0);
    assert.equal(lease?.jobId, job.id);
    await scheduler.complete(workerId, { jobId: job.id, attempt: 1, outcome: { state: 'completed', result: makeReport() } });
    const cached = await scheduler.submit({ actionDigest: actionDigestOf(spec), spec });
    assert.equal(cached.cached, true);
    assert.deepEqual(heard.splice(0), [
      ['jobQueued', 'queued', 'submitted'],
      ['jobMerged', 'queued'],
      ['jobLeased', 'running', 'claimed'],
      ['jobFinished', 'completed'],
      ['jobCached', 'completed'],
    ]);

    // A worker waits (its claim found nothing, so it parks within a few turns of the event loop); a new job goes straight to it.
    const waiting = scheduler.lease(workerId, 1, 5_000);
    await sleep(100);
    const other = makeSpec({ label: 'second' });
    await scheduler.submit({ actionDigest: actionDigestOf(other), spec: other });
    assert.equal((await waiting).length, 1);
    assert.deepEqual(heard.splice(0), [['jobLeased', 'running', 'handed']]);
  });

  test('a silent worker is declared gone and its job requeued: observers hear both, the log says why', async () => {
    const { heard, observer } = recorder();
    const { lines, logger } = capturedLogger();
    const { scheduler } = await harness([observer], logger);
    const { workerId } = await scheduler.register({ name: 'w', platforms: [{ platform: X86, emulated: false }], slots: 1 });
    const spec = makeSpec({ label: 'lost' });
    await scheduler.submit({ actionDigest: actionDigestOf(spec), spec });
    assert.equal((await scheduler.lease(workerId, 1, 0)).length, 1);
    // No heartbeats: after workerSilenceMs the reaper declares it gone.
    await eventually(async () => (heard.some(([m]) => m === 'workerGone') ? true : undefined), 5_000, 'the worker declared gone');
    assert.deepEqual(heard.find(([m]) => m === 'workerGone'), ['workerGone', workerId, 'silent']);
    await eventually(async () => (heard.some(([m, , cause]) => m === 'jobQueued' && cause === 'requeued') ? true : undefined), 5_000, 'the job requeued');
    assert.ok(lines.some((l) => l.workerId === workerId && /declared gone/.test(String(l.msg))), 'logged');
  });

  test('worker events on the bus: registered, draining, drained; gone when it leaves without draining', async () => {
    const { logger } = capturedLogger();
    const { scheduler } = await harness([], logger, { ...FAST, workerSilenceMs: 30_000 });
    const heard: string[] = [];
    scheduler.events.subscribeKind('worker', (e) => heard.push(`${e.workerId}:${e.state}`));
    const a = await scheduler.register({ id: 'a', name: 'a', platforms: [{ platform: X86, emulated: false }], slots: 1 });
    const b = await scheduler.register({ id: 'b', name: 'b', platforms: [{ platform: X86, emulated: false }], slots: 1 });
    await scheduler.heartbeat(a.workerId, true, []);
    await scheduler.heartbeat(a.workerId, true, []);
    await scheduler.unregister(a.workerId);
    await scheduler.unregister(b.workerId);
    assert.deepEqual(heard, ['a:registered', 'b:registered', 'a:draining', 'a:drained', 'b:gone']);
  });

  test('a failing lease reaper logs each failure, backs off, tells observers, and expires leases again once the store works', async () => {
    const { heard, observer } = recorder();
    const { lines, logger } = capturedLogger();
    const { store, scheduler } = await harness([observer], logger);
    const { workerId } = await scheduler.register({ name: 'w', platforms: [{ platform: X86, emulated: false }], slots: 1 });
    const spec = makeSpec({ label: 'expiring' });
    const { job } = await scheduler.submit({ actionDigest: actionDigestOf(spec), spec });
    // Fault injection into the real store: its lease expiry fails as a database outage would.
    const expire = store.jobs.expireLeases.bind(store.jobs);
    store.jobs.expireLeases = async () => {
      throw new Error('database unreachable');
    };
    await eventually(async () => (heard.filter(([m]) => m === 'backgroundFailed').length >= 3 ? true : undefined), 5_000, 'three reaper failures');
    const failures = heard.filter(([m]) => m === 'backgroundFailed');
    const pauses = failures.map(([, , , , retryInMs]) => retryInMs as number);
    assert.deepEqual(failures.map(([, task, err, n]) => [task, (err as Error).message, n]).slice(0, 3), [
      ['lease-reaper', 'database unreachable', 1],
      ['lease-reaper', 'database unreachable', 2],
      ['lease-reaper', 'database unreachable', 3],
    ]);
    const [p1 = 0, p2 = 0, p3 = 0] = pauses;
    assert.ok(p2 > p1 && p3 > p2, `backs off: ${pauses.join(', ')}`);
    const logged = lines.filter((l) => /lease reaper failed/.test(String(l.msg)));
    assert.ok(logged.length >= 3 && logged[0]?.level === 50, 'each failure is an error line');

    // The store works again: a lease taken now expires (no heartbeat) and the job is requeued.
    store.jobs.expireLeases = expire;
    assert.equal((await scheduler.lease(workerId, 1, 0)).length, 1);
    await eventually(async () => ((await scheduler.get(job.id))?.attempt === 1 && (await scheduler.get(job.id))?.state === 'queued' ? true : undefined), 10_000, 'the lease expired and the job requeued');
    assert.ok(lines.some((l) => /lease reaper works again/.test(String(l.msg))));
  });

  test('an observer that throws is logged and neither the scheduler nor the other observers notice', async () => {
    const { heard, observer } = recorder();
    const { lines, logger } = capturedLogger();
    const thrower: SchedulerObserver = {
      jobQueued: () => {
        throw new Error('observer bug');
      },
    };
    const { scheduler } = await harness([thrower, observer], logger);
    await scheduler.register({ name: 'w', platforms: [{ platform: X86, emulated: false }], slots: 1 });
    const spec = makeSpec({ label: 'observed' });
    const { job } = await scheduler.submit({ actionDigest: actionDigestOf(spec), spec });
    assert.equal(job.state, 'queued');
    assert.ok(heard.some(([m]) => m === 'jobQueued'));
    assert.ok(lines.some((l) => l.method === 'jobQueued' && /observer failed/.test(String(l.msg))));
  });
});
