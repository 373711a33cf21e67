/**
 * The statistics of `remex compare`, distribution-free so that they hold for run times (skewed, with
 * outliers) without assuming a normal law:
 *
 * - the interval of a platform's **median** is the classic order-statistic (sign-test) interval: the k-th
 *   smallest and k-th largest of n values, k chosen from the binomial(n, ½) law so that the coverage is at
 *   least the level asked (95%), and that coverage is reported exactly;
 * - a **ratio** of two platforms is the Hodges–Lehmann estimate on the log scale — the median of all m×n
 *   pairwise ratios a_i / b_j — with Moses' interval from the Mann–Whitney U law (exact for small samples,
 *   the normal approximation beyond {@link EXACT_U_LIMIT} pairs). It assumes one platform's times are the
 *   other's scaled by a factor, which is what "x is 2× slower" means.
 *
 * Pure functions over numbers; no I/O.
 */

/** The coverage asked of every interval. */
export const CONFIDENCE = 0.95;

/** Above this many pairs (m × n) the U law is approximated by the normal one. */
export const EXACT_U_LIMIT = 2500;

export interface Interval {
  low: number;
  high: number;
  /** The coverage this interval really has (≥ the level asked, or the most the sample allows). */
  level: number;
}

export interface Summary {
  n: number;
  min: number;
  max: number;
  median: number;
  mean: number;
  /** Sample standard deviation (n − 1); 0 for one value. */
  sd: number;
  /** The median's interval; null for fewer than two values. */
  medianInterval: Interval | null;
}

export interface Ratio {
  /** Hodges–Lehmann: the median of the pairwise ratios. */
  estimate: number;
  interval: Interval | null;
}

function sortedCopy(xs: readonly number[]): number[] {
  return [...xs].sort((a, b) => a - b);
}

/** The median of sorted values (the mean of the middle two for an even count). */
export function medianOfSorted(sorted: readonly number[]): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  const mid = n >> 1;
  return n % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function summarize(values: readonly number[], confidence = CONFIDENCE): Summary | null {
  if (values.length === 0) return null;
  const sorted = sortedCopy(values);
  const n = sorted.length;
  const mean = sorted.reduce((a, b) => a + b, 0) / n;
  const variance = n > 1 ? sorted.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1) : 0;
  return {
    n,
    min: sorted[0]!,
    max: sorted[n - 1]!,
    median: medianOfSorted(sorted),
    mean,
    sd: Math.sqrt(variance),
    medianInterval: medianInterval(sorted, confidence),
  };
}

/** P(X ≤ k) for X ~ binomial(n, ½). */
function binomialHalfCdf(n: number, k: number): number {
  let term = 0.5 ** n; // P(X = 0)
  let total = term;
  for (let i = 1; i <= k; i++) {
    term = (term * (n - i + 1)) / i;
    total += term;
  }
  return total;
}

/**
 * The order-statistic interval of the median of sorted values: [x_(k), x_(n−k+1)] (1-based) with the
 * largest k whose coverage 1 − 2·P(B ≤ k−1) is at least `confidence`. Samples too small for that level get
 * [min, max] with the coverage they do have (n = 5: 93.75%).
 */
export function medianInterval(sorted: readonly number[], confidence = CONFIDENCE): Interval | null {
  const n = sorted.length;
  if (n < 2) return null;
  const alpha = 1 - confidence;
  let k = 1;
  while (k + 1 <= n - k && 2 * binomialHalfCdf(n, k) <= alpha) k++;
  return { low: sorted[k - 1]!, high: sorted[n - k]!, level: 1 - 2 * binomialHalfCdf(n, k - 1) };
}

/**
 * The law of the Mann–Whitney U for samples of m and n under no difference: P(U = u) for u = 0…mn, by the
 * recursion p(m,n,u) = m/(m+n)·p(m−1,n,u−n) + n/(m+n)·p(m,n−1,u) (probabilities, so nothing overflows).
 */
