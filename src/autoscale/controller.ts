/**
 * The autoscaler's controller loop: every decision interval, the controller holding the store's leader lease
 * (exactly one among those sharing a store; another takes over when it dies) samples each pool — its
 * backlog, running jobs, arrivals and service times, workers active, starting and draining — asks the
 * policy (`decide`, the same code the simulator runs), keeps the decision with its reason, and acts through
 * the pool's provider: scale-out asks for workers; scale-in orders drains (idle workers first, then workers
 * still starting, then the least busy), so a running job is never killed; a drained worker exits by itself
 * and its instance is then released.
 *
 * A pool's workers are those registered with the label `remex-pool=<pool>`: one that joins unasked (more
 * than the provider was told to start, or started by hand) is counted; one asked for that does not register
 * within `registerTimeoutSeconds` is given up (released and counted). Times come from a monotonic clock, so
 * a wall-clock jump moves no cooldown.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { SchedulerObserver } from '../scheduler/observer.js';
import type { FleetStatus, PlatformStatus } from '../scheduler/scheduler.js';
import type { JobRecord, LeaderLease, WorkerRecord } from '../store/ports.js';
import { poolShape } from './config.js';
import type { AutoscaleConfig, PoolConfig } from './config.js';
import { decide, EMPTY_MEMORY } from './policy.js';
import type { Decision, PolicyMemory, PoolSample } from './policy.js';
import type { WorkerProvider } from './provider.js';

/** The label that ties a worker to its pool. */
export const POOL_LABEL = 'remex-pool';
const LEASE_NAME = 'autoscaler';
const KEPT_DECISIONS = 200;
/** A decision as the status shows it: without the remembered sizings (one per interval), which only the policy reads. */
function shown<D extends Decision | undefined>(d: D): D {
  return (d === undefined ? d : { ...d, memory: { ...d.memory, recentNeeds: undefined } }) as D;
}

/** What the controller needs of the scheduler. */
export interface FleetView {
  status(): Promise<{ platforms: PlatformStatus[]; fleet: FleetStatus }>;
  workers(): Promise<WorkerRecord[]>;
  requestDrain(workerId: string): Promise<WorkerRecord>;
}

/** What the controller works through, known once the server around it runs. */
export interface AutoscalerLinks {
  fleet: FleetView;
  /** Running jobs per worker id (the store's). */
  runningByWorker: () => Promise<Map<string, number>>;
  lease: LeaderLease;
  /** The controllers workers should report to. */
  servers: () => readonly string[];
}

export interface AutoscalerOptions {
  config: AutoscaleConfig;
  providers: ReadonlyMap<string, WorkerProvider>;
  logger: Logger;
  /** Milliseconds, monotonic. Default: a monotonic clock started at the wall clock's time. */
  now?: () => number;
}

interface Pending {
  instanceId: string | undefined;
  requestedAtMs: number;
}

interface PoolState {
  config: PoolConfig;
  samples: PoolSample[];
  memory: PolicyMemory;
  pending: Pending[];
  /** Instance ids this controller asked for (to tell the unasked apart). */
  asked: Set<string>;
  /** Instance ids whose worker drained: released once gone. */
  draining: Set<string>;
  decisions: Decision[];
  joinedUnasked: number;
  neverRegistered: number;
  lastDesired: number;
}

/** The autoscaler's state, as `GET /v1/autoscaler` shows it (and metrics may read it). */
export interface AutoscalerState {
  leader: boolean;
  holder: string;
  pools: Array<{
    name: string;
    desired: number;
    active: number;
    starting: number;
    draining: number;
    joinedUnasked: number;
    neverRegistered: number;
    lastDecision: Decision | undefined;
    /** The recent decisions that changed the pool, with their reasons. */
    changes: Decision[];
  }>;
}

function monotonicClock(): () => number {
  const wall = Date.now();
  const start = performance.now();
  return () => wall + (performance.now() - start);
}

export class Autoscaler {
  readonly holder = `autoscaler-${randomUUID().slice(0, 8)}`;
  private readonly now: () => number;
  private readonly pools: PoolState[];
  private readonly counts = new Map<string, { arrivals: number; completions: number; serviceMsSum: number }>();
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private leader = false;
  private closed = false;

