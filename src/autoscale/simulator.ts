/**
 * The autoscaling simulator: replays an arrival trace through one pool run by the same policy code as the
 * controller (`decide`), in simulated time. Workers take `startupSeconds` to be ready (billed from the
 * moment they are asked for), jobs are served first in, first out, a scale-in drains (idle workers first,
 * then starting ones, then the least busy; a draining worker stops when its last job ends), exactly as the
 * controller does with real workers.
 */
import { decide, EMPTY_MEMORY } from './policy.js';
import type { Decision, PolicyMemory, PoolSample, PoolShape } from './policy.js';
import type { TraceJob } from './traces.js';

export interface SimulationOptions {
  pool: PoolShape & { pricePerHour: number };
  trace: readonly TraceJob[];
  /** Simulated time step (seconds); waits are measured to within it. Default 0.25. */
  stepSeconds?: number;
  /** Workers present at the start (ready). Default the pool's minimum. */
  initialWorkers?: number;
}

export interface SeriesPoint {
  t: number;
  arrivalsPerSecond: number;
  queued: number;
  running: number;
  workers: number;
  desired: number;
}

export interface SimulationResult {
  jobs: number;
  waitP50Seconds: number;
  waitP95Seconds: number;
  waitP99Seconds: number;
  /** From each worker's request to its stop. */
  workerSeconds: number;
  /** The jobs' own run time, summed. */
  jobSeconds: number;
  cost: number;
  scaleUps: number;
  scaleDowns: number;
  directionChanges: number;
  simulatedHours: number;
  /** From the last job's end to the pool's last worker stopping (undefined if it never reached zero). */
  timeToZeroSeconds: number | undefined;
  maxWorkers: number;
  series: SeriesPoint[];
  decisions: Decision[];
}

