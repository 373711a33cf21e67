/**
 * A comparison as remex keeps it and answers it (`GET /v1/comparisons/<id>`, `remex compare --json`): what
 * was asked, every run, and the report computed from the runs. The report is a pure function of the runs
 * ({@link buildReport}), so it is recomputed as runs arrive and whoever reads it sees the same numbers.
 */
import type { HostInfo } from '../core/model.js';
import { ratioOf, summarize, verdictOf } from './statistics.js';
import type { Interval, Ratio, Summary } from './statistics.js';

export const COMPARISON_STATES = ['running', 'completed', 'failed'] as const;
export type ComparisonState = (typeof COMPARISON_STATES)[number];

/** One platform entry as asked: `aarch64-linux-cpu=./prog-a64` (two entries may share a triple). */
export interface EntryPlan {
  /** Unique within the comparison: the triple, or `triple#2` for the second entry of the same triple. */
  label: string;
  platform: string;
}

/** An entry that could not take part (its source did not compile for it, say), as the client reported it. */
export interface EntryFailure {
  label: string;
  platform: string;
  reason: string;
}

export interface ComparisonPlan {
  entries: EntryPlan[];
  repeat: number;
  warmup: number;
  /** The label measured against; the first entry when not given. */
  baseline: string;
  allowDifferentOutput: boolean;
  /** Entries that failed before running (not built), reported beside the others. */
  failedEntries: EntryFailure[];
}

/** A metric a program reported of itself. */
export interface MetricValue {
  value: number;
  unit: string;
  /** From the line (`higher` or `lower`), else guessed from the unit (a rate `…/s` is higher-is-better); null for progress metrics without a unit. */
  higherIsBetter: boolean | null;
}

/** One run of one entry. */
export interface RunRecord {
  label: string;
  /** The round it belongs to (warm-up rounds first). */
  round: number;
  warmup: boolean;
  jobId: string;
  state: 'completed' | 'timed_out' | 'cancelled' | 'failed' | 'emergency_stopped';
  exitCode: number | null;
  signal: string | null;
  /** Why remex could not run it, or the program's failure in words. */
  failure: string | null;
  wallTimeMs: number | null;
  cpuTimeMs: number | null;
  maxRssKb: number | null;
  cost: number | null;
  emulated: boolean | null;
  worker: string | null;
  host: HostInfo | null;
  /** SHA-256 of stdout with the REMEX_METRIC lines taken out (the program's answer, not its timings). */
  outputDigest: string | null;
  metrics: Record<string, MetricValue>;
}

/** A run that counts: completed with exit status 0 and not a warm-up. */
export function isGoodRun(r: RunRecord): boolean {
  return !r.warmup && r.state === 'completed' && r.exitCode === 0 && r.signal === null && r.wallTimeMs !== null;
}

export interface RatioView {
  estimate: number;
  interval: Interval | null;
  /** How the entry stands against the baseline for this measure. */
  verdict: 'higher' | 'lower' | 'no clear difference' | 'unknown';
}

export interface MetricReport {
  name: string;
  unit: string;
  higherIsBetter: boolean | null;
  summary: Summary | null;
  vsBaseline: RatioView | null;
}

export interface EntryReport {
  label: string;
  platform: string;
  /** true: every counted run emulated; false: none; 'mixed': both (see emulationFactor). */
  emulated: boolean | 'mixed' | null;
  /** ok: runs counted; failed: no run counted (see failure); not-run: it failed before running. */
  status: 'ok' | 'failed' | 'not-run';
  failure: string | null;
  runs: { counted: number; failed: number; warmup: number };
  wallTimeMs: Summary | null;
  cpuTimeMs: Summary | null;
  maxRssKb: Summary | null;
  /** Wall time against the baseline's (this / baseline): above 1 is slower. */
  vsBaseline: RatioView | null;
  /** 1 for the fastest native entry; null for emulated ones (never ranked as hardware) and failed ones. */
  rank: number | null;
  /** Emulated runs' time over native runs' of this same entry, when it ran both ways. */
  emulationFactor: RatioView | null;
  cost: CostReport | null;
  metrics: MetricReport[];
  /** The digest of its output when all its runs agree, else null (see outputsVary). */
  outputDigest: string | null;
  outputsVary: boolean;
  /** The workers that ran it, with their machines. */
  hosts: Array<{ worker: string; host: HostInfo | null; emulated: boolean | null }>;
}

