/**
 * `remex autoscale simulate`: replays a trace (a file, or a named pattern) through the autoscaler's own
 * policy for each given configuration's first pool (or `--pool NAME`), prints the figures, and writes the
 * HTML report comparing the configurations side by side.
 */
import { writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { loadAutoscaleConfig, poolShape } from '../autoscale/config.js';
import { simulationHtml } from '../autoscale/simulation-html.js';
import { simulate } from '../autoscale/simulator.js';
import type { SimulationResult } from '../autoscale/simulator.js';
import { patternTrace, PATTERNS, readTrace } from '../autoscale/traces.js';
import type { Pattern } from '../autoscale/traces.js';
import { InvalidArgumentError, NotFoundError } from '../core/errors.js';

export interface SimulateFlags {
  config: string[];
  trace?: string;
  pattern?: string;
  seed: number;
  pool?: string;
  html?: string;
  json: boolean;
}

export function summary(r: SimulationResult): string {
  return [
    `jobs ${r.jobs}`,
    `queue wait p50 ${r.waitP50Seconds.toFixed(1)} s, p95 ${r.waitP95Seconds.toFixed(1)} s, p99 ${r.waitP99Seconds.toFixed(1)} s`,
    `worker-seconds ${Math.round(r.workerSeconds)} (${(r.workerSeconds / r.jobSeconds).toFixed(2)}× the jobs' run time), cost ${r.cost.toFixed(2)}`,
    `scaling actions ${r.scaleUps} up, ${r.scaleDowns} down; direction changes ${r.directionChanges} (${(r.directionChanges / Math.max(r.simulatedHours, 1e-9)).toFixed(2)} per hour); peak ${r.maxWorkers} workers`,
    `time to zero after the last job: ${r.timeToZeroSeconds === undefined ? 'never' : `${r.timeToZeroSeconds.toFixed(0)} s`}`,
  ].join('\n  ');
}

export function simulateCommand(flags: SimulateFlags): string {
  if ((flags.trace === undefined) === (flags.pattern === undefined)) throw new InvalidArgumentError('give --trace FILE or --pattern steady|spike|diurnal|bursts (one of the two)');
  if (flags.pattern !== undefined && !(PATTERNS as readonly string[]).includes(flags.pattern)) throw new InvalidArgumentError(`unknown pattern ${flags.pattern} (known: ${PATTERNS.join(', ')})`);
  if (flags.config.length === 0) throw new InvalidArgumentError('give at least one --config FILE (two to compare)');
  const trace = flags.trace !== undefined ? readTrace(flags.trace) : patternTrace(flags.pattern as Pattern, flags.seed);
  const runs = flags.config.map((file) => {
    const config = loadAutoscaleConfig(file);
    const pool = flags.pool === undefined ? config.pools[0] : config.pools.find((p) => p.name === flags.pool);
    if (!pool) throw new NotFoundError(`${file} has no pool ${flags.pool}`);
    return { name: `${basename(file)} (${pool.name}, ${pool.policy.mode})`, result: simulate({ pool: poolShape(config, pool), trace }) };
  });
  if (flags.html !== undefined) writeFileSync(flags.html, simulationHtml(`remex autoscale simulate: ${flags.trace ?? flags.pattern}`, runs));
  if (flags.json) return `${JSON.stringify(runs.map(({ name, result: { series: _s, decisions: _d, ...figures } }) => ({ name, ...figures })), null, 2)}\n`;
  return runs.map((r) => `${r.name}\n  ${summary(r.result)}\n`).join('');
}
