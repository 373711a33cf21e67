/**
 * Rules of the domain that every store adapter applies the same way, written once: the failures a store
 * records on its own (a job cancelled before it ran, a cancelled job whose worker was lost, a job whose
 * workers kept being lost), the order jobs are dispatched in, and which offer of a platform counts when
 * several workers offer it. Adapters keep only what is theirs: how they store and query it.
 */
import type { JobFailure } from '../core/model.js';
import type { PlatformOffer } from './ports.js';

/** A queued job cancelled: it never ran, and never will. */
export const CANCELLED_BEFORE_START: JobFailure = { code: 'CANCELLED', message: 'cancelled before it started' };

/**
 * A running job whose cancellation was requested, then whose lease expired before its worker reported:
 * the cancellation still stands, so the job ends cancelled instead of running again.
 */
export const CANCELLED_WORKER_LOST: JobFailure = { code: 'CANCELLED', message: 'cancelled; its worker was lost before it reported' };

/** A job that asked not to run twice (a benchmark, `--no-retry`) whose worker was lost: it ends there. */
export const LOST_NO_RETRY: JobFailure = { code: 'LOST', message: 'the worker running it was lost, and it asked not to be run again (--no-retry)' };

/** A job whose lease expired on its last allowed attempt: remex gives up on it. */
export function lostFailure(maxAttempts: number): JobFailure {
  return { code: 'LOST', message: `the worker running it was lost ${maxAttempts} time(s); giving up` };
}

/** What dispatch order looks at: a job's priority and its place in the order of insertion. */
export interface DispatchKey {
  priority: number;
  seq: number;
}

/** Dispatch order: lowest priority first, then first in, first out. */
export function compareDispatchOrder(a: DispatchKey, b: DispatchKey): number {
  return a.priority - b.priority || a.seq - b.seq;
}

/**
 * The platforms offered by a set of workers, one offer each, in the order first seen. Native wins over
 * emulated: a platform some worker runs natively is servable natively, whoever else emulates it.
 */
export function mergeOffers(offersByWorker: Iterable<readonly PlatformOffer[]>): PlatformOffer[] {
  const seen = new Map<string, PlatformOffer>();
  for (const offers of offersByWorker) {
    for (const offer of offers) {
      const prior = seen.get(offer.platform);
      if (!prior || (prior.emulated && !offer.emulated)) seen.set(offer.platform, offer);
    }
  }
  return [...seen.values()];
}
