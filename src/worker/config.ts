/**
 * A worker's tuning, with every default in one place. The in-process pool and `remex worker` take the
 * same numbers; flags override some of them (src/server/config.ts).
 */
import { DEFAULT_GRACE_MS } from '../core/limits.js';
import { DEFAULT_FAILSAFE_MS } from '../core/model.js';
import type { InjectedFault } from './sandbox/sandbox.js';

export interface WorkerTuning {
  /** Outputs up to this size travel inline in the result as well as in the CAS. */
  inlineOutputBytes: number;
  /** After SIGTERM (timeout, cancel), how long a run has before SIGKILL of its whole tree. */
  graceMs: number;
  /** How long one lease call waits for work before asking again. */
  leaseWaitMs: number;
  /** Pause after a failed call, doubled per consecutive failure of the same result up to `maxRetryDelayMs`. */
  retryDelayMs: number;
  maxRetryDelayMs: number;
  /** Results sent in one call at most. */
  maxCompletionsPerCall: number;
  /**
   * A result the server keeps refusing is given up on only after this many tries and this long past its
   * lease's expiry (by then the job has been requeued and run elsewhere).
   */
  giveUpAfterTries: number;
  giveUpAfterLeaseExpiryMs: number;
  /**
   * How often a run's progress file is looked at. Updates leave at most once a second (riding a
   * heartbeat), so 250 ms is soon enough, and 50 channels cost ~2% of a core rather than twice that at
   * 100 ms (bench/long-job-supervision).
   */
  progressPollMs: number;
  /**
   * How often a long job's log files are looked at for new output (one look for all of a worker's runs):
   * half of it is what a line waits on average before it leaves (bench/log-latency).
   */
  logPollMs: number;
  /** Live-log bytes read and sent in one call at most (all runs together): the worker's memory for logs. */
  logBytesPerCall: number;
  /** A run's failsafe when its lease names none (older servers): past max-runtime, when the watchdog acts. */
  failsafeMs: number;
  /**
   * A fault injected on purpose, to test the failsafe layers with a real sandbox (`supervisor-hangs`:
   * every run's supervisor ignores its timeout, cancel and kill). Null in service.
   */
  injectFault: InjectedFault | null;
}

export const DEFAULT_WORKER_TUNING: Readonly<WorkerTuning> = Object.freeze({
  inlineOutputBytes: 64 * 1024,
  graceMs: DEFAULT_GRACE_MS,
  leaseWaitMs: 20_000,
  retryDelayMs: 500,
  maxRetryDelayMs: 5_000,
  maxCompletionsPerCall: 256,
  giveUpAfterTries: 10,
  giveUpAfterLeaseExpiryMs: 60_000,
  progressPollMs: 250,
  logPollMs: 100,
  logBytesPerCall: 4 * 1024 * 1024,
  failsafeMs: DEFAULT_FAILSAFE_MS,
  injectFault: null,
});

/** The defaults with the given values over them; an absent value keeps its default. */
export function workerTuning(overrides: Partial<WorkerTuning>): WorkerTuning {
  const tuning: WorkerTuning = { ...DEFAULT_WORKER_TUNING };
  const take = <K extends keyof WorkerTuning>(key: K): void => {
    const value = overrides[key];
    if (value !== undefined) tuning[key] = value;
  };
  for (const key of Object.keys(DEFAULT_WORKER_TUNING) as Array<keyof WorkerTuning>) take(key);
  return tuning;
}
