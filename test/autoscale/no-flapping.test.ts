/**
 * Regression check for the steady-load target (issue 15): on noisy steady load the pool does not flap.
 * Simulated time on seeded traces, so the outcome is the same on every run and nothing here is timed.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseAutoscaleConfig, poolShape } from '../../src/autoscale/config.js';
import { simulate } from '../../src/autoscale/simulator.js';
import { patternTrace, seededRandom } from '../../src/autoscale/traces.js';
import type { TraceJob } from '../../src/autoscale/traces.js';

const pool = (policy: Record<string, unknown> = {}) => {
  const c = parseAutoscaleConfig(
    { decisionIntervalSeconds: 10, pools: [{ name: 'x86', platforms: ['x86_64-linux-cpu'], provider: { type: 'local-process' }, maxWorkers: 60, startupSeconds: 30, policy }] },
    'no-flapping test',
  );
  return poolShape(c, c.pools[0]!);
};

/** Poisson arrivals at 3 jobs/s for an hour, gamma(2) run times of mean 10 s: about 30 busy slots, with noise. */
function noisySteady(seed: number): TraceJob[] {
  const rand = seededRandom(seed);
  const jobs: TraceJob[] = [];
  for (let t = -Math.log(1 - rand()) / 3; t < 3600; t += -Math.log(1 - rand()) / 3) {
    jobs.push({ at: t, service: Math.max(0.05, 5 * (-Math.log(1 - rand()) - Math.log(1 - rand()))) });
  }
  return jobs;
}

describe('steady load does not flap', () => {
  test('the bench steady trace (seed 42): at most 2 direction changes per simulated hour, within 1.2× the run time', () => {
    const r = simulate({ pool: pool(), trace: patternTrace('steady', 42) });
    const perHour = r.directionChanges / r.simulatedHours;
    assert.ok(perHour <= 2, `${r.directionChanges} direction changes in ${r.simulatedHours.toFixed(2)} h`);
    assert.ok(r.workerSeconds <= 1.2 * r.jobSeconds, `${(r.workerSeconds / r.jobSeconds).toFixed(3)}× the run time`);
    // The same trace without the scale-down stabilisation flaps: the check above has teeth.
    const unstabilised = simulate({ pool: pool({ scaleDownStabilizationSeconds: 0 }), trace: patternTrace('steady', 42) });
    assert.ok(unstabilised.directionChanges / unstabilised.simulatedHours > 2, `without stabilisation: ${unstabilised.directionChanges} changes`);
  });

  test('on five seeded noisy hours, the stabilisation never adds a direction change and removes some', () => {
    let withIt = 0;
    let without = 0;
    for (const seed of [1, 2, 3, 4, 5]) {
      const trace = noisySteady(seed);
      const a = simulate({ pool: pool(), trace });
      const b = simulate({ pool: pool({ scaleDownStabilizationSeconds: 0 }), trace });
      assert.ok(a.directionChanges <= b.directionChanges, `seed ${seed}: ${a.directionChanges} with, ${b.directionChanges} without`);
      // A hold between two shrinks is not a change: the count is of ups followed by downs and back.
      const moves = a.decisions.filter((d) => d.direction !== 'hold').map((d) => d.direction);
      assert.equal(a.directionChanges, moves.filter((m, i) => i > 0 && m !== moves[i - 1]).length);
      withIt += a.directionChanges;
      without += b.directionChanges;
    }
    assert.ok(withIt < without, `${withIt} changes with the stabilisation, ${without} without`);
  });
});
