/**
 * The scheduler: the one place where executions are submitted, merged, cached, queued per platform,
 * leased to workers, completed and cancelled, whichever front door they came through.
 *
 * Guarantees: at-least-once execution with exactly one committed result per job (completion is
 * compare-and-set on attempt and lease owner); queue time never counts against the execution timeout;
 * queued and running jobs live in the store, so they survive a restart; a job whose worker dies is
 * requeued when its lease expires, or failed as lost after `maxAttempts`.
 */
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import type { Logger } from 'pino';
import type { Digest } from '../core/digest.js';
import { ConflictError, isRemexError, MissingBlobsError, NotFoundError, RemexError, UnavailableError, UnsupportedPlatformError } from '../core/errors.js';
import { DEFAULT_FAILSAFE_MS, failsafeDeadlineMs, isCacheable, isTerminal } from '../core/model.js';
import type { ExecutionSpec, JobFailure, RunReport } from '../core/model.js';
import { DEFAULT_LEASE_TIMEOUT_MS, DEFAULT_MAX_ATTEMPTS } from '../core/defaults.js';
import { checkLabels } from '../core/labels.js';
import { fanOut } from '../core/observers.js';
import { canonicalPlatform } from '../core/platform.js';
import type { HeldLease, JobQuery, JobRecord, LeaseExpiry, Outcome, PlatformOffer, Store, WorkerRecord } from '../store/ports.js';
import type { EventBus, PublishOptions } from '../events/event-bus.js';
import type { WorkerEventState } from '../events/bus-events.js';
import type { SchedulerObserver } from './observer.js';
import type {
  CompleteAndLeaseReply,
  Completion,
  HeartbeatReply,
  Lease,
  WorkerLink,
  WorkerRegistration,
  WorkerSession,
} from './worker-link.js';
import { completeThenLease, LIVE_LOGS_FEATURE, WORKER_PROTOCOL_FEATURES } from './worker-link.js';
import type { LogAck, LogChunk } from './worker-link.js';
import { leasesHeld } from './log-leases.js';

/** A worker's price per hour, and whose it is: the worker's own (`--price-per-hour`) or its platform's (`--platform-price`). */
export interface WorkerPrice {
  perHour: number;
  from: 'worker' | 'platform';
}

/** The part of the blob store the scheduler needs: whether inputs and cached outputs still exist. */
export interface BlobPresence {
  findMissing(digests: readonly Digest[]): Promise<Digest[]>;
}

export interface SchedulerOptions {
  leaseTimeoutMs: number;
  heartbeatIntervalMs: number;
  /** Attempts a job gets before it is failed as lost. */
  maxAttempts: number;
  /** A worker silent this long is declared gone and its leases are released at once. */
  workerSilenceMs: number;
  reaperIntervalMs: number;
  /** Platforms accepted even before any worker has offered them (workers expected to join). */
  acceptPlatforms: readonly string[];
  /** A job's failsafe when its spec has none: past max-runtime + this, the failsafe layers end it. */
  failsafeMs: number;
  /** Price per hour by platform, for results of workers that report none (the operator's unit). */
  platformPrices: Readonly<Record<string, number>>;
}

/** Running jobs the server's failsafe layer looks at in one reaper pass, at most. */
const OVERDUE_BATCH = 100;

/** What the scheduler reports to: its log, and the observers of metrics, timelines and scaling. */
export interface SchedulerObservation {
  logger?: Logger;
  observers?: readonly SchedulerObserver[];
}

/** The lease reaper's longest pause while it keeps failing (a database outage, say). */
export const MAX_REAPER_BACKOFF_MS = 30_000;

export const DEFAULT_SCHEDULER_OPTIONS: Readonly<SchedulerOptions> = Object.freeze({
  leaseTimeoutMs: DEFAULT_LEASE_TIMEOUT_MS,
  heartbeatIntervalMs: 2_000,
  maxAttempts: DEFAULT_MAX_ATTEMPTS,
  workerSilenceMs: 15_000,
  reaperIntervalMs: 1_000,
  acceptPlatforms: [],
  failsafeMs: DEFAULT_FAILSAFE_MS,
  platformPrices: {},
});

export interface SubmitRequest {
  /** Cache and merge key, computed by the front door from the action it received. */
  actionDigest: Digest;
  instance?: string;
  spec: ExecutionSpec;
  priority?: number;
  skipCacheLookup?: boolean;
  /** The submitter's name and labels: a named or labelled job is its own, never merged into another. */
  name?: string;
  labels?: Record<string, string>;
  /** Run at most once: a lost worker fails it as LOST instead of running it again. */
  noRetry?: boolean;
  /** Where to POST the final result. */
  notifyUrl?: string;
}

export interface SubmitResult {
  job: JobRecord;
  /** Answered from the action cache. */
  cached: boolean;
  /** Joined an identical job already queued or running. */
  merged: boolean;
}

