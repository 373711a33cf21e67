/**
 * Platform and fleet status: a worker that serves several platforms shows under each (its slots can take
 * any of their jobs) and is flagged as shared there; the fleet's totals count it once.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { Digest } from '../../src/core/digest.js';
import { isRemexError } from '../../src/core/errors.js';
import { InMemoryEventBus } from '../../src/events/memory/in-memory-event-bus.js';
import { Scheduler } from '../../src/scheduler/scheduler.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { actionDigestOf, ARM, makeSpec, X86 } from '../store/fixtures.js';

const allPresent = { findMissing: async (_: readonly Digest[]): Promise<Digest[]> => [] };

/** A scheduler on a fresh SQLite store where nothing expires on its own, closed when the test ends. */
function schedulerFor(t: TestContext): Scheduler {
  const dir = mkdtempSync(join(tmpdir(), 'remex-status-'));
  const store = new SqliteStore({ path: join(dir, 'remex.db') });
  const scheduler = new Scheduler(store, allPresent, new InMemoryEventBus(), { leaseTimeoutMs: 30_000, workerSilenceMs: 30_000 });
  t.after(async () => {
    await scheduler.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return scheduler;
}

test('a multi-platform worker: counted under each platform it serves, marked shared, once in the fleet', async (t) => {
  const scheduler = schedulerFor(t);
  // 4 slots for x86 natively and aarch64 by emulation; 1 slot for x86 alone; 2 slots draining.
  const both = await scheduler.register({ name: 'both', platforms: [{ platform: X86, emulated: false }, { platform: ARM, emulated: true }], slots: 4 });
  await scheduler.register({ name: 'x86', platforms: [{ platform: X86, emulated: false }], slots: 1 });
  const draining = await scheduler.register({ name: 'leaving', platforms: [{ platform: X86, emulated: false }], slots: 2 });
  await scheduler.heartbeat(draining.workerId, true, []);
  for (const label of ['a', 'b', 'c']) {
    const spec = makeSpec({ platform: ARM, label });
    await scheduler.submit({ actionDigest: actionDigestOf(spec), spec });
  }
  assert.equal((await scheduler.lease(both.workerId, 1, 0)).length, 1);

  const { platforms, fleet } = await scheduler.status();
  const by = Object.fromEntries(platforms.map((p) => [p.platform, p]));
  assert.deepEqual(by[ARM], { platform: ARM, emulated: true, workers: 1, slots: 4, freeSlots: 3, sharedSlots: 4, queued: 2, running: 1 });
  assert.deepEqual(by[X86], { platform: X86, emulated: false, workers: 3, slots: 7, freeSlots: 4, sharedSlots: 4, queued: 0, running: 0 });
  // Summing the platforms would say 11 slots, 7 free; there are 7 slots, 4 free (the drainer's are not).
  assert.deepEqual(fleet, { workers: 3, drainingWorkers: 1, slots: 7, freeSlots: 4, queued: 2, running: 1 });
});

test('a drain order reaches the worker at its next heartbeat, until it drains; its labels and instance id are registered', async (t) => {
  const scheduler = schedulerFor(t);
  const { workerId } = await scheduler.register({ name: 'w', platforms: [{ platform: X86, emulated: false }], slots: 1, labels: { pool: 'blue' }, instanceId: 'pid-42' });
  const [record] = await scheduler.workers();
  assert.deepEqual([record?.labels, record?.instanceId, record?.drainRequested], [{ pool: 'blue' }, 'pid-42', false]);
  assert.equal((await scheduler.heartbeat(workerId, false, [])).drain, undefined);
  assert.equal((await scheduler.requestDrain(workerId)).drainRequested, true);
  assert.equal((await scheduler.heartbeat(workerId, false, [])).drain, true);
  assert.equal((await scheduler.heartbeat(workerId, true, [])).drain, undefined, 'told until it says it drains');
  await assert.rejects(scheduler.requestDrain('nobody'), (err: unknown) => isRemexError(err, 'NOT_FOUND'));
});

test('undrain withdraws an order the worker has not acted on; a draining, gone or unknown worker is refused with a reason', async (t) => {
  const scheduler = schedulerFor(t);
  const { workerId } = await scheduler.register({ name: 'w', platforms: [{ platform: X86, emulated: false }], slots: 1 });
  await scheduler.requestDrain(workerId);
  assert.equal((await scheduler.cancelDrain(workerId)).drainRequested, false);
  assert.equal((await scheduler.heartbeat(workerId, false, [])).drain, undefined, 'the withdrawn order is not told');
  await scheduler.requestDrain(workerId);
  await scheduler.heartbeat(workerId, true, []);
  await assert.rejects(scheduler.cancelDrain(workerId), (err: unknown) => isRemexError(err, 'FAILED_PRECONDITION') && /already draining/.test(err.message));
  await scheduler.unregister(workerId);
  await assert.rejects(scheduler.cancelDrain(workerId), (err: unknown) => isRemexError(err, 'FAILED_PRECONDITION') && /has left/.test(err.message));
  await assert.rejects(scheduler.cancelDrain('nobody'), (err: unknown) => isRemexError(err, 'NOT_FOUND'));
});