interface SimWorker {
  requestedAt: number;
  readyAt: number;
  state: 'starting' | 'active' | 'draining' | 'stopped';
  stoppedAt: number | undefined;
  running: number;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

export function simulate(opts: SimulationOptions): SimulationResult {
  const { pool } = opts;
  const dt = opts.stepSeconds ?? 0.25;
  const interval = pool.decisionIntervalSeconds;
  const trace = [...opts.trace].sort((a, b) => a.at - b.at);
  const lastArrival = trace.length ? (trace[trace.length - 1] as TraceJob).at : 0;
  const workers: SimWorker[] = [];
  for (let i = 0; i < (opts.initialWorkers ?? pool.minWorkers); i++) workers.push({ requestedAt: 0, readyAt: 0, state: 'active', stoppedAt: undefined, running: 0 });
  const queue: TraceJob[] = [];
  const running: { end: number; worker: SimWorker; service: number }[] = [];
  const waits: number[] = [];
  const series: SeriesPoint[] = [];
  const decisions: Decision[] = [];
  const samples: PoolSample[] = [];
  let memory: PolicyMemory = EMPTY_MEMORY;
  let next = 0;
  let arrivals = 0;
  let completions = 0;
  let serviceMsSum = 0;
  let lastJobEnd = 0;
  let nextDecision = interval;
  let lastDirection: 'up' | 'down' | undefined;
  let directionChanges = 0;
  let scaleUps = 0;
  let scaleDowns = 0;
  let maxWorkers = 0;
  const live = (): SimWorker[] => workers.filter((w) => w.state !== 'stopped');
  // A pool that never empties would loop for ever: stop an hour of simulated time after the last arrival.
  const endBy = lastArrival + Math.max(3600, pool.policy.idleToZeroSeconds * 4);
  let t = 0;
  for (; t <= endBy; t += dt) {
    for (const w of workers) if (w.state === 'starting' && w.readyAt <= t) w.state = 'active';
    for (let i = running.length - 1; i >= 0; i--) {
      const r = running[i] as (typeof running)[number];
      if (r.end > t) continue;
      running.splice(i, 1);
      r.worker.running--;
      completions++;
      serviceMsSum += r.service * 1000;
      lastJobEnd = Math.max(lastJobEnd, r.end);
    }
    while (next < trace.length && (trace[next] as TraceJob).at <= t) {
      queue.push(trace[next] as TraceJob);
      next++;
      arrivals++;
    }
    for (const w of workers) {
      while (w.state === 'active' && w.running < pool.slotsPerWorker && queue.length > 0) {
        const job = queue.shift() as TraceJob;
        waits.push(t - job.at);
        w.running++;
        running.push({ end: t + job.service, worker: w, service: job.service });
      }
      if (w.state === 'draining' && w.running === 0) {
        w.state = 'stopped';
        w.stoppedAt = t;
      }
    }
    if (t + 1e-9 >= nextDecision) {
      nextDecision += interval;
      const sample: PoolSample = {
        atMs: Math.round(t * 1000),
        queued: queue.length,
        running: running.length,
        arrivals,
        completions,
        serviceMsSum,
        activeWorkers: workers.filter((w) => w.state === 'active').length,
        startingWorkers: workers.filter((w) => w.state === 'starting').length,
        drainingWorkers: workers.filter((w) => w.state === 'draining').length,
      };
      arrivals = 0;
      completions = 0;
      serviceMsSum = 0;
      samples.push(sample);
      while (samples.length > 0 && (samples[0] as PoolSample).atMs < sample.atMs - pool.policy.windowSeconds * 1000) samples.shift();
      const d = decide({ nowMs: sample.atMs, pool, samples, memory });
      memory = d.memory;
      decisions.push(d);
      if (d.desired > d.current) {
        for (let i = d.current; i < d.desired; i++) workers.push({ requestedAt: t, readyAt: t + pool.startupSeconds, state: 'starting', stoppedAt: undefined, running: 0 });
      } else if (d.desired < d.current) {
        // Idle ready workers first, then ones still starting (never useful yet), then the least busy.
        const order = (w: SimWorker): number => (w.state === 'active' && w.running === 0 ? 0 : w.state === 'starting' ? 1 : 2 + w.running);
        const victims = workers.filter((w) => w.state === 'active' || w.state === 'starting').sort((a, b) => order(a) - order(b)).slice(0, d.current - d.desired);
        for (const w of victims) {
          if (w.state === 'starting' || w.running === 0) {
            w.state = 'stopped';
            w.stoppedAt = t;
          } else w.state = 'draining';
        }
      }
      if (d.direction !== 'hold') {
        if (d.direction === 'up') scaleUps++;
        else scaleDowns++;
        if (lastDirection !== undefined && lastDirection !== d.direction) directionChanges++;
        lastDirection = d.direction;
      }
      maxWorkers = Math.max(maxWorkers, live().length);
      series.push({
        t,
        arrivalsPerSecond: sample.arrivals / interval,
        queued: sample.queued,
        running: sample.running,
        workers: sample.activeWorkers + sample.startingWorkers + sample.drainingWorkers,
        desired: d.desired,
      });
    }
    if (next >= trace.length && queue.length === 0 && running.length === 0 && live().length <= pool.minWorkers && t > lastArrival) break;
  }
  const end = Math.min(t, endBy);
  const workerSeconds = workers.reduce((s, w) => s + ((w.stoppedAt ?? end) - w.requestedAt), 0);
  const stops = workers.map((w) => w.stoppedAt ?? Infinity);
  const lastStop = stops.length ? Math.max(...stops) : 0;
  const sortedWaits = [...waits].sort((a, b) => a - b);
  return {
    jobs: trace.length,
    waitP50Seconds: percentile(sortedWaits, 50),
    waitP95Seconds: percentile(sortedWaits, 95),
    waitP99Seconds: percentile(sortedWaits, 99),
    workerSeconds,
    jobSeconds: trace.reduce((s, j) => s + j.service, 0),
    cost: (workerSeconds / 3600) * pool.pricePerHour,
    scaleUps,
    scaleDowns,
    directionChanges,
    simulatedHours: end / 3600,
    timeToZeroSeconds: pool.minWorkers === 0 && Number.isFinite(lastStop) ? Math.max(0, lastStop - lastJobEnd) : undefined,
    maxWorkers,
    series,
    decisions,
  };
}
