/**
 * The cost of listed jobs summed by platform, by state and by label (issue 13: "summed by label, platform
 * and state in `jobs` and `collect`"), for both listings' text and collect's summary.json. Only priced jobs
 * count: a job without a price is left out of every sum, and the footer says how many were.
 */
import { formatTable } from './table.js';

export interface CostedJob {
  platform: string;
  state: string;
  labels: Readonly<Record<string, string>>;
  cost: number | null;
}

/** One group's sum: jobs of `by` (platform, state, label) equal to `value`. */
export interface CostSum {
  by: 'platform' | 'state' | 'label';
  value: string;
  jobs: number;
  cost: number;
}

export interface CostSums {
  /** Priced jobs, and their total. */
  jobs: number;
  total: number;
  /** Jobs without a price, left out of every sum. */
  unpriced: number;
  groups: CostSum[];
}

/** Sums by platform, then state, then each label `k=v` (a job with two labels counts under both), each sorted. */
export function costSums(jobs: readonly CostedJob[]): CostSums {
  const priced = jobs.filter((j): j is CostedJob & { cost: number } => j.cost !== null);
  const groups = new Map<string, CostSum>();
  const add = (by: CostSum['by'], value: string, cost: number): void => {
    const key = `${by}\0${value}`;
    const g = groups.get(key) ?? { by, value, jobs: 0, cost: 0 };
    g.jobs++;
    g.cost += cost;
    groups.set(key, g);
  };
  for (const j of priced) {
    add('platform', j.platform, j.cost);
    add('state', j.state, j.cost);
    for (const [k, v] of Object.entries(j.labels)) add('label', `${k}=${v}`, j.cost);
  }
  const order: Record<CostSum['by'], number> = { platform: 0, state: 1, label: 2 };
  return {
    jobs: priced.length,
    total: priced.reduce((sum, j) => sum + j.cost, 0),
    unpriced: jobs.length - priced.length,
    groups: [...groups.values()].sort((a, b) => order[a.by] - order[b.by] || a.value.localeCompare(b.value)),
  };
}

/** The sums as a table with the total last, or '' when no listed job has a price. */
export function formatCostSums(sums: CostSums, format: (cost: number) => string): string {
  if (sums.jobs === 0) return '';
  const rows = sums.groups.map((g) => [g.by, g.value, String(g.jobs), format(g.cost)]);
  rows.push(['total', '', String(sums.jobs), format(sums.total)]);
  const note = sums.unpriced > 0 ? `(${sums.unpriced} job${sums.unpriced === 1 ? '' : 's'} without a price left out)\n` : '';
  return `\n${formatTable(['COST BY', 'VALUE', 'JOBS', 'COST'], rows)}${note}`;
}