export interface PlatformStatus {
  platform: string;
  /** True when only emulating workers serve it. */
  emulated: boolean;
  workers: number;
  /** Slots that can take this platform's jobs. */
  slots: number;
  freeSlots: number;
  /**
   * Of `slots`, those of workers that serve other platforms too: they show under each of those platforms
   * as well, so summing `slots` over platforms counts them more than once (the fleet's totals do not).
   */
  sharedSlots: number;
  queued: number;
  running: number;
}

/** The whole fleet, each worker counted once whatever the number of platforms it serves. */
export interface FleetStatus {
  workers: number;
  drainingWorkers: number;
  slots: number;
  freeSlots: number;
  queued: number;
  running: number;
}

interface Waiter {
  readonly workerId: string;
  readonly platforms: readonly string[];
  /** Ends the wait: the lease call looks for work again. */
  wake(): void;
  /** Ends the wait with a job handed to it straight from a submit. */
  hand(leases: Lease[]): void;
  /** Taken by a submit that is inserting a job for it: its timeout then waits for the hand-over. */
  reserved: boolean;
}

type Clock = () => number;

const OFFERS_CACHE_MS = 1_000;

export class Scheduler implements WorkerLink {
  private readonly opts: SchedulerOptions;
  private readonly waiters = new Set<Waiter>();
  private readonly liveWorkers = new Map<string, WorkerRecord>();
  private readonly cancelHooks = new Map<string, (jobId: string) => void>();
  private reaper: NodeJS.Timeout | undefined;
  private reaperStarted = false;
  private readonly logger: Logger;
  private readonly observer: SchedulerObserver;
  /** Bumped whenever work may have appeared, so a lease never sleeps through a wake-up it raced with. */
  private workSeq = 0;
  /**
   * Platforms known to have no queued job that no worker here was woken for: a claim took fewer jobs than
   * it asked for, and no wake-up came meanwhile. A lease call for these platforms only waits — the claim
   * it would open with would find nothing (on a busy controller, most calls carry results and would pay
   * one empty claim each). A wake-up that reaches no waiting worker, a full claim, a failed claim, or a
   * bus that may have lost notices takes a platform out again; so does nothing else need to.
   */
  private readonly nothingUnattended = new Set<string>();
  private offersCache: { offers: PlatformOffer[]; expiresAtMs: number } | undefined;
  /** Set by close(): parked leases then return [] instead of parking again. */
  private closed = false;
  private readonly stopWatchingQueue: () => void;

  constructor(
    private readonly store: Store,
    private readonly blobs: BlobPresence,
    readonly events: EventBus,
    opts: Partial<SchedulerOptions> = {},
    private readonly now: Clock = Date.now,
    observation: SchedulerObservation = {},
  ) {
    this.logger = observation.logger ?? pino({ level: 'silent' });
    this.observer = fanOut(observation.observers ?? [], (err, method) => this.logger.error({ err, method }, 'a scheduler observer failed'));
    const merged = { ...DEFAULT_SCHEDULER_OPTIONS, ...opts };
    // Compiled once: a malformed platform is a start-up error, not a failure of every submit.
    this.opts = {
      ...merged,
      acceptPlatforms: merged.acceptPlatforms.map(canonicalPlatform),
      platformPrices: Object.fromEntries(Object.entries(merged.platformPrices).map(([p, price]) => [canonicalPlatform(p), price])),
    };
    // With a bus shared by several controllers, a job queued (or requeued) on another one must wake a
    // worker long-polling here. A spurious wake-up costs one empty claim.
    this.stopWatchingQueue = events.onQueuedElsewhere((platform) => {
      if (platform !== null) return void this.wakeFor(platform);
      // Notices may have been lost: every lease call looks again, and one waiting worker per platform
      // looks now (one that finds a full batch leaves the platform marked for the others).
      this.nothingUnattended.clear();
      for (const p of new Set([...this.waiters].flatMap((w) => w.platforms))) this.wakeFor(p);
    });
  }

  /** Starts the lease reaper. Leases held by earlier in-process workers (`ownerPrefix`) are released at once. */
  async start(opts: { releaseOwnerPrefix?: string } = {}): Promise<void> {
    if (opts.releaseOwnerPrefix) {
      this.publishExpiry(await this.store.jobs.releaseLeasesOf({ prefix: opts.releaseOwnerPrefix }, this.now(), this.opts.maxAttempts));
    }
    if (this.reaperStarted) return;
    this.reaperStarted = true;
    this.scheduleReap(this.opts.reaperIntervalMs, 0);
  }

