/**
 * The scaling policy: a pure, deterministic function of a pool's recent history to the number of workers it
 * should have, with its reason in words. The controller (real workers) and the simulator (a trace) call the
 * same function, so what the bench measures is what runs.
 *
 * Demand is sized two ways and the larger wins (decision 0031):
 * - target tracking on the backlog: the running jobs' slots plus `targetBacklogPerWorker` queued per worker;
 * - prediction (mode `predictive`): the arrival rate, smoothed exponentially, extended by its least-squares
 *   trend over the window to the moment a worker asked for now would be ready; by Little's law (L = λW) the
 *   busy slots those arrivals need, filling `targetUtilization` of the slots, plus the queue already there.
 * Then hysteresis (grow only when busy above `scaleUpUtilization` or a backlog waits, shrink only when busy
 * below `scaleDownUtilization` with nothing queued), cooldowns (up: since the last growth; down: since the
 * last change either way), step limits, min and max. A pool idle for `idleToZeroSeconds` goes to its
 * minimum at once — scaling in drains, so no running job is ever harmed by it.
 */
import type { PolicyKnobs } from './config.js';

/** What the controller saw of one pool at one moment. Counts are of this pool only. */
export interface PoolSample {
  atMs: number;
  /** Jobs waiting for this pool's platforms. */
  queued: number;
  /** Jobs running on this pool's workers. */
  running: number;
  /** Jobs that arrived since the previous sample. */
  arrivals: number;
  /** Jobs that finished since the previous sample, and the sum of their run times. */
  completions: number;
  serviceMsSum: number;
  /** Registered workers taking work. */
  activeWorkers: number;
  /** Asked of the provider, not registered yet. */
  startingWorkers: number;
  /** Told to drain, still finishing their jobs. */
  drainingWorkers: number;
}

/** What the policy remembers between decisions (returned by each, passed to the next). */
export interface PolicyMemory {
  lastScaleUpAtMs: number | undefined;
  lastScaleDownAtMs: number | undefined;
  /** The last moment a job was queued or running. */
  lastBusyAtMs: number | undefined;
  /** The sizings of the last `scaleDownStabilizationSeconds` (oldest first): a shrink goes no lower than their highest. */
  recentNeeds?: readonly { atMs: number; need: number }[];
}

export const EMPTY_MEMORY: PolicyMemory = Object.freeze({ lastScaleUpAtMs: undefined, lastScaleDownAtMs: undefined, lastBusyAtMs: undefined, recentNeeds: [] });

export interface PoolShape {
  minWorkers: number;
  maxWorkers: number;
  slotsPerWorker: number;
  /** How long a worker takes to be ready: how far ahead the prediction looks (with one decision interval). */
  startupSeconds: number;
  decisionIntervalSeconds: number;
  policy: PolicyKnobs;
}

export interface PolicyInput {
  nowMs: number;
  pool: PoolShape;
  /** Oldest first; the last one is now. */
  samples: readonly PoolSample[];
  memory: PolicyMemory;
}

/** The figures a decision was made from, kept with it. */
export interface DecisionFigures {
  current: number;
  backlogNeed: number;
  predictiveNeed: number | undefined;
  arrivalRatePerSecond: number;
  smoothedRatePerSecond: number;
  trendPerSecond2: number;
  predictedRatePerSecond: number;
  serviceSeconds: number;
  busyShare: number;
  predictedBusyShare: number;
}

export interface Decision {
  atMs: number;
  /** Workers the pool should have (active + starting; draining ones not counted). */
  desired: number;
  current: number;
  direction: 'up' | 'down' | 'hold';
  reason: string;
  figures: DecisionFigures;
  memory: PolicyMemory;
}

/** Exponential smoothing of a series (oldest first): the last level. */
export function smooth(values: readonly number[], alpha: number): number {
  let level: number | undefined;
  for (const v of values) level = level === undefined ? v : alpha * v + (1 - alpha) * level;
  return level ?? 0;
}

/**
 * Least-squares slope of y over x, and 0 unless it stands out of the noise: its magnitude must exceed three
 * times its standard error, so a steady but noisy load reads as flat (fewer than three points: 0).
 */
