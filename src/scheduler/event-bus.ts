/**
 * The event-bus port: every change of a job's state is published once, and reaches every subscriber of
 * that job and every subscriber of all jobs. The in-memory adapter serves one process; a networked one
 * (PostgreSQL LISTEN/NOTIFY) carries events between controllers.
 */
import type { JobRecord } from '../store/ports.js';

export type JobListener = (job: JobRecord) => void;

export interface EventBus {
  publish(job: JobRecord): void;
  /** Listens to one job; returns the function that stops listening. */
  subscribe(jobId: string, listener: JobListener): () => void;
  subscribeAll(listener: JobListener): () => void;
}

/**
 * Listeners of this process, by job and for all jobs: the fan-out every EventBus adapter shares. A failing
 * listener never stops delivery to the others, and a listener may unsubscribe itself while being called.
 */
export class LocalSubscribers {
  private readonly byJob = new Map<string, Set<JobListener>>();
  private readonly all = new Set<JobListener>();

  deliver(job: JobRecord): void {
    // Copy before calling: a listener may unsubscribe itself while being called.
    for (const listener of [...(this.byJob.get(job.id) ?? [])]) safeCall(listener, job);
    for (const listener of [...this.all]) safeCall(listener, job);
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

  /** Whether anyone here would hear of this job. */
  wants(jobId: string): boolean {
    return this.all.size > 0 || this.byJob.has(jobId);
  }

  /** Jobs with a listener of their own. */
  jobIds(): IterableIterator<string> {
    return this.byJob.keys();
  }
}

export class InMemoryEventBus implements EventBus {
  private readonly local = new LocalSubscribers();

  publish(job: JobRecord): void {
    this.local.deliver(job);
  }

  subscribe(jobId: string, listener: JobListener): () => void {
    return this.local.subscribe(jobId, listener);
  }

  subscribeAll(listener: JobListener): () => void {
    return this.local.subscribeAll(listener);
  }
}

function safeCall(listener: JobListener, job: JobRecord): void {
  try {
    listener(job);
  } catch {
    // A failing subscriber must not stop delivery to the others; subscribers own their error handling.
  }
}
