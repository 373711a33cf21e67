/** `remex autoscale simulate`: the figures, the side-by-side HTML, and bad traces refused with where. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { parseAutoscaleConfig, poolShape } from '../../src/autoscale/config.js';
import { simulate } from '../../src/autoscale/simulator.js';
import { remexCli } from '../helpers/remex-cli.js';

const dir = mkdtempSync(join(tmpdir(), 'remex-as-sim-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const config = (mode: string): string => {
  const file = join(dir, `${mode}.yaml`);
  writeFileSync(file, `decisionIntervalSeconds: 10\npools:\n  - name: x86\n    platforms: [x86_64-linux-cpu]\n    provider: { type: local-process }\n    maxWorkers: 20\n    pricePerHour: 1\n    startupSeconds: 20\n    policy: { mode: ${mode}, idleToZeroSeconds: 60 }\n`);
  return file;
};

describe('remex autoscale simulate', () => {
  test('every job of a trace is served once, and the pool ends at zero within idle + one interval', () => {
    const c = parseAutoscaleConfig({ decisionIntervalSeconds: 10, pools: [{ name: 'x', platforms: ['x86_64-linux-cpu'], provider: { type: 'local-process' }, maxWorkers: 5, policy: { idleToZeroSeconds: 60 } }] }, 't');
    const trace = Array.from({ length: 50 }, (_, i) => ({ at: i * 2, service: 5 }));
    const r = simulate({ pool: poolShape(c, c.pools[0]!), trace });
    assert.equal(r.jobs, 50);
    assert.equal(r.jobSeconds, 250);
    assert.ok(r.workerSeconds >= r.jobSeconds, 'a worker is billed at least for what it runs');
    assert.ok(r.timeToZeroSeconds !== undefined && r.timeToZeroSeconds <= 70, String(r.timeToZeroSeconds));
    assert.ok(r.scaleUps >= 1 && r.scaleDowns >= 1);
  });

  test('two configurations on a pattern: figures for each and one HTML page with both', async () => {
    const html = join(dir, 'spike.html');
    const r = await remexCli(['autoscale', 'simulate', '--config', config('predictive'), '--config', config('backlog'), '--pattern', 'spike', '--html', html]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /predictive\.yaml \(x86, predictive\)\n {2}jobs \d+\n {2}queue wait p50 [\d.]+ s, p95 [\d.]+ s, p99 [\d.]+ s/);
    assert.match(r.stdout, /backlog\.yaml \(x86, backlog\)/);
    assert.match(r.stdout, /time to zero after the last job: \d+ s/);
    const page = readFileSync(html, 'utf8');
    assert.match(page, /<h2>predictive\.yaml/);
    assert.match(page, /<h2>backlog\.yaml/);
    assert.equal((page.match(/<svg /g) ?? []).length, 6, 'arrivals, backlog and workers for each');
  });

  test('a trace file (CSV), and bad traces refused saying where', async () => {
    const csv = join(dir, 'trace.csv');
    writeFileSync(csv, 'at,service\n0,5\n1,5\n2.5,3\n');
    const ok = await remexCli(['autoscale', 'simulate', '--config', config('predictive'), '--trace', csv, '--json']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((JSON.parse(ok.stdout) as Array<{ jobs: number }>)[0]?.jobs, 3);
    const bad = join(dir, 'bad.csv');
    writeFileSync(bad, '0,5\n1,-2\n');
    const refused = await remexCli(['autoscale', 'simulate', '--config', config('predictive'), '--trace', bad]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /INVALID_ARGUMENT: trace .*bad\.csv, line 2: expected "at,service"/);
    const neither = await remexCli(['autoscale', 'simulate', '--config', config('predictive')]);
    assert.match(neither.stderr, /give --trace FILE or --pattern/);
  });
});