export function leastSquaresSlope(points: readonly { x: number; y: number }[]): number {
  const n = points.length;
  if (n < 3) return 0;
  const mx = points.reduce((s, p) => s + p.x, 0) / n;
  const my = points.reduce((s, p) => s + p.y, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (const p of points) {
    sxy += (p.x - mx) * (p.y - my);
    sxx += (p.x - mx) ** 2;
  }
  if (sxx === 0) return 0;
  const slope = sxy / sxx;
  const residuals = points.reduce((s, p) => s + (p.y - my - slope * (p.x - mx)) ** 2, 0);
  const stderr = Math.sqrt(residuals / (n - 2) / sxx);
  return Math.abs(slope) > 3 * stderr ? slope : 0;
}

const round = (n: number, digits = 2): string => (Number.isFinite(n) ? Number(n.toFixed(digits)).toString() : String(n));
const pct = (share: number): string => `${Math.round(share * 100)}%`;

/** Elapsed since `thenMs`; a clock that went back (negative) counts as long ago, so it never freezes a cooldown. */
function since(nowMs: number, thenMs: number | undefined): number {
  if (thenMs === undefined) return Infinity;
  const d = nowMs - thenMs;
  return d < 0 ? Infinity : d;
}

export function decide(input: PolicyInput): Decision {
  const { nowMs, pool, memory } = input;
  const k = pool.policy;
  const slots = pool.slotsPerWorker;
  // Samples in time order, from the window; a clock that jumped back leaves samples "from the future": dropped.
  const windowStart = nowMs - k.windowSeconds * 1000;
  const samples = input.samples.filter((s) => s.atMs <= nowMs && s.atMs >= windowStart);
  const last = samples[samples.length - 1];
  const hold = (current: number, reason: string, figures: DecisionFigures, mem: PolicyMemory = memory): Decision => ({
    atMs: nowMs,
    desired: current,
    current,
    direction: 'hold',
    reason,
    figures,
    memory: mem,
  });
  const emptyFigures = (current: number): DecisionFigures => ({
    current,
    backlogNeed: 0,
    predictiveNeed: undefined,
    arrivalRatePerSecond: 0,
    smoothedRatePerSecond: 0,
    trendPerSecond2: 0,
    predictedRatePerSecond: 0,
    serviceSeconds: k.defaultServiceSeconds,
    busyShare: 0,
    predictedBusyShare: 0,
  });
  if (!last) return hold(0, 'no sample yet', emptyFigures(0));

  const current = last.activeWorkers + last.startingWorkers;
  const busyNow = last.queued + last.running > 0;
  let mem: PolicyMemory = { ...memory, lastBusyAtMs: busyNow ? nowMs : memory.lastBusyAtMs };

  // Arrival rates per interval (a sample with no time before it, or time going back, gives no rate).
  const rates: { x: number; y: number }[] = [];
  for (let i = 1; i < samples.length; i++) {
    const prev = samples[i - 1] as PoolSample;
    const s = samples[i] as PoolSample;
    const dt = (s.atMs - prev.atMs) / 1000;
    if (dt > 0) rates.push({ x: (s.atMs - nowMs) / 1000, y: s.arrivals / dt });
  }
  const rawRate = rates.length ? (rates[rates.length - 1] as { y: number }).y : 0;
  const smoothed = smooth(rates.map((r) => r.y), k.smoothingAlpha);
  const trend = leastSquaresSlope(rates);
  const horizonSeconds = pool.startupSeconds + pool.decisionIntervalSeconds;
  // The trend only looks ahead as far as a worker asked for now takes to help; a falling trend is trusted
  // less (the backlog will say when load is really gone), so it may lower the prediction by half at most.
  const predictedRate = Math.max(0, Math.max(smoothed / 2, smoothed + trend * horizonSeconds));
  const completions = samples.reduce((n, s) => n + s.completions, 0);
  const serviceMs = samples.reduce((n, s) => n + s.serviceMsSum, 0);
  const serviceSeconds = completions > 0 ? serviceMs / completions / 1000 : k.defaultServiceSeconds;

  const capacitySlots = Math.max(1, last.activeWorkers * slots);
  const busyShare = samples.reduce((n, s) => n + Math.min(1, s.running / Math.max(1, s.activeWorkers * slots)), 0) / samples.length;
  const predictedBusySlots = predictedRate * serviceSeconds; // Little's law: L = λW
  const predictedBusyShare = predictedBusySlots / Math.max(capacitySlots, current * slots, 1);

  const backlogNeed = Math.ceil(last.running / slots + last.queued / k.targetBacklogPerWorker);
  // The slots busy on average over the window, beside the prediction: a noisy low guess never sizes below what runs.
  const averageRunning = samples.reduce((n, s) => n + s.running, 0) / samples.length;
  // The prediction's sizing of the arrivals alone (Little's law, no queue and no backlog being drained):
  // what the pool needs once the backlog is served.
  const flowNeed = k.mode === 'predictive' ? Math.ceil(predictedBusySlots / (slots * k.targetUtilization)) : 0;
  const predictiveNeed = k.mode === 'predictive' ? Math.ceil(Math.max(predictedBusySlots, averageRunning) / (slots * k.targetUtilization) + last.queued / k.targetBacklogPerWorker) : undefined;
  const figures: DecisionFigures = {
    current,
    backlogNeed,
    predictiveNeed,
    arrivalRatePerSecond: rawRate,
    smoothedRatePerSecond: smoothed,
    trendPerSecond2: trend,
    predictedRatePerSecond: predictedRate,
    serviceSeconds,
    busyShare,
    predictedBusyShare,
  };
  // Nothing queued or running and nothing arrived over the last two intervals: the smoothed rate is stale
  // (an empty 20 s at even 0.3 jobs/s has odds of 1 in 400), so the backlog alone sizes the pool.
  const tail = samples.slice(-2);
  const stale = tail.length === 2 && tail.every((s) => s.arrivals === 0 && s.queued === 0 && s.running === 0);
  const need = stale ? backlogNeed : Math.max(backlogNeed, predictiveNeed ?? 0);
  // Scale-down stabilisation: the sizings of the last few minutes are remembered, and a shrink goes no lower
  // than the highest of them, so a dip in a steady load shorter than that is not followed down (and up again).
  const stabilizeMs = k.scaleDownStabilizationSeconds * 1000;
  // A sizing made while a backlog waits is not remembered: it is the start or a burst, not the steady flow.
  const recentNeeds = [...(memory.recentNeeds ?? []).filter((r) => r.atMs <= nowMs && r.atMs > nowMs - stabilizeMs), ...(last.queued === 0 && !stale ? [{ atMs: nowMs, need: flowNeed }] : [])];
  // Only while the trend is flat: a significant fall (the end of a spike) is followed at once.
  const stableNeed = trend < 0 ? 0 : Math.max(0, ...recentNeeds.map((r) => r.need));
  mem = { ...mem, recentNeeds };
  const why =
    k.mode === 'predictive'
      ? `backlog ${last.queued} queued + ${last.running} running needs ${backlogNeed}; predicted ${round(predictedRate)}/s (smoothed ${round(smoothed)}/s, trend ${round(trend, 3)}/s²) × ${round(serviceSeconds, 1)} s = ${round(predictedBusySlots, 1)} busy slots needs ${predictiveNeed} at ${pct(k.targetUtilization)}`
      : `backlog ${last.queued} queued + ${last.running} running needs ${backlogNeed} (${k.targetBacklogPerWorker} queued per worker)`;
  const whyStale = stale ? `${why}; nothing queued, running or arriving: the prediction is set aside` : why;
  const clamp = (n: number): number => Math.min(pool.maxWorkers, Math.max(pool.minWorkers, n));

  // Idle long enough: straight to the minimum (the scale-in drains; nothing runs to be harmed).
  const idleMs = busyNow ? 0 : since(nowMs, mem.lastBusyAtMs);
  if (!busyNow && idleMs >= k.idleToZeroSeconds * 1000 && current > pool.minWorkers) {
    const desired = pool.minWorkers;
    return {
      atMs: nowMs,
      desired,
      current,
      direction: 'down',
      reason: `down ${current}→${desired}: idle for ${round(Math.min(idleMs, 1e12) / 1000, 0)} s ≥ ${k.idleToZeroSeconds} s`,
      figures,
      memory: { ...mem, lastScaleDownAtMs: nowMs },
    };
  }
  // Idle and nothing arriving (the stale case above): every worker is idle, so drop to the one kept until the
  // idle time passes at once — no step limit or cooldown protects a running job here, there is none.
  const idleFloor = Math.max(pool.minWorkers, 1);
  if (stale && current > idleFloor) {
    return {
      atMs: nowMs,
      desired: idleFloor,
      current,
      direction: 'down',
      reason: `down ${current}→${idleFloor}: nothing queued, running or arriving for ${round((nowMs - (tail[0] as PoolSample).atMs) / 1000 + pool.decisionIntervalSeconds, 0)} s; ${idleFloor} kept until idle for ${k.idleToZeroSeconds} s`,
      figures,
      memory: { ...mem, lastScaleDownAtMs: nowMs },
    };
  }
  if (current < pool.minWorkers) {
    return { atMs: nowMs, desired: pool.minWorkers, current, direction: 'up', reason: `up ${current}→${pool.minWorkers}: below minWorkers`, figures, memory: { ...mem, lastScaleUpAtMs: nowMs } };
  }
  if (current > pool.maxWorkers) {
    return { atMs: nowMs, desired: pool.maxWorkers, current, direction: 'down', reason: `down ${current}→${pool.maxWorkers}: above maxWorkers`, figures, memory: { ...mem, lastScaleDownAtMs: nowMs } };
  }

  // Until the idle time has passed, a pool with work in its recent past keeps one worker.
  const floor = busyNow || since(nowMs, mem.lastBusyAtMs) < k.idleToZeroSeconds * 1000 ? Math.min(1, Math.max(current, need)) : 0;
  const target = clamp(Math.max(need, floor));

  if (target > current) {
    // Hysteresis: a backlog within the target per worker is the normal noise of a busy pool, not a reason.
    const backlogWaits = last.queued > 0 && (last.activeWorkers === 0 || last.queued > k.targetBacklogPerWorker * last.activeWorkers);
    // A busy pool with nothing waiting is the goal, not a reason to grow: busy counts only with a queue. The
    // prediction alone grows the pool only on a rising trend that stands out of the noise.
    const hot = (busyShare > k.scaleUpUtilization && last.queued > 0) || (trend > 0 && predictedBusyShare > k.scaleUpUtilization);
    if (!hot && !backlogWaits) {
      return hold(current, `hold at ${current}: ${why}, but busy ${pct(busyShare)} (predicted ${pct(predictedBusyShare)}) is not above ${pct(k.scaleUpUtilization)} and the backlog is within ${k.targetBacklogPerWorker} per worker`, figures, mem);
    }
    const cool = since(nowMs, memory.lastScaleUpAtMs) / 1000;
    if (cool < k.scaleUpCooldownSeconds) return hold(current, `hold at ${current}: would grow to ${target} (${why}) but the up cooldown has ${round(k.scaleUpCooldownSeconds - cool, 0)} s left`, figures, mem);
    const desired = Math.min(target, current + k.maxStepUp);
    const step = desired < target ? ` (step limit ${k.maxStepUp})` : '';
    return { atMs: nowMs, desired, current, direction: 'up', reason: `up ${current}→${desired}${step}: ${why}`, figures, memory: { ...mem, lastScaleUpAtMs: nowMs } };
  }
  // Shrinking never leaves the jobs running now above the up threshold: that would only grow again.
  const keep = Math.ceil(last.running / (slots * k.scaleUpUtilization));
  const shrinkTo = Math.max(target, clamp(stableNeed), keep);
  if (Math.max(target, keep) < current && shrinkTo >= current) {
    return hold(current, `hold at ${current}: ${why}, but the highest sizing of the last ${k.scaleDownStabilizationSeconds} s needs ${stableNeed}`, figures, mem);
  }
  if (shrinkTo < current) {
    const cold = busyShare < k.scaleDownUtilization && predictedBusyShare < k.scaleDownUtilization && last.queued === 0;
    if (!cold) {
      return hold(current, `hold at ${current}: ${why}, but busy ${pct(busyShare)} (predicted ${pct(predictedBusyShare)}) is not below ${pct(k.scaleDownUtilization)}${last.queued ? ' or jobs wait' : ''}`, figures, mem);
    }
    const lastChange = Math.max(memory.lastScaleDownAtMs ?? -Infinity, memory.lastScaleUpAtMs ?? -Infinity);
    const cool = since(nowMs, Number.isFinite(lastChange) ? lastChange : undefined) / 1000;
    if (cool < k.scaleDownCooldownSeconds) return hold(current, `hold at ${current}: would shrink to ${shrinkTo} (${why}) but the down cooldown has ${round(k.scaleDownCooldownSeconds - cool, 0)} s left`, figures, mem);
    const desired = Math.max(shrinkTo, current - k.maxStepDown);
    const step = desired > shrinkTo ? ` (step limit ${k.maxStepDown})` : '';
    return { atMs: nowMs, desired, current, direction: 'down', reason: `down ${current}→${desired}${step}: ${why}; busy ${pct(busyShare)}`, figures, memory: { ...mem, lastScaleDownAtMs: nowMs } };
  }
  return hold(current, `hold at ${current}: ${whyStale}`, figures, mem);
}