  /**
   * One pass of the lease reaper after `delayMs`, then the next. While it fails (the store unreachable),
   * it says so and waits longer each time, up to {@link MAX_REAPER_BACKOFF_MS}: expiry resumes with the store.
   */
  private scheduleReap(delayMs: number, failures: number): void {
    if (this.closed) return;
    this.reaper = setTimeout(() => {
      void this.reap().then(
        () => {
          if (failures > 0) this.logger.info({ after: failures }, 'lease reaper works again');
          this.scheduleReap(this.opts.reaperIntervalMs, 0);
        },
        (err: unknown) => {
          const consecutive = failures + 1;
          const retryInMs = Math.min(MAX_REAPER_BACKOFF_MS, this.opts.reaperIntervalMs * 2 ** Math.min(consecutive, 16));
          this.logger.error({ err, consecutiveFailures: consecutive, retryInMs }, 'lease reaper failed: leases do not expire and lost workers keep their jobs until it works again');
          this.observer.backgroundFailed?.('lease-reaper', err, consecutive, retryInMs);
          this.scheduleReap(retryInMs, consecutive);
        },
      );
    }, delayMs);
    this.reaper.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stopWatchingQueue();
    if (this.reaper) clearTimeout(this.reaper);
    for (const w of [...this.waiters]) w.wake();
  }

  get options(): Readonly<SchedulerOptions> {
    return this.opts;
  }

  // ---- front-door side --------------------------------------------------------------------------

  async submit(req: SubmitRequest): Promise<SubmitResult> {
    const platform = canonicalPlatform(req.spec.platform);
    await this.assertServable(platform);
    const spec: ExecutionSpec = { ...req.spec, platform };
    const inputs = spec.stdinDigest ? [spec.inputRootDigest, spec.stdinDigest] : [spec.inputRootDigest];
    const missing = await this.blobs.findMissing(inputs);
    if (missing.length > 0) throw new MissingBlobsError(missing);

    const instance = req.instance ?? '';
    const newJob = {
      id: randomUUID(),
      actionDigest: req.actionDigest,
      instance,
      priority: req.priority ?? 0,
      spec,
      nowMs: this.now(),
      // A job with a name, labels, a no-retry wish or a webhook is the submitter's own: never merged.
      mergeable: !spec.doNotCache && req.name === undefined && req.labels === undefined && !req.noRetry && req.notifyUrl === undefined,
      ...(req.name !== undefined ? { name: req.name } : {}),
      ...(req.labels !== undefined ? { labels: req.labels } : {}),
      ...(req.noRetry ? { noRetry: true } : {}),
      ...(req.notifyUrl !== undefined ? { notifyUrl: req.notifyUrl } : {}),
    };
    if (!spec.doNotCache && !req.skipCacheLookup) {
      const hit = await this.lookupCache(instance, req.actionDigest);
      if (hit) {
        const job = await this.store.jobs.insertCached(newJob, hit);
        this.observer.jobCached?.(job);
        this.publish(job);
        return { job, cached: true, merged: false };
      }
    }
    // A worker waiting for this platform, where no older job waits unattended, gets the job in the insert
    // itself: no claim, no second round trip to the store.
    const taker = this.reserveWaiter(platform);
    let enqueued: { job: JobRecord; merged: boolean };
    try {
      enqueued = await this.store.jobs.enqueue(taker ? { ...newJob, leaseTo: { workerId: taker.workerId, leaseExpiresAtMs: newJob.nowMs + this.opts.leaseTimeoutMs } } : newJob);
    } catch (err) {
      taker?.wake();
      throw err;
    }
    const { job, merged } = enqueued;
    if (taker && !merged) {
      taker.hand([this.leaseOf(job)]);
      this.observer.jobLeased?.(job, 'handed');
      this.publish(job);
    } else {
      // A reserved worker whose job merged into another looks for work again.
      taker?.wake();
      if (merged) this.observer.jobMerged?.(job);
      else {
        this.observer.jobQueued?.(job, 'submitted');
        this.publish(job, { workerWoken: this.wakeFor(job.platform) });
      }
    }
    return { job, cached: false, merged };
  }

  /** A cached result, only while every blob it names still exists; a broken entry is dropped. */
  async lookupCache(instance: string, actionDigest: Digest): Promise<RunReport | undefined> {
    const hit = await this.store.actionCache.get(instance, actionDigest);
    if (!hit) return undefined;
    const needed = [
      hit.stdout.digest,
      hit.stderr.digest,
      ...hit.outputFiles.map((f) => f.digest),
      ...(hit.outputDirectories ?? []).map((d) => d.treeDigest),
    ];
    if ((await this.blobs.findMissing(needed)).length > 0) {
      await this.store.actionCache.delete(instance, actionDigest);
      return undefined;
    }
    return hit;
  }

  async get(id: string): Promise<JobRecord | undefined> {
    return this.store.jobs.get(id);
  }

  async list(query: JobQuery): Promise<JobRecord[]> {
    return this.store.jobs.list(query);
  }

