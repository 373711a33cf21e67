/**
 * The event-bus port: every change of a job's state is published once, and reaches every subscriber of
 * that job, on this controller or (with a networked bus) on any other. The in-memory adapter serves one
 * process; a networked one (PostgreSQL LISTEN/NOTIFY) carries events between controllers.
 */
import type { JobRecord } from '../store/ports.js';

export type JobListener = (job: JobRecord) => void;
/** A platform; null when notices may have been lost (the bus was reconnected): jobs of any platform may wait. */
export type QueuedListener = (platform: string | null) => void;

export interface PublishOptions {
  /**
   * For a queued job: a worker waiting on this controller was woken for it, so other controllers need not
   * wake one of theirs (the woken worker claims from the shared queue; one claim per queued job suffices).
   */
  workerWoken?: boolean;
}

export interface EventBus {
  publish(job: JobRecord, opts?: PublishOptions): void;
  /** Listens to one job, wherever it changes; returns the function that stops listening. */
  subscribe(jobId: string, listener: JobListener): () => void;
  /** Listens to every job published on this controller (not to those changed on other controllers). */
  subscribeAll(listener: JobListener): () => void;
  /**
   * Hears that another controller sharing this bus queued (or requeued) a job that no worker there was woken
   * for, with only its platform: what a scheduler needs to wake a worker waiting here, without reading the
   * job. A single-process bus never calls it.
   */
  onQueuedElsewhere(listener: QueuedListener): () => void;
}

/**
 * Listeners of this process, by job and for all jobs: the fan-out every EventBus adapter shares. A failing
 * listener never stops delivery to the others, and a listener may unsubscribe itself while being called.
 */
export class LocalSubscribers {
  private readonly byJob = new Map<string, Set<JobListener>>();
  private readonly all = new Set<JobListener>();

  /** To the listeners of this job and, for a job published here (`published`), to the listeners of all jobs. */
  deliver(job: JobRecord, published = true): void {
    // Copy before calling: a listener may unsubscribe itself while being called.
    for (const listener of [...(this.byJob.get(job.id) ?? [])]) safeCall(listener, job);
    if (published) for (const listener of [...this.all]) safeCall(listener, job);
  }

  subscribe(jobId: string, listener: JobListener): () => void {
    let set = this.byJob.get(jobId);
    if (!set) this.byJob.set(jobId, (set = new Set()));
    set.add(listener);
    return () => {
      const current = this.byJob.get(jobId);
      if (!current) return;
      current.delete(listener);
      if (current.size === 0) this.byJob.delete(jobId);
    };
  }

  subscribeAll(listener: JobListener): () => void {
    this.all.add(listener);
    return () => this.all.delete(listener);
  }

  /** Whether a listener of this very job is here (listeners of all jobs hear only local publishes). */
  wants(jobId: string): boolean {
    return this.byJob.has(jobId);
  }

  /** Jobs with a listener of their own. */
  jobIds(): IterableIterator<string> {
    return this.byJob.keys();
  }
}

function safeCall(listener: JobListener, job: JobRecord): void {
  try {
    listener(job);
  } catch {
    // A failing subscriber must not stop delivery to the others; subscribers own their error handling.
  }
}
