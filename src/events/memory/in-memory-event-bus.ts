/**
 * The event bus of a single controller: every publish reaches this process's subscribers at once, in
 * order; there is no other controller to tell, so nothing is ever queued elsewhere.
 */
import type { EventBus, JobListener, QueuedListener } from '../event-bus.js';
import { LocalSubscribers } from '../event-bus.js';
import type { JobRecord } from '../../store/ports.js';

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

  onQueuedElsewhere(_listener: QueuedListener): () => void {
    return () => undefined; // one process: nothing is queued elsewhere
  }
}