  async cancel(id: string): Promise<JobRecord> {
    const before = await this.store.jobs.get(id);
    if (!before) throw new NotFoundError(`no execution ${id}`);
    if (isTerminal(before.state)) return before;
    const job = await this.store.jobs.cancel(id, this.now());
    if (!job) throw new NotFoundError(`no execution ${id}`);
    if (job.state === 'cancelled') {
      this.observer.jobFinished?.(job);
      this.publish(job);
    } else if (job.state === 'running' && job.leaseOwner) this.cancelHooks.get(job.leaseOwner)?.(job.id);
    return job;
  }

  /** Resolves with the job once it is terminal; with its current state when `signal` aborts first. */
  async waitForTerminal(id: string, signal?: AbortSignal): Promise<JobRecord> {
    let resolveDone!: (job: JobRecord) => void;
    const done = new Promise<JobRecord>((resolve) => (resolveDone = resolve));
    const unsubscribe = this.events.subscribe(id, (job) => {
      if (isTerminal(job.state)) resolveDone(job);
    });
    let onAbort: (() => void) | undefined;
    try {
      const current = await this.store.jobs.get(id);
      if (!current) throw new NotFoundError(`no execution ${id}`);
      if (isTerminal(current.state)) return current;
      if (signal) {
        onAbort = () =>
          void this.store.jobs.get(id).then(
            (j) => resolveDone(j ?? current),
            () => resolveDone(current),
          );
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
      }
      return await done;
    } finally {
      unsubscribe();
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    }
  }

  async platforms(): Promise<PlatformStatus[]> {
    return (await this.status()).platforms;
  }

  /** Per platform, and for the fleet as a whole, from one reading of the registry and the queue. */
  async status(): Promise<{ platforms: PlatformStatus[]; fleet: FleetStatus }> {
    const [offers, workers, depths, running, byWorker] = await Promise.all([
      this.servablePlatforms(),
      this.store.workers.list(),
      this.store.jobs.queueDepths(),
      this.store.jobs.runningCounts(),
      this.store.jobs.runningByWorker(),
    ]);
    const live = workers.filter((w) => w.state !== 'gone');
    // A draining worker finishes what it holds and takes nothing new: none of its slots is free.
    const busyOf = (w: WorkerRecord): number => (w.state === 'draining' ? w.slots : Math.min(w.slots, byWorker.get(w.id) ?? 0));
    const sum = (ws: readonly WorkerRecord[], f: (w: WorkerRecord) => number): number => ws.reduce((total, w) => total + f(w), 0);
    const platforms = offers
      .map((offer) => {
        const serving = live.filter((w) => w.platforms.some((p) => p.platform === offer.platform));
        const slots = sum(serving, (w) => w.slots);
        const nativeLive = serving.some((w) => w.platforms.some((p) => p.platform === offer.platform && !p.emulated));
        return {
          platform: offer.platform,
          emulated: serving.length > 0 ? !nativeLive : offer.emulated,
          workers: serving.length,
          slots,
          freeSlots: Math.max(0, slots - sum(serving, busyOf)),
          sharedSlots: sum(serving, (w) => (new Set(w.platforms.map((p) => p.platform)).size > 1 ? w.slots : 0)),
          queued: depths.get(offer.platform) ?? 0,
          running: running.get(offer.platform) ?? 0,
        };
      })
      .sort((a, b) => a.platform.localeCompare(b.platform));
    const slots = sum(live, (w) => w.slots);
    const fleet: FleetStatus = {
      workers: live.length,
      drainingWorkers: live.filter((w) => w.state === 'draining').length,
      slots,
      freeSlots: Math.max(0, slots - sum(live, busyOf)),
      queued: [...depths.values()].reduce((a, b) => a + b, 0),
      running: [...running.values()].reduce((a, b) => a + b, 0),
    };
    return { platforms, fleet };
  }

  private async servablePlatforms(): Promise<PlatformOffer[]> {
    // Asked on every submit; the registry changes rarely. Registrations here invalidate it at once, and
    // the short lifetime bounds staleness for registrations another controller sees first.
    const nowMs = this.now();
    if (this.offersCache && nowMs < this.offersCache.expiresAtMs) return [...this.offersCache.offers];
    const offers = await this.store.workers.offeredPlatforms();
    for (const platform of this.opts.acceptPlatforms) {
      if (!offers.some((o) => o.platform === platform)) offers.push({ platform, emulated: false });
    }
    this.offersCache = { offers, expiresAtMs: nowMs + OFFERS_CACHE_MS };
    return [...offers];
  }

  private async assertServable(platform: string): Promise<void> {
    if ((await this.servablePlatforms()).some((o) => o.platform === platform)) return;
    // Before refusing, look past the cache: a worker may just have registered on another controller.
    this.offersCache = undefined;
    const offers = await this.servablePlatforms();
    if (offers.some((o) => o.platform === platform)) return;
    const known = offers.map((o) => o.platform).sort();
    throw new UnsupportedPlatformError(
      `no worker serves platform ${platform}${known.length ? ` (served: ${known.join(', ')})` : ' (no worker has registered)'}`,
      { details: { platform, served: known } },
    );
  }

