/**
 * The event-bus port: what happens to jobs and workers, published once and heard by every subscriber of
 * that job or of that kind, on this controller or (with a networked bus) on any other. The in-memory
 * adapter serves one process; a networked one (PostgreSQL LISTEN/NOTIFY) carries events between controllers.
 *
 * Four kinds (bus-events.ts): `job` (a job's state changed: the record as it now is), `progress` and `log`
 * (of a running job), `worker` (a worker registered, draining, drained, gone). Job changes are durable:
 * the store holds them, so a networked bus may re-read a job and deliver a newer version than the one
 * published (never an older one). The other kinds live only on the bus: lost with a connection, they are
 * not sent again; what must survive is stored by whoever publishes them.
 */
import type { JobRecord } from '../store/ports.js';
import type { BusEvent, EventKind, EventOfKind, JobScopedEvent } from './bus-events.js';

export type { BusEvent, EventKind, EventOfKind, JobScopedEvent } from './bus-events.js';

export type JobListener = (job: JobRecord) => void;
export type JobEventListener = (event: JobScopedEvent) => void;
export type KindListener<K extends EventKind> = (event: EventOfKind<K>) => void;
/** A platform; null when notices may have been lost (the bus was reconnected): jobs of any platform may wait. */
export type QueuedListener = (platform: string | null) => void;

export interface PublishOptions {
  /**
   * For a queued job: a worker waiting on this controller was woken for it, so other controllers need not
   * wake one of theirs (the woken worker claims from the shared queue; one claim per queued job suffices).
   */
  workerWoken?: boolean;
}

/**
 * Every adapter promises: a listener is called synchronously for an event published in this process, in
 * publish order; events published on another controller arrive in their publish order too, except that a
 * job change (read back from the store) may come after progress or log events published after it, and may
 * skip versions of the job, never go back to an older one; a listener that throws stops no other; a
 * listener may unsubscribe itself (or any other) while being called, and is not called after unsubscribing.
 */
export interface EventBus {
  /** A job changed: the same as `publishEvent({ kind: 'job', job }, opts)`, the call the scheduler makes. */
  publish(job: JobRecord, opts?: PublishOptions): void;
  /** Publishes any event; throws InvalidArgumentError, publishing nothing, for one outside its bounds (`checkEvent`). */
  publishEvent(event: BusEvent, opts?: PublishOptions): void;
  /** Listens to one job's changes, wherever it changes; returns the function that stops listening. */
  subscribe(jobId: string, listener: JobListener): () => void;
  /** Listens to every event of one job (its changes, progress and log chunks), wherever published. */
  subscribeJobEvents(jobId: string, listener: JobEventListener): () => void;
  /**
   * Listens to every event of one kind, wherever published. On a networked bus a kind listener of `job`
   * makes this controller read every job changed on any other: a dashboard's price, not a counter's —
   * counting this controller's own changes is {@link subscribeAll}'s.
   */
  subscribeKind<K extends EventKind>(kind: K, listener: KindListener<K>): () => void;
  /** Listens to every job change published on this controller (not to those changed on other controllers). */
  subscribeAll(listener: JobListener): () => void;
  /**
   * Hears that another controller sharing this bus queued (or requeued) a job that no worker there was woken
   * for, with only its platform: what a scheduler needs to wake a worker waiting here, without reading the
   * job. A single-process bus never calls it.
   */
  onQueuedElsewhere(listener: QueuedListener): () => void;
}