export interface CostReport {
  /** Cost per run (price × time × share of the worker), in the operator's unit. */
  perRun: Summary;
  per1000Runs: { median: number; interval: Interval | null };
  /** Against the cheapest entry's (this / cheapest). */
  vsCheapest: RatioView | null;
}

export interface ComparisonReport {
  entries: EntryReport[];
  baseline: string;
  /** Outputs that differ across platforms: a finding, unless allowed. */
  outputs: { same: boolean; allowed: boolean; groups: Array<{ digest: string; labels: string[] }> };
  /** The cheapest entry per unit of work, and whether its intervals set it clearly apart from every other. */
  cheapest: { label: string; clear: boolean } | null;
  /** How the numbers were made, in words, for every output to show. */
  method: { interval: string; ratio: string; counted: string };
}

export interface ComparisonDocument {
  id: string;
  state: ComparisonState;
  createdAt: string;
  completedAt: string | null;
  plan: ComparisonPlan;
  progress: { done: number; total: number };
  /** Why the comparison as a whole stopped, when it failed. */
  failure: string | null;
  runs: RunRecord[];
  report: ComparisonReport;
}

export const METHOD = {
  interval: 'median with its 95% order-statistic (sign-test) interval, distribution-free; the coverage reached is given',
  ratio: 'Hodges–Lehmann ratio (median of all pairwise ratios) with its 95% Moses / Mann–Whitney interval; "no clear difference" when the interval holds 1',
  counted: 'runs that exited 0, after the warm-up rounds (reported, not judged); runs interleaved across platforms, one at a time, each round in a rotated order',
} as const;

function ratioView(a: readonly number[], b: readonly number[]): RatioView | null {
  const ratio: Ratio | null = ratioOf(a, b);
  return ratio ? { ...ratio, verdict: verdictOf(ratio) } : null;
}

/** The report of a comparison from its runs so far. */
export function buildReport(plan: ComparisonPlan, runs: readonly RunRecord[]): ComparisonReport {
  const byLabel = new Map<string, RunRecord[]>();
  for (const e of plan.entries) byLabel.set(e.label, []);
  for (const r of runs) byLabel.get(r.label)?.push(r);
  const good = (label: string) => (byLabel.get(label) ?? []).filter(isGoodRun);
  const times = (label: string) => good(label).map((r) => r.wallTimeMs!);
  const baselineTimes = times(plan.baseline);

  const entries: EntryReport[] = plan.entries.map((e) => entryReport(e, byLabel.get(e.label) ?? [], good(plan.baseline), baselineTimes));
  for (const f of plan.failedEntries) {
    entries.push({
      label: f.label,
      platform: f.platform,
      emulated: null,
      status: 'not-run',
      failure: f.reason,
      runs: { counted: 0, failed: 0, warmup: 0 },
      wallTimeMs: null,
      cpuTimeMs: null,
      maxRssKb: null,
      vsBaseline: null,
      rank: null,
      emulationFactor: null,
      cost: null,
      metrics: [],
      outputDigest: null,
      outputsVary: false,
      hosts: [],
    });
  }

  // Only hardware is ranked: entries whose counted runs all ran natively.
  const ranked = entries.filter((e) => e.status === 'ok' && e.emulated === false && e.wallTimeMs).sort((a, b) => a.wallTimeMs!.median - b.wallTimeMs!.median);
  ranked.forEach((e, i) => (e.rank = i + 1));

  // Cost: the cheapest by median cost per run; clear when its cost is below every other's beyond doubt.
  const costed = entries.filter((e) => e.cost);
  let cheapest: ComparisonReport['cheapest'] = null;
  if (costed.length > 0) {
    const best = costed.reduce((a, b) => (b.cost!.perRun.median < a.cost!.perRun.median ? b : a));
    const bestCosts = costsOf(good(best.label));
    for (const e of costed) e.cost!.vsCheapest = ratioView(costsOf(good(e.label)), bestCosts);
    const clear = costed.every((e) => e === best || e.cost!.vsCheapest?.verdict === 'higher');
    cheapest = { label: best.label, clear };
  }

  const groups = new Map<string, string[]>();
  for (const e of entries) if (e.outputDigest) groups.set(e.outputDigest, [...(groups.get(e.outputDigest) ?? []), e.label]);
  const same = groups.size <= 1 && !entries.some((e) => e.outputsVary);
  return {
    entries,
    baseline: plan.baseline,
    outputs: { same, allowed: plan.allowDifferentOutput, groups: [...groups].map(([digest, labels]) => ({ digest, labels })) },
    cheapest,
    method: { ...METHOD },
  };
}

