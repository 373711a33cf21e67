/**
 * The Scheduler suite on the embedded backend: SqliteStore on a file and the in-memory event bus; plus what
 * needs an in-memory bus as a test double (one that says notices may have been lost, as a PostgreSQL bus
 * says after reconnecting).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { InMemoryEventBus } from '../../src/events/memory/in-memory-event-bus.js';
import { Scheduler } from '../../src/scheduler/scheduler.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { actionDigestOf, ARM, makeSpec, X86 } from '../store/fixtures.js';
import { FakeBlobPresence, schedulerSuite, SLOW, waitUntil } from './scheduler-suite.js';
import type { SchedulerBackend } from './scheduler-suite.js';

const sqlite: SchedulerBackend = {
  name: 'SQLite with the in-memory bus',
  promptMs: 50,
  async open() {
    const dir = mkdtempSync(join(tmpdir(), 'remex-scheduler-'));
    const path = join(dir, 'remex.db');
    const store = new SqliteStore({ path });
    return {
      store,
      events: new InMemoryEventBus(),
      async reopen() {
        const again = new SqliteStore({ path });
        return { store: again, events: new InMemoryEventBus(), close: () => again.close() };
      },
      async cleanup() {
        await store.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
};

schedulerSuite(sqlite);

const teardowns: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const fn of teardowns.splice(0).reverse()) await fn();
});

describe('Scheduler with an in-memory bus as a test double', () => {
  test('a bus that may have lost notices makes one waiting worker per platform look, and every lease call after', async () => {
    /** The in-memory bus, able to say what a PostgreSQL bus says after reconnecting. */
    class ReconnectingBus extends InMemoryEventBus {
      private listener: ((platform: string | null) => void) | undefined;
      override onQueuedElsewhere(listener: (platform: string | null) => void): () => void {
        this.listener = listener;
        return () => (this.listener = undefined);
      }
      noticesMayBeLost(): void {
        this.listener?.(null);
      }
    }
    const dir = mkdtempSync(join(tmpdir(), 'remex-scheduler-'));
    const store = new SqliteStore({ path: join(dir, 'remex.db') });
    const bus = new ReconnectingBus();
    const scheduler = new Scheduler(store, new FakeBlobPresence(), bus, SLOW);
    teardowns.push(async () => {
      await scheduler.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const register = async (id: string, platform: string): Promise<string> =>
      (await scheduler.register({ id, name: id, platforms: [{ platform, emulated: false }], slots: 1 })).workerId;
    const [x1, x2, a1] = [await register('x1', X86), await register('x2', X86), await register('a1', ARM)];
    for (const w of [x1, x2, a1]) assert.deepEqual(await scheduler.lease(w, 1, 0), []); // each platform known empty
    let claims = 0;
    const claim = store.jobs.claim.bind(store.jobs);
    store.jobs.claim = (opts) => {
      claims++;
      return claim(opts);
    };
    const parked = (): number => (scheduler as unknown as { waiters: Set<unknown> }).waiters.size;
    const polls = [x1, x2, a1].map((w) => scheduler.lease(w, 1, 10_000));
    await waitUntil('all three wait', () => parked() === 3);
    assert.equal(claims, 0);
    // A job queued behind the bus's back (another controller, its notice lost).
    const stray = makeSpec({ label: 'stray-x86' });
    await store.jobs.enqueue({ id: 'stray', actionDigest: actionDigestOf(stray), instance: '', priority: 0, spec: stray, nowMs: Date.now(), mergeable: false });
    bus.noticesMayBeLost();
    const first = await Promise.race(polls.map((p, i) => p.then((l) => ({ i, l }))));
    assert.deepEqual(first.l.map((l) => l.jobId), ['stray']);
    await waitUntil('the other woken worker looked and waits again', () => claims === 2 && parked() === 2);
    // And a lease call now opens with a claim.
    assert.deepEqual(await scheduler.lease(first.i === 0 ? x1 : x2, 1, 0), []);
    assert.equal(claims, 3);
    await scheduler.close();
    await Promise.all(polls);
  });
});
