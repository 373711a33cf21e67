/**
 * The scheduler's metrics: what it counts as it works (a SchedulerObserver: executions by outcome, their
 * queue, execution and end-to-end times, the action cache's answers, long jobs' cost) and the fleet as the
 * shared store has it, read at each scrape (queued, running, free slots, workers by state and mode). The
 * registry is fed by every worker's heartbeats and the queue is shared, so one scrape of any controller
 * sees the whole fleet; the counters are this controller's (Prometheus sums them across controllers).
 */
import { costOf, TERMINAL_STATES } from '../core/model.js';
import type { SchedulerObserver } from '../scheduler/observer.js';
import type { FleetStatus, PlatformStatus } from '../scheduler/scheduler.js';
import type { JobRecord, WorkerRecord } from '../store/ports.js';
import { JOB_BUCKETS_SECONDS, LATENCY_BUCKETS_SECONDS } from './metrics.js';
import type { Metrics } from './metrics.js';

/** The outcomes an execution is counted under: every terminal job state, and `cached` (answered from the action cache). */
export const EXECUTION_OUTCOMES: readonly string[] = [...TERMINAL_STATES, 'cached'];

/** What the fleet gauges read: the scheduler's status and its registry (Scheduler satisfies it). */
export interface FleetSource {
  status(): Promise<{ platforms: PlatformStatus[]; fleet: FleetStatus }>;
  workers(): Promise<WorkerRecord[]>;
}

/** A reading taken for one scrape is shared by every gauge of it, and kept this long. */
const READING_TTL_MS = 250;