  constructor(private readonly opts: AutoscalerOptions) {
    this.now = opts.now ?? monotonicClock();
    this.pools = opts.config.pools.map((config) => ({
      config,
      samples: [],
      memory: EMPTY_MEMORY,
      pending: [],
      asked: new Set(),
      draining: new Set(),
      decisions: [],
      joinedUnasked: 0,
      neverRegistered: 0,
      lastDesired: 0,
    }));
  }

  private bump(platform: string, f: (c: { arrivals: number; completions: number; serviceMsSum: number }) => void): void {
    let c = this.counts.get(platform);
    if (!c) this.counts.set(platform, (c = { arrivals: 0, completions: 0, serviceMsSum: 0 }));
    f(c);
  }

  /** Counts arrivals and completions (with their run times) per platform: give it to the scheduler. */
  readonly observer: SchedulerObserver = {
    jobQueued: (job: JobRecord, cause) => {
      if (cause === 'submitted') this.bump(job.platform, (c) => c.arrivals++);
    },
    jobLeased: (job: JobRecord, how) => {
      if (how === 'handed') this.bump(job.platform, (c) => c.arrivals++);
    },
    jobFinished: (job: JobRecord) => {
      const ms = job.result?.wallTimeMs;
      if (typeof ms === 'number') this.bump(job.platform, (c) => {
        c.completions++;
        c.serviceMsSum += ms;
      });
    },
  };

  private links: AutoscalerLinks | undefined;

  /** Starts deciding every interval, through `links`. */
  start(links: AutoscalerLinks): void {
    this.links = links;
    const every = this.opts.config.decisionIntervalSeconds * 1000;
    this.timer = setInterval(() => void this.tick(), every);
    this.timer.unref();
    void this.tick();
  }