function costsOf(runs: readonly RunRecord[]): number[] {
  return runs.filter((r) => r.cost !== null).map((r) => r.cost!);
}

function entryReport(e: EntryPlan, all: readonly RunRecord[], baselineRuns: readonly RunRecord[], baselineTimes: readonly number[]): EntryReport {
  const counted = all.filter(isGoodRun);
  const measured = all.filter((r) => !r.warmup);
  const failedRuns = measured.filter((r) => !isGoodRun(r));
  const emulatedRuns = counted.filter((r) => r.emulated === true);
  const nativeRuns = counted.filter((r) => r.emulated === false);
  const emulated = counted.length === 0 ? (all[0]?.emulated ?? null) : emulatedRuns.length === 0 ? false : nativeRuns.length === 0 ? true : 'mixed';
  const wall = counted.map((r) => r.wallTimeMs!);
  const costs = costsOf(counted);
  const costSummary = costs.length === counted.length ? summarize(costs) : null;

  const metricNames = new Map<string, MetricValue>();
  for (const r of counted) for (const [name, m] of Object.entries(r.metrics)) if (!metricNames.has(name)) metricNames.set(name, m);
  const metrics: MetricReport[] = [...metricNames].map(([name, first]) => {
    const values = counted.filter((r) => r.metrics[name]).map((r) => r.metrics[name]!.value);
    const base = baselineRuns.filter((r) => r.metrics[name]).map((r) => r.metrics[name]!.value);
    return { name, unit: first.unit, higherIsBetter: first.higherIsBetter, summary: summarize(values), vsBaseline: ratioView(values, base) };
  });

  const digests = new Set(counted.map((r) => r.outputDigest));
  const hosts = new Map<string, EntryReport['hosts'][number]>();
  for (const r of all) if (r.worker && !hosts.has(r.worker)) hosts.set(r.worker, { worker: r.worker, host: r.host, emulated: r.emulated });

  let failure: string | null = null;
  if (failedRuns.length > 0) failure = describeFailures(failedRuns);
  return {
    label: e.label,
    platform: e.platform,
    emulated,
    status: counted.length > 0 ? 'ok' : measured.length > 0 ? 'failed' : 'ok',
    failure,
    runs: { counted: counted.length, failed: failedRuns.length, warmup: all.filter((r) => r.warmup).length },
    wallTimeMs: summarize(wall),
    cpuTimeMs: summarize(counted.map((r) => r.cpuTimeMs ?? 0)),
    maxRssKb: summarize(counted.map((r) => r.maxRssKb ?? 0)),
    vsBaseline: ratioView(wall, baselineTimes),
    rank: null,
    emulationFactor: emulatedRuns.length > 0 && nativeRuns.length > 0 ? ratioView(emulatedRuns.map((r) => r.wallTimeMs!), nativeRuns.map((r) => r.wallTimeMs!)) : null,
    cost: costSummary ? { perRun: costSummary, per1000Runs: { median: costSummary.median * 1000, interval: scale(costSummary.medianInterval, 1000) }, vsCheapest: null } : null,
    metrics,
    outputDigest: digests.size === 1 ? [...digests][0]! : null,
    outputsVary: digests.size > 1,
    hosts: [...hosts.values()],
  };
}

function scale(i: Interval | null, by: number): Interval | null {
  return i ? { low: i.low * by, high: i.high * by, level: i.level } : null;
}

/** "exit code 3 in 2 of 5 runs; timed out in 1": the failures of one entry in words. */
function describeFailures(runs: readonly RunRecord[]): string {
  const counts = new Map<string, number>();
  for (const r of runs) {
    const why =
      r.state === 'completed'
        ? r.signal
          ? `killed by ${r.signal}`
          : `exit code ${r.exitCode ?? '?'}`
        : r.state === 'timed_out'
          ? 'timed out'
          : `${r.state}${r.failure ? `: ${r.failure}` : ''}`;
    counts.set(why, (counts.get(why) ?? 0) + 1);
  }
  return [...counts].map(([why, n]) => `${why} (${n} run${n === 1 ? '' : 's'})`).join('; ');
}
