/** The comparison report built from runs (ranking, emulation, outputs, failures, cost) and the program-output reader. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { buildReport } from '../../src/compare/comparison.js';
import type { ComparisonPlan, RunRecord } from '../../src/compare/comparison.js';
import { parseMetricLine, readProgramOutput } from '../../src/compare/program-output.js';
import { renderCsv, renderText } from '../../src/compare/render.js';

const X86 = 'x86_64-linux-cpu';
const A64 = 'aarch64-linux-cpu';

function plan(o: Partial<ComparisonPlan> = {}): ComparisonPlan {
  return { entries: [{ label: X86, platform: X86 }, { label: A64, platform: A64 }], repeat: 5, warmup: 1, baseline: X86, allowDifferentOutput: false, failedEntries: [], ...o };
}

function run(label: string, round: number, o: Partial<RunRecord> = {}): RunRecord {
  return {
    label, round, warmup: round === 0, jobId: `${label}-${round}`, state: 'completed', exitCode: 0, signal: null, failure: null,
    wallTimeMs: 100, cpuTimeMs: 90, maxRssKb: 1000, cost: null, emulated: false, worker: `w-${label}`, host: null, outputDigest: 'aa', metrics: {}, ...o,
  };
}

function runs(label: string, times: number[], o: Partial<RunRecord> = {}): RunRecord[] {
  return [run(label, 0, { wallTimeMs: 1, ...o }), ...times.map((t, i) => run(label, i + 1, { wallTimeMs: t, ...o }))];
}

describe('comparison report', () => {
  test('warm-up runs are reported, not judged; the ratio against the baseline is ~2× for twice the time', () => {
    const r = buildReport(plan(), [...runs(X86, [10, 11, 12, 10, 11]), ...runs(A64, [20, 22, 24, 20, 22])]);
    const [x, a] = r.entries;
    assert.equal(x!.runs.warmup, 1);
    assert.equal(x!.runs.counted, 5);
    assert.equal(x!.wallTimeMs!.min, 10, 'the warm-up (1 ms) is not counted');
    assert.ok(a!.vsBaseline!.interval!.low <= 2 && a!.vsBaseline!.interval!.high >= 2);
    assert.equal(a!.vsBaseline!.verdict, 'higher');
    assert.deepEqual([x!.rank, a!.rank], [1, 2]);
  });

  test('emulated entries are never ranked; an entry run both ways shows its emulation factor', () => {
    const mixed = [...runs(A64, [50, 52, 51], { emulated: true }), ...runs(A64, [10, 11, 10], { emulated: false }).slice(1)];
    const r = buildReport(plan(), [...runs(X86, [10, 11, 12]), ...mixed]);
    const a = r.entries[1]!;
    assert.equal(a.emulated, 'mixed');
    assert.equal(a.rank, null);
    assert.ok(a.emulationFactor && a.emulationFactor.estimate > 4 && a.emulationFactor.estimate < 6);
    const all = buildReport(plan(), [...runs(X86, [10, 11, 12]), ...runs(A64, [5, 5, 5], { emulated: true })]);
    assert.equal(all.entries[1]!.emulated, true);
    assert.equal(all.entries[1]!.rank, null, 'faster under emulation is still not ranked as hardware');
    assert.equal(all.entries[0]!.rank, 1);
    assert.match(renderText({ id: 'c', state: 'completed', createdAt: '', completedAt: null, plan: plan(), progress: { done: 8, total: 8 }, failure: null, runs: [], report: all }), /EMULATED/);
  });

  test('different outputs across platforms are flagged, unless allowed', () => {
    const rs = [...runs(X86, [10, 11, 12]), ...runs(A64, [10, 11, 12], { outputDigest: 'bb' })];
    const r = buildReport(plan(), rs);
    assert.equal(r.outputs.same, false);
    assert.deepEqual(r.outputs.groups.map((g) => g.labels), [[X86], [A64]]);
    assert.equal(buildReport(plan({ allowDifferentOutput: true }), rs).outputs.allowed, true);
    assert.equal(buildReport(plan(), [...runs(X86, [1, 2]), ...runs(A64, [1, 2])]).outputs.same, true);
  });

  test('a program that fails on one platform is reported for that platform; the others stand', () => {
    const r = buildReport(plan(), [...runs(X86, [10, 11, 12]), ...runs(A64, [10, 11, 12], { exitCode: 3 })]);
    const a = r.entries[1]!;
    assert.equal(a.status, 'failed');
    assert.match(a.failure!, /exit code 3 \(3 runs\)/);
    assert.equal(r.entries[0]!.status, 'ok');
  });

  test('an entry that was not built is listed with its reason', () => {
    const r = buildReport(plan({ failedEntries: [{ label: 'riscv64-linux-cpu', platform: 'riscv64-linux-cpu', reason: 'riscv64-linux-gnu-gcc failed: boom' }] }), runs(X86, [1, 2]));
    const rv = r.entries.find((e) => e.label === 'riscv64-linux-cpu')!;
    assert.equal(rv.status, 'not-run');
    assert.match(rv.failure!, /boom/);
  });

  test('cost: per run and per 1,000 runs, the cheapest, clear only when every other interval is above it', () => {
    const r = buildReport(plan(), [...runs(X86, [10, 11, 12, 10, 11], { cost: 1 }), ...runs(A64, [10, 11, 12, 10, 11], { cost: 3 })]);
    assert.equal(r.cheapest!.label, X86);
    assert.equal(r.cheapest!.clear, true);
    assert.equal(r.entries[1]!.cost!.per1000Runs.median, 3000);
    const tie = buildReport(plan(), [...runs(X86, [1, 2, 3], { cost: 1 }), ...runs(A64, [1, 2, 3], { cost: 1 })]);
    assert.equal(tie.cheapest!.clear, false);
    assert.match(renderCsv({ id: 'c', state: 'completed', createdAt: '', completedAt: null, plan: plan(), progress: { done: 0, total: 0 }, failure: null, runs: [], report: r }).split('\n')[0]!, /^label,platform,emulated/);
  });
});

describe('program output', () => {
  test('metric lines: value, unit, direction (given or guessed from the unit)', () => {
    assert.deepEqual(parseMetricLine('REMEX_METRIC bandwidth=12.5 GB/s'), { name: 'bandwidth', metric: { value: 12.5, unit: 'GB/s', higherIsBetter: true } });
    assert.deepEqual(parseMetricLine('REMEX_METRIC latency=3 ms'), { name: 'latency', metric: { value: 3, unit: 'ms', higherIsBetter: false } });
    assert.deepEqual(parseMetricLine('REMEX_METRIC score=7 points higher'), { name: 'score', metric: { value: 7, unit: 'points', higherIsBetter: true } });
    assert.equal(parseMetricLine('REMEX_METRIC x=abc'), undefined);
  });

  test('the answer is digested without the metric lines', () => {
    const a = readProgramOutput(Buffer.from('answer 42\nREMEX_METRIC t=1.5 ms\n'));
    const b = readProgramOutput(Buffer.from('answer 42\nREMEX_METRIC t=9.0 ms\n'));
    assert.equal(a.digest, b.digest);
    assert.equal(a.digest, createHash('sha256').update('answer 42\n').digest('hex'));
    assert.equal(a.metrics.t!.value, 1.5);
    assert.notEqual(readProgramOutput(Buffer.from('answer 43\n')).digest, a.digest);
  });
});
