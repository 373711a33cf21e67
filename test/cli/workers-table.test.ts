/** `remex workers`: the PRICE/H column shows a worker's own price, its platform's default (marked), or `-`. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ListedWorker } from '../../src/client/remex-client.js';
import { formatWorkers } from '../../src/cli/worker-commands.js';

test('the PRICE/H column: the worker\'s own price, its platform\'s default marked so, or - when none (or an older server)', () => {
  const base: ListedWorker = {
    id: 'w-1', name: 'one', platforms: [{ platform: 'x86_64-linux-cpu', emulated: false }], slots: 2, state: 'active',
    registeredAtMs: 0, lastSeenAtMs: 0, labels: {}, instanceId: null, drainRequested: false, running: 1,
  };
  const text = formatWorkers([
    { ...base, pricePerHour: 0.25, price: { perHour: 0.25, from: 'worker' } },
    { ...base, id: 'w-2', name: 'two', price: { perHour: 0.0336, from: 'platform' } },
    { ...base, id: 'w-3', name: 'three', price: null },
    { ...base, id: 'w-4', name: 'four' },
  ], 1000);
  const lines = text.trimEnd().split('\n');
  assert.match(lines[0] ?? '', /SLOTS\s+RUNNING\s+PRICE\/H\s+STATE/);
  assert.match(lines[1] ?? '', /^w-1\s+one\s.*\s2\s+1\s+0\.25\s+active/);
  assert.match(lines[2] ?? '', /^w-2\s+two\s.*\s2\s+1\s+0\.0336 \(platform\)\s+active/);
  assert.match(lines[3] ?? '', /^w-3\s+three\s.*\s2\s+1\s+-\s+active/);
  assert.match(lines[4] ?? '', /^w-4\s+four\s.*\s2\s+1\s+-\s+active/);
});