  // ---- worker side (WorkerLink) -----------------------------------------------------------------

  async register(reg: WorkerRegistration): Promise<WorkerSession> {
    checkLabels(reg.labels ?? {}, 'worker labels');
    const nowMs = this.now();
    const record: WorkerRecord = {
      id: reg.id ?? `w-${randomUUID()}`,
      name: reg.name,
      platforms: reg.platforms.map((p) => ({ platform: canonicalPlatform(p.platform), emulated: p.emulated })),
      slots: reg.slots,
      state: 'active',
      registeredAtMs: nowMs,
      lastSeenAtMs: nowMs,
      labels: { ...reg.labels },
      instanceId: reg.instanceId ?? null,
      drainRequested: false,
      ...(reg.pricePerHour !== undefined ? { pricePerHour: reg.pricePerHour } : {}),
    };
    await this.store.workers.upsert(record);
    this.offersCache = undefined;
    this.liveWorkers.set(record.id, record);
    this.observer.workerRegistered?.(record);
    this.workerEvent(record.id, 'registered');
    // Jobs queued before this worker existed can now run.
    for (const p of record.platforms) this.wakeFor(p.platform);
    return { workerId: record.id, leaseTimeoutMs: this.opts.leaseTimeoutMs, heartbeatIntervalMs: this.opts.heartbeatIntervalMs, features: [...WORKER_PROTOCOL_FEATURES, ...(this.logIntake ? [LIVE_LOGS_FEATURE] : [])] };
  }

  async lease(workerId: string, max: number, waitMs: number, signal?: AbortSignal): Promise<Lease[]> {
    const worker = await this.activeWorker(workerId);
    if (worker.state === 'draining') return [];
    const platforms = worker.platforms.map((p) => p.platform);
    const deadline = this.now() + waitMs;
    // A wake-up stands for a queued job that no other worker was woken for (here or on another
    // controller): a lease that ends without claiming after one passes it on, or the job would wait for
    // some worker's next poll. A spurious pass costs one empty claim.
    const passOnWake = () => {
      for (const p of platforms) this.wakeFor(p);
    };
    for (let waited = false; ; ) {
      // A worker that is draining, or was declared gone while it waited, takes nothing more.
      const current = this.liveWorkers.get(workerId);
      if (!current || current.state !== 'active') {
        if (waited) passOnWake();
        return [];
      }
      // After a wait (woken or timed out) it always looks; before, only where something may be queued.
      if (waited || !platforms.every((p) => this.nothingUnattended.has(p))) {
        const seqBefore = this.workSeq;
        const claimed = await this.claimFor(workerId, platforms, max);
        if (claimed.length < max && seqBefore === this.workSeq) for (const p of platforms) this.nothingUnattended.add(p);
        if (claimed.length > 0) {
          for (const job of claimed) {
            this.observer.jobLeased?.(job, 'claimed');
            this.publish(job);
          }
          return claimed.map((job) => this.leaseOf(job));
        }
        if (seqBefore !== this.workSeq && deadline > this.now() && !signal?.aborted && !this.closed) continue;
      }
      const remaining = deadline - this.now();
      if (remaining <= 0 || signal?.aborted || this.closed) return [];
      const handed = await this.waitForWork(workerId, platforms, remaining, signal);
      if (handed) return handed;
      waited = true;
      if (signal?.aborted || this.closed) {
        if (!this.closed) passOnWake();
        return [];
      }
    }
  }

  private async claimFor(workerId: string, platforms: readonly string[], max: number): Promise<JobRecord[]> {
    try {
      const claimed = await this.store.jobs.claim({ platforms, workerId, max, leaseMs: this.opts.leaseTimeoutMs, nowMs: this.now() });
      // A full claim may have left more behind.
      if (claimed.length >= max) for (const p of platforms) this.nothingUnattended.delete(p);
      return claimed;
    } catch (err) {
      // What it would have taken is still queued.
      for (const p of platforms) this.nothingUnattended.delete(p);
      throw err;
    }
  }

  /** Where running jobs' log chunks go (logs/log-intake.ts); set by the composition root. Without it no live logs are offered. */
  logIntake: { append(chunks: readonly LogChunk[]): Promise<LogAck[]> } | undefined;

  /**
   * A worker's live-log chunks, stored and published by the log intake: only those of runs whose lease the
   * worker holds (one read of each job named); the others' streams are answered `leaseLost`.
   */
  async appendLogs(workerId: string, chunks: readonly LogChunk[]): Promise<LogAck[]> {
    if (!this.logIntake) throw new UnavailableError('this server keeps no live logs');
    const held = await leasesHeld(this.store.jobs, workerId, chunks);
    const mine: LogChunk[] = [];
    const lost = new Map<string, LogAck>(); // one answer per stream refused
    for (const c of chunks) {
      if (held.has(`${c.jobId}\n${c.attempt}`)) mine.push(c);
      else lost.set(`${c.jobId}\n${c.attempt}\n${c.stream}`, { jobId: c.jobId, attempt: c.attempt, stream: c.stream, storedBytes: 0, leaseLost: true });
    }
    const acks = mine.length > 0 ? await this.logIntake.append(mine) : [];
    return [...acks, ...lost.values()];
  }

