/**
 * What the scheduler tells the outside as it works, whichever controller it runs on: jobs queued,
 * answered from the cache, merged, leased and finished, workers coming and going, and its background
 * work failing (with the back-off it takes). Metrics, execution timelines and the autoscaler attach here.
 * Calls are synchronous and made after the store committed the change; they must not block.
 */
import type { JobRecord, WorkerRecord } from '../store/ports.js';

export interface SchedulerObserver {
  /** A job entered the queue: a new one, or one requeued after its worker was lost. */
  jobQueued?(job: JobRecord, cause: 'submitted' | 'requeued'): void;
  /** A submit was answered from the action cache: the job is completed and never queued. */
  jobCached?(job: JobRecord): void;
  /** A submit joined an identical job already queued or running. */
  jobMerged?(job: JobRecord): void;
  /** A job went to a worker: claimed from the queue, or handed to a waiting worker as it was inserted. */
  jobLeased?(job: JobRecord, how: 'claimed' | 'handed'): void;
  /** A job reached a terminal state (completed, timed_out, cancelled, failed, emergency_stopped). */
  jobFinished?(job: JobRecord): void;
  workerRegistered?(worker: WorkerRecord): void;
  /** A worker said it drains: it finishes what it holds and takes nothing more. */
  workerDraining?(workerId: string): void;
  /** A worker left (unregistered) or was declared gone after its silence. */
  workerGone?(workerId: string, reason: 'unregistered' | 'silent'): void;
  /** Background work failed; it is tried again in `retryInMs`, longer while it keeps failing. */
  backgroundFailed?(task: 'lease-reaper', err: unknown, consecutiveFailures: number, retryInMs: number): void;
}
