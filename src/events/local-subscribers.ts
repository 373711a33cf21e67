/**
 * Listeners of this process, by job, by kind, and for this controller's own job changes: the fan-out every
 * EventBus adapter shares. A failing listener never stops delivery to the others, and a listener may
 * unsubscribe itself (or another) while being called: one unsubscribed is not called afterwards.
 */
import { jobIdOf } from './bus-events.js';
import type { BusEvent, EventKind, JobScopedEvent } from './bus-events.js';
import type { JobEventListener, JobListener, KindListener } from './event-bus.js';

type AnyListener = (event: BusEvent) => void;

export class LocalSubscribers {
  private readonly byJob = new Map<string, Set<JobEventListener>>();
  private readonly byKind = new Map<EventKind, Set<AnyListener>>();
  private readonly publishedHere = new Set<JobListener>();

  /**
   * To the listeners of the event's job and of its kind, in that order; a job change published here
   * (`published`) also to the listeners of this controller's own changes.
   */
  deliver(event: BusEvent, published = true): void {
    const jobId = jobIdOf(event);
    if (jobId !== undefined) this.callAll(this.byJob.get(jobId), event as JobScopedEvent);
    this.callAll(this.byKind.get(event.kind), event);
    if (published && event.kind === 'job') this.callAll(this.publishedHere, event.job);
  }

  /** Every event of one job. */
  subscribeJobEvents(jobId: string, listener: JobEventListener): () => void {
    return this.add(this.byJob, jobId, listener);
  }

  /** One job's changes: its job events, unwrapped. */
  subscribe(jobId: string, listener: JobListener): () => void {
    return this.subscribeJobEvents(jobId, (event) => {
      if (event.kind === 'job') listener(event.job);
    });
  }

  subscribeKind<K extends EventKind>(kind: K, listener: KindListener<K>): () => void {
    // Only events of this kind reach it (deliver looks them up by kind): the cast is what the map cannot say.
    return this.add(this.byKind, kind, listener as AnyListener);
  }

  subscribeAll(listener: JobListener): () => void {
    // A wrapper, so that one function subscribed twice is two subscriptions, as with the others.
    const entry: JobListener = (job) => listener(job);
    this.publishedHere.add(entry);
    return () => this.publishedHere.delete(entry);
  }

  /** Whether a listener of this very job is here (what a networked bus re-reads a job changed elsewhere for). */
  wants(jobId: string): boolean {
    return this.byJob.has(jobId);
  }

  /** Whether a listener of every event of this kind is here. */
  wantsKind(kind: EventKind): boolean {
    return this.byKind.has(kind);
  }

  /** Jobs with a listener of their own. */
  jobIds(): IterableIterator<string> {
    return this.byJob.keys();
  }

  private add<K, E>(map: Map<K, Set<(event: E) => void>>, key: K, listener: (event: E) => void): () => void {
    // A wrapper per subscription: the same function subscribed twice is heard twice and stopped one at a time.
    const entry = (event: E): void => listener(event);
    let set = map.get(key);
    if (!set) map.set(key, (set = new Set()));
    set.add(entry);
    return () => {
      const current = map.get(key);
      if (!current) return;
      current.delete(entry);
      if (current.size === 0) map.delete(key);
    };
  }

  private callAll<E>(listeners: Set<(event: E) => void> | undefined, event: E): void {
    if (!listeners) return;
    // Iterate a copy, and skip listeners removed meanwhile: a listener may unsubscribe others while being called.
    for (const listener of [...listeners]) {
      if (!listeners.has(listener)) continue;
      try {
        listener(event);
      } catch {
        // A failing subscriber must not stop delivery to the others; subscribers own their error handling.
      }
    }
  }
}