  async heartbeat(workerId: string, draining: boolean, held?: readonly HeldLease[]): Promise<HeartbeatReply> {
    const nowMs = this.now();
    const touched = await this.store.workers.touch(workerId, nowMs, draining ? 'draining' : undefined);
    if (!touched) {
      this.liveWorkers.delete(workerId);
      // A worker declared gone lost its leases with it: whatever it still runs is no longer its to run.
      return { cancel: (held ?? []).map((h) => h.jobId), known: false };
    }
    const live = this.liveWorkers.get(workerId);
    if (live && draining) {
      if (live.state !== 'draining') {
        this.observer.workerDraining?.(workerId);
        this.workerEvent(workerId, 'draining');
      }
      live.state = 'draining';
      // Its waiting lease call ends now, with the settlements of any results it carried.
      for (const w of [...this.waiters]) if (w.workerId === workerId) w.wake();
    }
    const { cancelRequested, renewedIds } = await this.store.jobs.renewLeases(workerId, nowMs + this.opts.leaseTimeoutMs, held);
    this.publishProgress(held, renewedIds);
    // A lease it holds that was not renewed is no longer its (requeued after it went quiet, emergency-stopped
    // by the failsafe layer): it stops that run now rather than finish a result nobody will take.
    const renewed = new Set(renewedIds);
    const revoked = (held ?? []).filter((h) => !renewed.has(h.jobId)).map((h) => h.jobId);
    const cancel = revoked.length > 0 ? [...cancelRequested, ...revoked] : cancelRequested;
    // A drain ordered on any controller reaches the worker here, until it says it drains.
    return { cancel, known: true, ...(touched.drainRequested && !draining ? { drain: true } : {}) };
  }

  /**
   * Orders a worker to drain (scale-in, blue/green): at its next heartbeat it stops taking jobs, finishes
   * and commits the ones it holds, unregisters and stops. The order is stored, so it reaches the worker
   * through whichever controller it talks to, and stands if it registers again.
   */
  async requestDrain(workerId: string): Promise<WorkerRecord> {
    if (!(await this.store.workers.requestDrain(workerId))) {
      throw new NotFoundError(`no live worker ${workerId}`, { details: { workerId } });
    }
    this.logger.info({ workerId }, 'drain requested');
    return (await this.store.workers.get(workerId)) as WorkerRecord;
  }

  /**
   * Withdraws a drain order the worker has not acted on yet: it goes on taking jobs. A worker that already
   * drains, or has left, cannot be turned back (FAILED_PRECONDITION); an unknown one is NOT_FOUND.
   */
  async cancelDrain(workerId: string): Promise<WorkerRecord> {
    if (!(await this.store.workers.cancelDrain(workerId))) {
      const worker = await this.store.workers.get(workerId);
      if (!worker) throw new NotFoundError(`no worker ${workerId}`, { details: { workerId } });
      const why = worker.state === 'gone' ? 'has left' : 'is already draining: it finishes what it holds and leaves';
      throw new RemexError('FAILED_PRECONDITION', `worker ${workerId} ${why}; it cannot be undrained`, { details: { workerId, state: worker.state } });
    }
    this.logger.info({ workerId }, 'drain order withdrawn');
    return (await this.store.workers.get(workerId)) as WorkerRecord;
  }

  /** The registered workers (the gone ones included, until the registry forgets them). */
  async workers(): Promise<WorkerRecord[]> {
    return this.store.workers.list();
  }

  /**
   * The registered workers, each with the number of jobs it runs now and its price per hour (for `remex
   * workers`): its own `--price-per-hour`, else the server's `--platform-price` of its first priced platform.
   */
  async workersWithLoad(): Promise<Array<WorkerRecord & { running: number; price: WorkerPrice | null }>> {
    const [workers, byWorker] = await Promise.all([this.store.workers.list(), this.store.jobs.runningByWorker()]);
    return workers.map((w) => ({ ...w, running: byWorker.get(w.id) ?? 0, price: this.priceOf(w) }));
  }

  private priceOf(w: WorkerRecord): WorkerPrice | null {
    if (w.pricePerHour !== undefined) return { perHour: w.pricePerHour, from: 'worker' };
    for (const p of w.platforms) {
      const perHour = this.opts.platformPrices[p.platform];
      if (perHour !== undefined) return { perHour, from: 'platform' };
    }
    return null;
  }

