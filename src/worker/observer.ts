/**
 * What a worker tells the outside as it runs jobs: each run's phases and how it ended, how its results
 * settled, and the calls to its server that failed (with the back-off it takes). The in-process pool's
 * observer feeds the server's metrics and timelines; a remote worker's reaches its server with heartbeats.
 * Calls are synchronous; they must not block.
 */
import type { Outcome } from '../store/ports.js';
import type { Lease } from '../scheduler/worker-link.js';

/** Where one run's time went, in milliseconds. */
export interface RunPhases {
  /** Input tree, output parents and stdin made in the run directory. */
  stageMs: number;
  /** The sandbox's part: launch, the program, teardown. */
  sandboxMs: number;
  /** The program's own wall time, as the sandbox measured it (within sandboxMs). */
  programWallMs: number;
  /** stdout, stderr and output files stored in the CAS. */
  collectMs: number;
}

export interface WorkerObserver {
  runStarted?(lease: Lease): void;
  /** A run ended; `phases` is null when it ended before the program could start (a missing input, say). */
  runFinished?(lease: Lease, outcome: Outcome, phases: RunPhases | null): void;
  /** A result's fate: the job's result, discarded (the lease was no longer this worker's), or given up on. */
  resultSettled?(jobId: string, attempt: number, how: 'committed' | 'stale' | 'abandoned'): void;
  /** A call to the server failed; it is made again in `retryInMs`. */
  callFailed?(call: 'lease' | 'heartbeat' | 'complete', err: unknown, retryInMs: number): void;
  /** The worker stopped taking jobs; `drained` once its last result settled and it left. */
  draining?(): void;
  drained?(): void;
}