export function mannWhitneyLaw(m: number, n: number): number[] {
  // row[j] holds the law for (i, j) while i grows; start with i = 0: U = 0 surely.
  let prev: number[][] = Array.from({ length: n + 1 }, () => [1]);
  for (let i = 1; i <= m; i++) {
    const cur: number[][] = [[1]]; // (i, 0): U = 0 surely
    for (let j = 1; j <= n; j++) {
      const size = i * j + 1;
      const law = new Array<number>(size).fill(0);
      const a = prev[j]!; // (i−1, j): the i-th of the first sample is the largest: it beats all j
      const b = cur[j - 1]!; // (i, j−1): the j-th of the second sample is the largest: adds nothing
      const pa = i / (i + j);
      const pb = j / (i + j);
      for (let u = 0; u < a.length; u++) law[u + j]! += pa * a[u]!;
      for (let u = 0; u < b.length; u++) law[u]! += pb * b[u]!;
      cur.push(law);
    }
    prev = cur;
  }
  return prev[n]!;
}

/** The standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9). */
export function normalQuantile(p: number): number {
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const low = 0.02425;
  if (p < low) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) / ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
  }
  if (p > 1 - low) return -normalQuantile(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) / (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1);
}

/**
 * Moses' rank k: the interval is the k-th smallest and k-th largest pairwise difference. It is the
 * largest k with P(U ≤ k−1) ≤ α/2, so the coverage is 1 − 2·P(U ≤ k−1). 0 when even the widest interval
 * does not reach the level (then it is reported with the coverage it has).
 */
export function mosesRank(m: number, n: number, confidence = CONFIDENCE): { k: number; level: number } {
  const alpha = 1 - confidence;
  if (m * n > EXACT_U_LIMIT) {
    const z = normalQuantile(1 - alpha / 2);
    const k = Math.max(1, Math.floor((m * n) / 2 - z * Math.sqrt((m * n * (m + n + 1)) / 12)));
    return { k, level: confidence };
  }
  const law = mannWhitneyLaw(m, n);
  let cdf = 0; // P(U ≤ k−1)
  let k = 0;
  while (k < law.length && cdf + law[k]! <= alpha / 2 + 1e-12) {
    cdf += law[k]!;
    k++;
  }
  if (k === 0) return { k: 0, level: 1 - 2 * law[0]! };
  return { k, level: 1 - 2 * cdf };
}

/**
 * How many times `a` is `b` (a / b): the Hodges–Lehmann estimate on the log scale and Moses' interval.
 * Null when either side is empty.
 */
export function ratioOf(a: readonly number[], b: readonly number[], confidence = CONFIDENCE): Ratio | null {
  if (a.length === 0 || b.length === 0) return null;
  // A 0 (a run faster than the clock's tick) counts as half the smallest positive value, so logs stay finite.
  const floor = Math.min(...[...a, ...b].filter((x) => x > 0), 1) / 2;
  const log = (x: number): number => Math.log(x > 0 ? x : floor);
  const diffs: number[] = [];
  for (const x of a) for (const y of b) diffs.push(log(x) - log(y));
  diffs.sort((p, q) => p - q);
  const estimate = Math.exp(medianOfSorted(diffs));
  if (a.length < 2 || b.length < 2) return { estimate, interval: null };
  const { k, level } = mosesRank(a.length, b.length, confidence);
  const rank = Math.max(1, k);
  return { estimate, interval: { low: Math.exp(diffs[rank - 1]!), high: Math.exp(diffs[diffs.length - rank]!), level } };
}

/** "no clear difference" when the interval holds 1; otherwise which side of 1 it lies on. */
export function verdictOf(ratio: Ratio | null): 'higher' | 'lower' | 'no clear difference' | 'unknown' {
  if (!ratio || !ratio.interval) return 'unknown';
  if (ratio.interval.low > 1) return 'higher';
  if (ratio.interval.high < 1) return 'lower';
  return 'no clear difference';
}