  async complete(workerId: string, c: Completion): Promise<void> {
    const job = await this.store.jobs.finish({ id: c.jobId, attempt: c.attempt, workerId, outcome: await this.priced(c), nowMs: this.now() });
    if (!job) {
      throw new ConflictError(`lease of job ${c.jobId} attempt ${c.attempt} is no longer held by worker ${workerId}; result discarded`);
    }
    if (job.state === 'completed' && job.result && !job.spec.doNotCache && isCacheable(job.result)) {
      await this.store.actionCache.put(job.instance, job.actionDigest, job.result, this.now());
    }
    this.observer.jobFinished?.(job);
    this.publish(job);
  }

  async completeAndLease(workerId: string, completions: readonly Completion[], max: number, waitMs: number, signal?: AbortSignal): Promise<CompleteAndLeaseReply> {
    // An unknown worker hears so before anything is committed: it registers again and sends them again.
    await this.activeWorker(workerId);
    // Concurrent finishes share one statement where the store batches them. The cause of a failure that
    // is not the worker's (a database outage, say) stays on the server, as for any internal error.
    return completeThenLease(this, workerId, { completions, max, waitMs, signal }, (err) =>
      isRemexError(err) ? err.message : 'the result could not be committed now; send it again',
    );
  }

  async unregister(workerId: string): Promise<void> {
    const wasDraining = this.liveWorkers.get(workerId)?.state === 'draining';
    this.liveWorkers.delete(workerId);
    this.cancelHooks.delete(workerId);
    await this.store.workers.touch(workerId, this.now(), 'gone');
    this.observer.workerGone?.(workerId, 'unregistered');
    this.workerEvent(workerId, wasDraining ? 'drained' : 'gone');
    this.publishExpiry(await this.store.jobs.releaseLeasesOf([workerId], this.now(), this.opts.maxAttempts));
  }

  /** In-process workers hear of cancellations at once rather than at their next heartbeat. */
  onCancel(workerId: string, listener: (jobId: string) => void): void {
    this.cancelHooks.set(workerId, listener);
  }

  private async activeWorker(workerId: string): Promise<WorkerRecord> {
    const worker = this.liveWorkers.get(workerId) ?? (await this.store.workers.get(workerId));
    if (!worker || worker.state === 'gone') {
      throw new NotFoundError(`worker ${workerId} is not registered; register again`, { details: { workerId } });
    }
    this.liveWorkers.set(workerId, worker);
    return worker;
  }

  /** Resolves when woken, timed out or aborted (undefined), or with the leases handed to it. */
  private waitForWork(workerId: string, platforms: readonly string[], timeoutMs: number, signal?: AbortSignal): Promise<Lease[] | undefined> {
    return new Promise((resolve) => {
      let done = false;
      const finish = (handed?: Lease[]): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.waiters.delete(waiter);
        resolve(handed);
      };
      // An abort ends it even when reserved: the caller is gone (a job handed meanwhile expires and is requeued).
      const onAbort = (): void => finish();
      const waiter: Waiter = { workerId, platforms, reserved: false, wake: () => finish(), hand: (leases) => finish(leases) };
      const timer = setTimeout(() => {
        if (!waiter.reserved) finish();
      }, timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.add(waiter);
    });
  }

  /** Takes a waiting, active worker of this platform for a job about to be inserted, if no older job may wait unattended. */
  private reserveWaiter(platform: string): Waiter | undefined {
    if (!this.nothingUnattended.has(platform)) return undefined;
    for (const w of this.waiters) {
      if (w.platforms.includes(platform) && this.liveWorkers.get(w.workerId)?.state === 'active') {
        this.waiters.delete(w);
        w.reserved = true;
        return w;
      }
    }
    return undefined;
  }

  /** Wakes one worker waiting for this platform: enough for one new job, and no thundering herd. True if one was. */
  private wakeFor(platform: string): boolean {
    this.workSeq++;
    for (const w of this.waiters) {
      if (w.platforms.includes(platform)) {
        w.wake();
        return true;
      }
    }
    // Nobody here was woken for it: the next lease call must look.
    this.nothingUnattended.delete(platform);
    return false;
  }

  private publish(job: JobRecord, opts?: PublishOptions): void {
    this.events.publish(job, opts);
  }

  /** Progress a heartbeat brought for leases still this worker's: an event for the job's followers on every controller. */
  private publishProgress(held: readonly HeldLease[] | undefined, renewedIds: readonly string[]): void {
    if (!held?.some((h) => h.progress)) return;
    const renewed = new Set(renewedIds);
    for (const { jobId, attempt, progress } of held) {
      // A progress event needs a percent; a report of metrics or a message alone is in the job's record.
      if (!progress || progress.percent === undefined || !renewed.has(jobId)) continue;
      try {
        this.events.publishEvent({
          kind: 'progress',
          jobId,
          attempt,
          percent: progress.percent,
          ...(progress.message !== undefined ? { message: progress.message } : {}),
          ...(progress.metrics ? { metrics: progress.metrics } : {}),
          atMs: progress.atMs,
        });
      } catch (err) {
        // Out of the bus's bounds (a worker of another version): stored, not relayed.
        this.logger.warn({ err, jobId }, 'progress not published');
      }
    }
  }

