/**
 * The autoscaler's targets, measured by the simulator (issue 15), which runs the controller's own policy:
 * - spike: the predictive config's p95 queue wait below backlog-only's, at ≤ 1.10× its worker-seconds;
 * - steady (Poisson noise): at most 2 direction changes per simulated hour;
 * - steady: worker-seconds ≤ 1.2× the jobs' pure run time;
 * - idle (every trace): the pool at zero within its idle time plus one decision interval of the last job.
 * Simulated time, so the figures do not depend on this machine's load. BENCH_AUTOSCALE_HTML=<dir> writes
 * the side-by-side HTML report of each trace there (bench/results/<trace>.html were made so).
 *
 *   BENCH_AUTOSCALE_HTML=bench/results node dist/bench/autoscale-simulation.js
 *   npm run bench -- autoscale-simulation
 */
import { pathToFileURL } from 'node:url';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAutoscaleConfig, poolShape } from '../src/autoscale/config.js';
import { simulationHtml } from '../src/autoscale/simulation-html.js';
import { simulate } from '../src/autoscale/simulator.js';
import type { SimulationResult } from '../src/autoscale/simulator.js';
import { patternTrace, PATTERNS } from '../src/autoscale/traces.js';
import { verdict } from './lib.js';
import type { Pattern } from '../src/autoscale/traces.js';

const base = {
  name: 'x86',
  platforms: ['x86_64-linux-cpu'],
  provider: { type: 'local-process' },
  minWorkers: 0,
  maxWorkers: 60,
  slotsPerWorker: 1,
  pricePerHour: 0.1,
  startupSeconds: 30,
};
const config = (mode: 'backlog' | 'predictive') => parseAutoscaleConfig({ decisionIntervalSeconds: 10, pools: [{ ...base, policy: { mode } }] }, `bench ${mode}`);
const predictive = config('predictive');
const backlog = config('backlog');

/** Every pattern under both modes; true when every target is met. */
export async function benchAutoscaleSimulation(): Promise<boolean> {
  const html = process.env.BENCH_AUTOSCALE_HTML;
  if (html) mkdirSync(html, { recursive: true });

  const line = (name: string, r: SimulationResult): string =>
    `${name.padEnd(11)} jobs ${String(r.jobs).padStart(5)}  wait p50/p95/p99 ${r.waitP50Seconds.toFixed(1)}/${r.waitP95Seconds.toFixed(1)}/${r.waitP99Seconds.toFixed(1)} s  worker-s ${Math.round(r.workerSeconds)} (${(r.workerSeconds / r.jobSeconds).toFixed(2)}× run)  cost ${r.cost.toFixed(2)}  actions ${r.scaleUps}↑ ${r.scaleDowns}↓  dir changes ${r.directionChanges} (${(r.directionChanges / r.simulatedHours).toFixed(2)}/h)  peak ${r.maxWorkers}  to zero ${r.timeToZeroSeconds === undefined ? 'never' : `${r.timeToZeroSeconds.toFixed(0)} s`}`;

  let failed = false;
  const check = (what: string, ok: boolean, detail: string): void => {
    failed ||= !ok;
    console.log(`${verdict(ok)} ${what}: ${detail}`);
  };

  const results = new Map<Pattern, { predictive: SimulationResult; backlog: SimulationResult }>();
  for (const pattern of PATTERNS) {
    const trace = patternTrace(pattern, 42);
    const p = simulate({ pool: poolShape(predictive, predictive.pools[0]!), trace });
    const b = simulate({ pool: poolShape(backlog, backlog.pools[0]!), trace });
    results.set(pattern, { predictive: p, backlog: b });
    console.log(`-- ${pattern}`);
    console.log(line('predictive', p));
    console.log(line('backlog', b));
    if (html) writeFileSync(join(html, `${pattern}.html`), simulationHtml(`remex autoscale: ${pattern} trace`, [{ name: 'predictive', result: p }, { name: 'backlog-only', result: b }]));
  }

  const spike = results.get('spike')!;
  check(
    'spike: predictive p95 wait < backlog-only, worker-seconds ≤ 1.10×',
    spike.predictive.waitP95Seconds < spike.backlog.waitP95Seconds && spike.predictive.workerSeconds <= 1.1 * spike.backlog.workerSeconds,
    `p95 ${spike.predictive.waitP95Seconds.toFixed(1)} s vs ${spike.backlog.waitP95Seconds.toFixed(1)} s; worker-seconds ratio ${(spike.predictive.workerSeconds / spike.backlog.workerSeconds).toFixed(3)}`,
  );
  const steady = results.get('steady')!.predictive;
  check('steady: ≤ 2 direction changes per simulated hour', steady.directionChanges / steady.simulatedHours <= 2, `${(steady.directionChanges / steady.simulatedHours).toFixed(2)}/h`);
  check('steady: worker-seconds ≤ 1.2× the jobs\' run time', steady.workerSeconds <= 1.2 * steady.jobSeconds, `${(steady.workerSeconds / steady.jobSeconds).toFixed(3)}×`);
  const idleBound = predictive.pools[0]!.policy.idleToZeroSeconds + predictive.decisionIntervalSeconds;
  for (const [pattern, r] of results) {
    for (const [name, res] of [['predictive', r.predictive], ['backlog', r.backlog]] as const) {
      check(`${pattern} ${name}: zero within idle + one interval (${idleBound} s)`, res.timeToZeroSeconds !== undefined && res.timeToZeroSeconds <= idleBound, `${res.timeToZeroSeconds?.toFixed(0) ?? 'never'} s`);
    }
  }
  return !failed;
}

// Run on its own (`node dist/bench/autoscale-simulation.js`) as well as from run-all.
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) process.exitCode = (await benchAutoscaleSimulation()) ? 0 : 1;
