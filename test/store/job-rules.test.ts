/** The rules both store adapters apply: which offer of a platform counts, and the order jobs go out in. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compareDispatchOrder, mergeOffers } from '../../src/store/job-rules.js';
import { ARM, RISCV, X86 } from './fixtures.js';

describe('job rules', () => {
  test('mergeOffers: one offer per platform in the order first seen, native winning over emulated either way round', () => {
    const merged = mergeOffers([
      [{ platform: ARM, emulated: true }, { platform: X86, emulated: false }],
      [{ platform: ARM, emulated: false }, { platform: RISCV, emulated: true }],
      [{ platform: X86, emulated: true }, { platform: RISCV, emulated: true }],
    ]);
    assert.deepEqual(merged, [
      { platform: ARM, emulated: false },
      { platform: X86, emulated: false },
      { platform: RISCV, emulated: true },
    ]);
    assert.deepEqual(mergeOffers([]), []);
  });

  test('compareDispatchOrder: lowest priority first, then first in', () => {
    const jobs = [
      { priority: 5, seq: 1 },
      { priority: 0, seq: 3 },
      { priority: -3, seq: 4 },
      { priority: 0, seq: 2 },
    ];
    assert.deepEqual([...jobs].sort(compareDispatchOrder), [
      { priority: -3, seq: 4 },
      { priority: 0, seq: 2 },
      { priority: 0, seq: 3 },
      { priority: 5, seq: 1 },
    ]);
  });
});