export function schedulerMetrics(metrics: Metrics, fleet: FleetSource): SchedulerObserver {
  let reading: { at: number; value: Promise<{ platforms: PlatformStatus[]; workers: WorkerRecord[] }> } | undefined;
  const read = (): Promise<{ platforms: PlatformStatus[]; workers: WorkerRecord[] }> => {
    const now = Date.now();
    if (!reading || now - reading.at > READING_TTL_MS) {
      const value = Promise.all([fleet.status(), fleet.workers()]).then(([s, workers]) => ({ platforms: s.platforms, workers }));
      reading = { at: now, value };
      // A failed reading is not kept: the next scrape tries again.
      value.catch(() => (reading = undefined));
    }
    return reading.value;
  };
  const perPlatform = (name: string, help: string, pick: (p: PlatformStatus) => number): void => {
    metrics.gauge({
      name,
      help,
      labelNames: ['platform'],
      read: async (set) => {
        for (const p of (await read()).platforms) set({ platform: p.platform }, pick(p));
      },
    });
  };
  perPlatform('remex_jobs_queued', 'Jobs waiting for a worker, per platform (every controller’s).', (p) => p.queued);
  perPlatform('remex_jobs_running', 'Jobs leased to a worker, per platform.', (p) => p.running);
  perPlatform('remex_worker_slots_free', 'Slots of live workers free to take this platform’s jobs.', (p) => p.freeSlots);
  perPlatform('remex_worker_slots', 'Slots of live workers serving this platform (a worker serving several platforms counts under each).', (p) => p.slots);
  metrics.gauge({
    name: 'remex_workers',
    help: 'Live workers per platform they serve, by state (active, draining) and mode (native, emulated).',
    labelNames: ['platform', 'state', 'mode'],
    read: async (set) => {
      const counts = new Map<string, { labels: { platform: string; state: string; mode: string }; n: number }>();
      for (const w of (await read()).workers) {
        if (w.state === 'gone') continue;
        for (const offer of w.platforms) {
          const labels = { platform: offer.platform, state: w.state, mode: offer.emulated ? 'emulated' : 'native' };
          const key = `${labels.platform}\0${labels.state}\0${labels.mode}`;
          const entry = counts.get(key) ?? { labels, n: 0 };
          entry.n++;
          counts.set(key, entry);
        }
      }
      for (const { labels, n } of counts.values()) set(labels, n);
    },
  });

  const executions = metrics.counter({ name: 'remex_executions_total', help: 'Executions that ended, by platform and outcome.', labelNames: ['platform', 'outcome'] });
  const queued = metrics.counter({ name: 'remex_jobs_enqueued_total', help: 'Jobs that entered the queue, by platform and cause (submitted, requeued).', labelNames: ['platform', 'cause'] });
  const merged = metrics.counter({ name: 'remex_jobs_merged_total', help: 'Submits that joined an identical job in flight.', labelNames: ['platform'] });
  const leased = metrics.counter({ name: 'remex_jobs_leased_total', help: 'Jobs that went to a worker, claimed from the queue or handed as they were inserted.', labelNames: ['platform', 'how'] });
  const cacheLookups = metrics.counter({ name: 'remex_action_cache_lookups_total', help: 'Action-cache lookups of submitted executions, by result (hit, miss).', labelNames: ['result'] });
  const queueTime = metrics.histogram({ name: 'remex_execution_queue_seconds', help: 'Time a job waited for a worker (all its attempts).', labelNames: ['platform'], buckets: JOB_BUCKETS_SECONDS });
  const execTime = metrics.histogram({ name: 'remex_execution_run_seconds', help: 'The program’s wall time.', labelNames: ['platform'], buckets: JOB_BUCKETS_SECONDS });
  const endToEnd = metrics.histogram({ name: 'remex_execution_end_to_end_seconds', help: 'From submit to the result committed.', labelNames: ['platform'], buckets: JOB_BUCKETS_SECONDS });
  const staging = metrics.histogram({ name: 'remex_execution_staging_seconds', help: 'A worker staging the inputs.', labelNames: ['platform'], buckets: LATENCY_BUCKETS_SECONDS });
  const collection = metrics.histogram({ name: 'remex_execution_output_upload_seconds', help: 'A worker storing the outputs after the program ended.', labelNames: ['platform'], buckets: LATENCY_BUCKETS_SECONDS });
  const cost = metrics.counter({ name: 'remex_execution_cost_total', help: 'What runs cost (the workers’ price per hour × run time × slot share), in the operator’s unit.', labelNames: ['platform'] });
  const background = metrics.counter({ name: 'remex_scheduler_background_failures_total', help: 'Failures of the scheduler’s background work (the lease reaper).', labelNames: ['task'] });
  const workerEvents = metrics.counter({ name: 'remex_worker_events_total', help: 'Workers registered, draining and gone (unregistered or silent).', labelNames: ['event'] });

  cacheLookups.inc({ result: 'hit' }, 0);
  cacheLookups.inc({ result: 'miss' }, 0);
  const seen = new Set<string>();
  // Every outcome shows from a platform's first job on, at zero until it happens (rate() needs the series).
  const platformSeen = (platform: string): void => {
    if (seen.has(platform)) return;
    seen.add(platform);
    for (const outcome of EXECUTION_OUTCOMES) executions.inc({ platform, outcome }, 0);
  };
  const seconds = (ms: number): number => Math.max(0, ms) / 1000;

  return {
    jobQueued(job, cause) {
      platformSeen(job.platform);
      queued.inc({ platform: job.platform, cause });
      if (cause === 'submitted' && !job.spec.doNotCache) cacheLookups.inc({ result: 'miss' });
    },
    jobCached(job) {
      platformSeen(job.platform);
      cacheLookups.inc({ result: 'hit' });
      executions.inc({ platform: job.platform, outcome: 'cached' });
    },
    jobMerged(job) {
      merged.inc({ platform: job.platform });
      if (!job.spec.doNotCache) cacheLookups.inc({ result: 'miss' });
    },
    jobLeased(job, how) {
      leased.inc({ platform: job.platform, how });
    },
    jobFinished(job: JobRecord) {
      const platform = job.platform;
      platformSeen(platform);
      executions.inc({ platform, outcome: job.state });
      queueTime.observe({ platform }, seconds(job.queueTimeMs));
      if (job.completedAtMs !== null) endToEnd.observe({ platform }, seconds(job.completedAtMs - job.createdAtMs));
      const r = job.result;
      if (!r) return;
      execTime.observe({ platform }, seconds(r.wallTimeMs));
      if (r.times) {
        staging.observe({ platform }, seconds(r.times.stagedAtMs - r.times.stagingStartedAtMs));
        collection.observe({ platform }, seconds(r.times.outputsStoredAtMs - r.times.programEndedAtMs));
      }
      const c = costOf(r);
      if (c !== null && c > 0) cost.inc({ platform }, c);
    },
    workerRegistered() {
      workerEvents.inc({ event: 'registered' });
    },
    workerDraining() {
      workerEvents.inc({ event: 'draining' });
    },
    workerGone(_id, reason) {
      workerEvents.inc({ event: reason === 'silent' ? 'gone_silent' : 'unregistered' });
    },
    backgroundFailed(task) {
      background.inc({ task });
    },
  };
}
