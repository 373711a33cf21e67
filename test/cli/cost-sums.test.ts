import assert from 'node:assert/strict';
import { test } from 'node:test';
import { costSums, formatCostSums } from '../../src/cli/cost-sums.js';

const X86 = 'x86_64-linux-cpu';
const ARM = 'aarch64-linux-cpu';

test('cost is summed by platform, state and each label; unpriced jobs are left out and counted', () => {
  const sums = costSums([
    { platform: X86, state: 'completed', labels: { suite: 'triad', isa: 'x86' }, cost: 0.5 },
    { platform: ARM, state: 'completed', labels: { suite: 'triad' }, cost: 0.25 },
    { platform: ARM, state: 'emergency_stopped', labels: { suite: 'copy' }, cost: 1 },
    { platform: X86, state: 'completed', labels: { suite: 'triad' }, cost: null },
  ]);
  assert.deepEqual([sums.jobs, sums.total, sums.unpriced], [3, 1.75, 1]);
  assert.deepEqual(
    sums.groups.map((g) => [g.by, g.value, g.jobs, g.cost]),
    [
      ['platform', ARM, 2, 1.25],
      ['platform', X86, 1, 0.5],
      ['state', 'completed', 2, 0.75],
      ['state', 'emergency_stopped', 1, 1],
      ['label', 'isa=x86', 1, 0.5],
      ['label', 'suite=copy', 1, 1],
      ['label', 'suite=triad', 2, 0.75],
    ],
  );
  const text = formatCostSums(sums, String);
  assert.match(text, /^total\s+3\s+1\.75$/m);
  assert.match(text, /^\(1 job without a price left out\)$/m);
});

test('nothing priced: no table', () => {
  assert.equal(formatCostSums(costSums([{ platform: X86, state: 'failed', labels: {}, cost: null }]), String), '');
});