  /** One round of decisions (the timer calls it; tests may too). Never throws: failures are logged. */
  tick(): Promise<void> {
    this.ticking ??= this.round()
      .catch((err: unknown) => this.opts.logger.warn({ err }, 'autoscaler: round failed; trying again at the next interval'))
      .finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  private async round(): Promise<void> {
    if (this.closed) return;
    const nowMs = this.now();
    const wasLeader = this.leader;
    this.leader = await this.link.lease.tryAcquire(LEASE_NAME, this.holder, this.opts.config.leaderLeaseSeconds * 1000, nowMs);
    if (this.leader !== wasLeader) this.opts.logger.info({ holder: this.holder }, this.leader ? 'autoscaler: leading (this controller scales)' : 'autoscaler: standing by (another controller scales)');
    const counts = new Map(this.counts);
    this.counts.clear();
    if (!this.leader) return;
    const [status, workers, byWorker] = await Promise.all([this.link.fleet.status(), this.link.fleet.workers(), this.link.runningByWorker()]);
    for (const pool of this.pools) await this.decideFor(pool, nowMs, status.platforms, workers, byWorker, counts);
  }

  private queuedFor(pool: PoolState, platforms: readonly PlatformStatus[], nowMs: number): number {
    let queued = 0;
    for (const platform of pool.config.platforms) {
      const q = platforms.find((p) => p.platform === platform)?.queued ?? 0;
      if (q === 0) continue;
      if (!pool.config.emulated) {
        queued += q;
        continue;
      }
      // Native first: an emulating pool takes a platform's backlog only as the configuration says.
      const rule = this.opts.config.nativeFirst.find((n) => n.platform === platform);
      const native = this.pools.find((p) => !p.config.emulated && p.config.platforms.includes(platform));
      if (!rule || !native) {
        queued += q;
        continue;
      }
      if (rule.whileNativeStarts === 'wait') continue;
      const nativeActive = native.samples[native.samples.length - 1]?.activeWorkers ?? 0;
      const serviceS = native.config.policy.defaultServiceSeconds;
      const oldestStart = native.pending.reduce((m, p) => Math.min(m, p.requestedAtMs), Infinity);
      const startLeftS = Number.isFinite(oldestStart) ? Math.max(0, native.config.startupSeconds - (nowMs - oldestStart) / 1000) : native.config.startupSeconds;
      const expectedWaitS = nativeActive > 0 ? (q * serviceS) / (nativeActive * native.config.slotsPerWorker) : startLeftS;
      if (expectedWaitS > rule.emulateAfterWaitSeconds) queued += q;
    }
    return queued;
  }

  private async decideFor(
    pool: PoolState,
    nowMs: number,
    platforms: readonly PlatformStatus[],
    workers: readonly WorkerRecord[],
    byWorker: ReadonlyMap<string, number>,
    counts: ReadonlyMap<string, { arrivals: number; completions: number; serviceMsSum: number }>,
  ): Promise<void> {
    const cfg = pool.config;
    const mine = workers.filter((w) => w.labels[POOL_LABEL] === cfg.name);
    const live = mine.filter((w) => w.state !== 'gone');
    const active = live.filter((w) => w.state === 'active' && !w.drainRequested);
    const draining = live.filter((w) => w.state === 'draining' || w.drainRequested);
    // Registrations settle what was asked: by instance id, else (a provider that names none) any unasked one.
    const registered = new Set(mine.map((w) => w.instanceId).filter((i): i is string => i !== null));
    pool.pending = pool.pending.filter((p) => p.instanceId === undefined || !registered.has(p.instanceId));
    for (const w of mine) {
      if (w.instanceId !== null && pool.asked.has(w.instanceId)) continue;
      const key = w.instanceId ?? w.id;
      if (pool.asked.has(key)) continue;
      pool.asked.add(key);
      const anonymous = pool.pending.findIndex((p) => p.instanceId === undefined);
      if (anonymous >= 0) pool.pending.splice(anonymous, 1);
      else {
        pool.joinedUnasked++;
        this.opts.logger.info({ pool: cfg.name, workerId: w.id, instanceId: w.instanceId }, 'autoscaler: a worker joined unasked: counted');
      }
    }
    const expired = pool.pending.filter((p) => nowMs - p.requestedAtMs > cfg.registerTimeoutSeconds * 1000);
    if (expired.length) {
      pool.neverRegistered += expired.length;
      pool.pending = pool.pending.filter((p) => !expired.includes(p));
      this.opts.logger.warn({ pool: cfg.name, count: expired.length, timeoutSeconds: cfg.registerTimeoutSeconds }, 'autoscaler: asked-for workers never registered: given up');
      const ids = expired.map((p) => p.instanceId).filter((i): i is string => i !== undefined);
      await this.provider(cfg).release({ pool: cfg.name, instanceIds: ids });
    }
    // Drained workers that left: their instances go back.
    const gone = mine.filter((w) => w.state === 'gone' && w.instanceId !== null && pool.draining.has(w.instanceId));
    if (gone.length) {
      const ids = gone.map((w) => w.instanceId as string);
      for (const id of ids) pool.draining.delete(id);
      await this.provider(cfg).release({ pool: cfg.name, instanceIds: ids });
    }

    const c = cfg.platforms.reduce(
      (sum, p) => {
        const k = counts.get(p);
        return k ? { arrivals: sum.arrivals + k.arrivals, completions: sum.completions + k.completions, serviceMsSum: sum.serviceMsSum + k.serviceMsSum } : sum;
      },
      { arrivals: 0, completions: 0, serviceMsSum: 0 },
    );
    const sample: PoolSample = {
      atMs: nowMs,
      queued: this.queuedFor(pool, platforms, nowMs),
      running: live.reduce((n, w) => n + (byWorker.get(w.id) ?? 0), 0),
      ...c,
      activeWorkers: active.length,
      startingWorkers: pool.pending.length,
      drainingWorkers: draining.length,
    };
    pool.samples.push(sample);
    const windowMs = cfg.policy.windowSeconds * 1000;
    while (pool.samples.length > 0 && (pool.samples[0] as PoolSample).atMs < nowMs - windowMs) pool.samples.shift();
    const d = decide({ nowMs, pool: poolShape(this.opts.config, cfg), samples: pool.samples, memory: pool.memory });
    pool.memory = d.memory;
    pool.lastDesired = d.desired;
    pool.decisions.push(d);
    if (pool.decisions.length > KEPT_DECISIONS) pool.decisions.shift();
    this.opts.logger[d.direction === 'hold' ? 'debug' : 'info']({ pool: cfg.name, desired: d.desired, current: d.current, direction: d.direction, reason: d.reason }, 'autoscaler: decision');
    if (d.desired > d.current) await this.scaleOut(pool, d.desired - d.current, nowMs);
    else if (d.desired < d.current) await this.scaleIn(pool, d.current - d.desired, active, byWorker);
  }

  private get link(): AutoscalerLinks {
    if (!this.links) throw new Error('autoscaler not started');
    return this.links;
  }

  private provider(cfg: PoolConfig): WorkerProvider {
    return this.opts.providers.get(cfg.name) as WorkerProvider;
  }

  private async scaleOut(pool: PoolState, count: number, nowMs: number): Promise<void> {
    const cfg = pool.config;
    const started = await this.provider(cfg).scaleOut({
      pool: cfg.name,
      count,
      platforms: cfg.platforms,
      slotsPerWorker: cfg.slotsPerWorker,
      labels: { ...cfg.labels, [POOL_LABEL]: cfg.name },
      servers: this.link.servers(),
    });
    for (const s of started) {
      pool.asked.add(s.instanceId);
      pool.pending.push({ instanceId: s.instanceId, requestedAtMs: nowMs });
    }
    // A provider that names no instances: wait for that many registrations (more are counted as unasked).
    if (started.length === 0) for (let i = 0; i < count; i++) pool.pending.push({ instanceId: undefined, requestedAtMs: nowMs });
    if (started.length > 0 && started.length !== count) this.opts.logger.warn({ pool: cfg.name, asked: count, started: started.length }, 'autoscaler: the provider started another number of workers than asked');
  }

  private async scaleIn(pool: PoolState, count: number, active: readonly WorkerRecord[], byWorker: ReadonlyMap<string, number>): Promise<void> {
    const cfg = pool.config;
    // Idle workers first, then workers still starting (no use yet, nothing to lose), then the least busy.
    const idle = active.filter((w) => (byWorker.get(w.id) ?? 0) === 0);
    let left = count;
    for (const w of idle.slice(0, left)) await this.drain(pool, w);
    left -= Math.min(left, idle.length);
    const starting = pool.pending.splice(0, left);
    left -= starting.length;
    const startingIds = starting.map((p) => p.instanceId).filter((i): i is string => i !== undefined);
    if (startingIds.length) await this.provider(cfg).release({ pool: cfg.name, instanceIds: startingIds });
    const busy = active.filter((w) => (byWorker.get(w.id) ?? 0) > 0).sort((a, b) => (byWorker.get(a.id) ?? 0) - (byWorker.get(b.id) ?? 0));
    for (const w of busy.slice(0, left)) await this.drain(pool, w);
  }

  private async drain(pool: PoolState, w: WorkerRecord): Promise<void> {
    try {
      await this.link.fleet.requestDrain(w.id);
      if (w.instanceId !== null) pool.draining.add(w.instanceId);
    } catch (err) {
      this.opts.logger.warn({ err, workerId: w.id }, 'autoscaler: cannot order a drain');
    }
  }

  state(): AutoscalerState {
    return {
      leader: this.leader,
      holder: this.holder,
      pools: this.pools.map((p) => {
        const last = p.samples[p.samples.length - 1];
        return {
          name: p.config.name,
          desired: p.lastDesired,
          active: last?.activeWorkers ?? 0,
          starting: p.pending.length,
          draining: last?.drainingWorkers ?? 0,
          joinedUnasked: p.joinedUnasked,
          neverRegistered: p.neverRegistered,
          lastDecision: shown(p.decisions[p.decisions.length - 1]),
          changes: p.decisions.filter((d) => d.direction !== 'hold').slice(-50).map(shown),
        };
      }),
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.ticking;
    if (this.leader && this.links) await this.links.lease.release(LEASE_NAME, this.holder).catch(() => undefined);
    await Promise.all([...new Set(this.opts.providers.values())].map((p) => p.close()));
  }
}
