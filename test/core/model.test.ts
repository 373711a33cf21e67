import assert from 'node:assert/strict';
import { test } from 'node:test';
import { costOf } from '../../src/core/model.js';

test('a run costs its worker\'s price for its time, shared by the worker\'s slots', () => {
  const host = { cpuModel: 'x', cores: 8, memoryBytes: 1, kernel: 'Linux', slots: 4, pricePerHour: 0.0336 };
  assert.equal(costOf({ wallTimeMs: 3_600_000, host }), 0.0084);
  assert.equal(costOf({ wallTimeMs: 3_600_000, host: { ...host, pricePerHour: null } }), null);
  assert.equal(costOf({ wallTimeMs: 3_600_000 }), null, 'a report from an older worker');
});
