/** The policy as a pure function: its properties (fast-check) and the decisions the issue names. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { DEFAULT_POLICY_KNOBS } from '../../src/autoscale/config.js';
import { decide, EMPTY_MEMORY, leastSquaresSlope, smooth } from '../../src/autoscale/policy.js';
import type { PoolSample, PoolShape } from '../../src/autoscale/policy.js';

const shape = (over: Partial<PoolShape['policy']> = {}, pool: Partial<PoolShape> = {}): PoolShape => ({
  minWorkers: 0,
  maxWorkers: 20,
  slotsPerWorker: 2,
  startupSeconds: 30,
  decisionIntervalSeconds: 10,
  ...pool,
  policy: { ...DEFAULT_POLICY_KNOBS, ...over },
});
const sample = (atMs: number, s: Partial<PoolSample> = {}): PoolSample => ({
  atMs, queued: 0, running: 0, arrivals: 0, completions: 0, serviceMsSum: 0, activeWorkers: 0, startingWorkers: 0, drainingWorkers: 0, ...s,
});

const arbSample = fc.record({
  queued: fc.nat(500), running: fc.nat(100), arrivals: fc.nat(200), completions: fc.nat(200), serviceMsSum: fc.nat(10_000_000),
  activeWorkers: fc.nat(30), startingWorkers: fc.nat(10), drainingWorkers: fc.nat(5),
});

describe('the scaling policy', () => {
  test('desired is always within [min, max] and within one step of current, unless going to min or leaving bounds', () => {
    fc.assert(
      fc.property(fc.array(arbSample, { minLength: 1, maxLength: 30 }), fc.nat(5), fc.integer({ min: 5, max: 40 }), fc.constantFrom('backlog' as const, 'predictive' as const), (raw, min, max, mode) => {
        const pool = shape({ mode }, { minWorkers: Math.min(min, max), maxWorkers: max });
        const samples = raw.map((s, i) => sample(i * 10_000, s));
        const d = decide({ nowMs: (raw.length - 1) * 10_000, pool, samples, memory: EMPTY_MEMORY });
        assert.ok(d.desired >= pool.minWorkers && d.desired <= pool.maxWorkers, d.reason);
        const inBounds = d.current >= pool.minWorkers && d.current <= pool.maxWorkers;
        if (inBounds && d.direction === 'up') assert.ok(d.desired - d.current <= pool.policy.maxStepUp, d.reason);
        // An idle pool with nothing arriving over two intervals drops to its idle floor at once (every worker is idle).
        const stale = samples.length >= 2 && samples.slice(-2).every((s) => s.arrivals === 0 && s.queued === 0 && s.running === 0);
        if (inBounds && d.direction === 'down' && d.desired !== pool.minWorkers && !stale) assert.ok(d.current - d.desired <= pool.policy.maxStepDown, d.reason);
        assert.equal(d.direction === 'hold', d.desired === d.current);
        assert.ok(d.reason.length > 0);
        // Pure: the same history gives the same decision.
        assert.deepEqual(decide({ nowMs: (raw.length - 1) * 10_000, pool, samples, memory: EMPTY_MEMORY }), d);
      }),
      { numRuns: 300 },
    );
  });

  test('an empty pool with a backlog grows; target tracking sizes it', () => {
    const d = decide({ nowMs: 10_000, pool: shape({ mode: 'backlog' }), samples: [sample(0), sample(10_000, { queued: 12, arrivals: 12 })], memory: EMPTY_MEMORY });
    assert.equal(d.direction, 'up');
    assert.equal(d.desired, 4, d.reason); // 12 queued at 3 per worker
    assert.match(d.reason, /up 0→4: backlog 12 queued/);
  });

  test('a rising arrival rate grows the pool ahead of the backlog (trend and Little\'s law)', () => {
    // 10 workers × 2 slots, 5 s jobs; arrivals climbing 0.5/s every interval, nothing queued yet.
    const samples = Array.from({ length: 10 }, (_, i) => sample(i * 10_000, { arrivals: 10 + 5 * i, running: Math.min(20, 2 + i * 2), activeWorkers: 10, completions: 10, serviceMsSum: 50_000 }));
    const d = decide({ nowMs: 90_000, pool: shape(), samples, memory: EMPTY_MEMORY });
    assert.equal(d.direction, 'up', d.reason);
    assert.ok(d.figures.trendPerSecond2 > 0);
    const backlogOnly = decide({ nowMs: 90_000, pool: shape({ mode: 'backlog' }), samples, memory: EMPTY_MEMORY });
    assert.ok(d.desired > backlogOnly.desired, `${d.reason} / ${backlogOnly.reason}`);
  });

  test('hysteresis: a busy pool with nothing queued and a flat load holds', () => {
    const samples = Array.from({ length: 10 }, (_, i) => sample(i * 10_000, { arrivals: 30, running: 17, activeWorkers: 10, completions: 30, serviceMsSum: 180_000 }));
    const d = decide({ nowMs: 90_000, pool: shape(), samples, memory: EMPTY_MEMORY });
    assert.equal(d.direction, 'hold', d.reason);
  });

  test('cooldowns: no growth within the up cooldown, no shrink within the down cooldown of any change', () => {
    const hot = [sample(0), sample(10_000, { queued: 60, running: 4, activeWorkers: 2, arrivals: 60 })];
    const up = decide({ nowMs: 10_000, pool: shape(), samples: hot, memory: { ...EMPTY_MEMORY, lastScaleUpAtMs: 5_000 } });
    assert.equal(up.direction, 'hold');
    assert.match(up.reason, /up cooldown/);
    const cold = [sample(0, { running: 1, activeWorkers: 10 }), sample(10_000, { running: 1, activeWorkers: 10 })];
    const down = decide({ nowMs: 10_000, pool: shape(), samples: cold, memory: { ...EMPTY_MEMORY, lastScaleUpAtMs: 0, lastBusyAtMs: 10_000 } });
    assert.equal(down.direction, 'hold');
    assert.match(down.reason, /down cooldown/);
  });

  test('scale to zero once idle for idleToZeroSeconds, not before', () => {
    const idle = (nowMs: number) => [sample(nowMs - 10_000, { activeWorkers: 5 }), sample(nowMs, { activeWorkers: 5 })];
    const early = decide({ nowMs: 100_000, pool: shape({ idleToZeroSeconds: 120 }), samples: idle(100_000), memory: { ...EMPTY_MEMORY, lastBusyAtMs: 0, lastScaleUpAtMs: 0 } });
    assert.ok(early.desired >= 1, early.reason);
    const late = decide({ nowMs: 120_000, pool: shape({ idleToZeroSeconds: 120 }), samples: idle(120_000), memory: { ...EMPTY_MEMORY, lastBusyAtMs: 0 } });
    assert.equal(late.desired, 0, late.reason);
    assert.match(late.reason, /idle for 120 s/);
  });

  test('scale-down stabilisation: a dip below the highest sizing of the last 10 minutes is not followed, a falling trend is', () => {
    // 10 workers of 1 slot, 6 running, nothing queued, 0.5 jobs/s of 10 s jobs: Little's law says 5 busy slots, 6 workers.
    const pool = shape({}, { slotsPerWorker: 1 });
    const flat = Array.from({ length: 10 }, (_, i) => sample(i * 10_000, { running: 6, activeWorkers: 10, arrivals: 5, completions: 5, serviceMsSum: 50_000 }));
    const remembered = { ...EMPTY_MEMORY, lastScaleUpAtMs: -600_000, lastBusyAtMs: 90_000, recentNeeds: [{ atMs: 0, need: 9 }] };
    const partly = decide({ nowMs: 90_000, pool, samples: flat, memory: remembered });
    assert.equal(partly.desired, 9, partly.reason);
    const held = decide({ nowMs: 90_000, pool, samples: flat, memory: { ...remembered, recentNeeds: [{ atMs: 0, need: 10 }] } });
    assert.equal(held.direction, 'hold', held.reason);
    assert.match(held.reason, /the highest sizing of the last 600 s needs 10/);
    const forgotten = decide({ nowMs: 90_000, pool, samples: flat, memory: { ...remembered, recentNeeds: [] } });
    assert.equal(forgotten.direction, 'down', forgotten.reason);
    assert.equal(forgotten.desired, 7, forgotten.reason);
    // A significant fall in arrivals is followed at once, whatever was remembered.
    const falling = Array.from({ length: 10 }, (_, i) => sample(i * 10_000, { running: 6, activeWorkers: 10, arrivals: 20 - 2 * i, completions: 5, serviceMsSum: 50_000 }));
    const down = decide({ nowMs: 90_000, pool, samples: falling, memory: remembered });
    assert.equal(down.direction, 'down', down.reason);
  });

  test('idle with nothing arriving for two intervals: down to one worker at once, to zero once the idle time has passed', () => {
    const pool = shape({ idleToZeroSeconds: 120 });
    const samples = [sample(0, { running: 20, activeWorkers: 15, arrivals: 30 }), sample(10_000, { activeWorkers: 15 }), sample(20_000, { activeWorkers: 15 })];
    const d = decide({ nowMs: 20_000, pool, samples, memory: { ...EMPTY_MEMORY, lastScaleDownAtMs: 15_000, lastBusyAtMs: 0 } });
    assert.equal(d.direction, 'down', d.reason);
    assert.equal(d.desired, 1, d.reason);
    assert.match(d.reason, /nothing queued, running or arriving/);
    // One interval without arrivals is noise at low load: the prediction still sizes the pool.
    const once = decide({ nowMs: 10_000, pool, samples: samples.slice(0, 2), memory: { ...EMPTY_MEMORY, lastBusyAtMs: 0 } });
    assert.notEqual(once.desired, 1, once.reason);
  });

  test('a clock jump: samples from the future are dropped and a cooldown never freezes', () => {
    const samples = [sample(500_000, { queued: 90, activeWorkers: 1, running: 2 }), sample(10_000, { queued: 90, activeWorkers: 1, running: 2 })];
    const d = decide({ nowMs: 10_000, pool: shape(), samples, memory: { ...EMPTY_MEMORY, lastScaleUpAtMs: 400_000 } });
    assert.equal(d.direction, 'up', d.reason);
    assert.ok(Number.isFinite(d.desired));
  });

  test('smoothing and a least-squares slope that ignores noise', () => {
    assert.equal(smooth([10, 10, 10], 0.3), 10);
    assert.equal(leastSquaresSlope([0, 1, 2, 3, 4].map((x) => ({ x, y: 2 * x + 1 }))), 2);
    assert.equal(leastSquaresSlope([0, 1, 2, 3, 4, 5].map((x) => ({ x, y: x % 2 === 0 ? 5 : 6 }))), 0);
  });
});