  /** Tells every controller's followers (the dashboard, the autoscaler) that a worker came, drains or left. */
  private workerEvent(workerId: string, state: WorkerEventState): void {
    this.events.publishEvent({ kind: 'worker', workerId, state, atMs: this.now() });
  }

  private publishExpiry(expiry: LeaseExpiry): void {
    for (const job of expiry.requeued) {
      this.observer.jobQueued?.(job, 'requeued');
      this.publish(job, { workerWoken: this.wakeFor(job.platform) });
    }
    for (const job of [...expiry.failed, ...expiry.cancelled]) {
      this.observer.jobFinished?.(job);
      this.publish(job);
    }
  }

  private async reap(): Promise<void> {
    const nowMs = this.now();
    const gone = await this.store.workers.markSilentGone(nowMs - this.opts.workerSilenceMs);
    for (const id of gone) {
      this.liveWorkers.delete(id);
      this.logger.warn({ workerId: id, silentForMs: this.opts.workerSilenceMs }, 'worker silent: declared gone, its jobs go back to the queue');
      this.observer.workerGone?.(id, 'silent');
      this.workerEvent(id, 'gone');
    }
    // Before leases are released or expired: a silent worker's run past its failsafe deadline is stopped,
    // not run again.
    await this.stopOverdue(nowMs, new Set(gone));
    if (gone.length > 0) this.publishExpiry(await this.store.jobs.releaseLeasesOf(gone, nowMs, this.opts.maxAttempts));
    this.publishExpiry(await this.store.jobs.expireLeases(nowMs, this.opts.maxAttempts));
  }

  /**
   * The server's failsafe layer (layer 4, docs/long-jobs.md): a job still running past its start +
   * max-runtime + failsafe is `emergency_stopped` and its lease revoked — at once when its worker is silent
   * (lease expired, or declared gone), otherwise a lease's length later, the time its worker's own watchdog
   * had to report. The worker hears at its next heartbeat that the lease is no longer its, and kills the run.
   * Compare-and-set on the lease like any finish, so two controllers never both stop it.
   */
  private async stopOverdue(nowMs: number, goneWorkers: ReadonlySet<string>): Promise<void> {
    for (const job of await this.store.jobs.overdue(nowMs, this.opts.failsafeMs, OVERDUE_BATCH)) {
      const owner = job.leaseOwner;
      if (owner === null || job.startedAtMs === null) continue;
      const silent = (job.leaseExpiresAtMs ?? 0) < nowMs || goneWorkers.has(owner);
      const deadlineMs = failsafeDeadlineMs(job.spec, job.startedAtMs, this.opts.failsafeMs);
      if (!silent && nowMs <= deadlineMs + this.opts.leaseTimeoutMs) continue;
      const failure: JobFailure = {
        code: 'DEADLINE_EXCEEDED',
        message: `emergency stop by the server: still running ${deadlineMs - job.startedAtMs} ms after it started (max-runtime + failsafe)${
          silent ? ' with no word from its worker' : ', and its worker did not stop it'
        }; its lease is revoked`,
      };
      const stopped = await this.store.jobs.finish({ id: job.id, attempt: job.attempt, workerId: owner, outcome: { state: 'emergency_stopped', failure }, nowMs });
      if (!stopped) continue;
      this.logger.warn({ jobId: job.id, workerId: owner, silent }, 'job past its failsafe deadline: emergency-stopped, its lease revoked');
      this.observer.jobFinished?.(stopped);
      this.publish(stopped);
      // An in-process worker stops it now; a remote one at its next heartbeat.
      this.cancelHooks.get(owner)?.(job.id);
    }
  }

  /**
   * A result whose worker reports no price takes its platform's default price (`remex serve
   * --platform-price`), so its cost shows. The job is read for its platform only then: a fleet priced by
   * its workers, or not at all, pays nothing for it.
   */
  private async priced(c: Completion): Promise<Outcome> {
    const { outcome } = c;
    if (!('result' in outcome) || !outcome.result.host || outcome.result.host.pricePerHour !== null) return outcome;
    if (Object.keys(this.opts.platformPrices).length === 0) return outcome;
    const job = await this.store.jobs.get(c.jobId);
    const price = job ? this.opts.platformPrices[job.platform] : undefined;
    return price === undefined ? outcome : { ...outcome, result: { ...outcome.result, host: { ...outcome.result.host, pricePerHour: price } } };
  }

  private leaseOf(job: JobRecord): Lease {
    return { jobId: job.id, attempt: job.attempt, spec: job.spec, leaseExpiresAtMs: job.leaseExpiresAtMs ?? 0, failsafeMs: job.spec.failsafeMs ?? this.opts.failsafeMs };
  }
}
