/**
 * The event bus of a single controller: every publish reaches this process's subscribers at once, in
 * order; there is no other controller to tell, so nothing is ever queued elsewhere.
 */
import type { JobRecord } from '../../store/ports.js';
import { checkEvent } from '../bus-events.js';
import type { BusEvent, EventKind } from '../bus-events.js';
import type { EventBus, JobEventListener, JobListener, KindListener, QueuedListener } from '../event-bus.js';
import { LocalSubscribers } from '../local-subscribers.js';

export class InMemoryEventBus implements EventBus {
  private readonly local = new LocalSubscribers();

  publish(job: JobRecord): void {
    this.local.deliver({ kind: 'job', job });
  }

  publishEvent(event: BusEvent): void {
    checkEvent(event);
    this.local.deliver(event);
  }

  subscribe(jobId: string, listener: JobListener): () => void {
    return this.local.subscribe(jobId, listener);
  }

  subscribeJobEvents(jobId: string, listener: JobEventListener): () => void {
    return this.local.subscribeJobEvents(jobId, listener);
  }

  subscribeKind<K extends EventKind>(kind: K, listener: KindListener<K>): () => void {
    return this.local.subscribeKind(kind, listener);
  }

  subscribeAll(listener: JobListener): () => void {
    return this.local.subscribeAll(listener);
  }

  onQueuedElsewhere(_listener: QueuedListener): () => void {
    return () => undefined; // one process: nothing is queued elsewhere
  }
}
