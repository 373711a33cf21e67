/**
 * The worker protocol, as a port. A worker (in-process pool or `remex worker` over the network) registers
 * the platforms it serves, leases jobs, heartbeats to keep its leases, and completes each lease once.
 * The scheduler implements it directly; `client/http-worker-link.ts` carries it over HTTP.
 */
import { isRemexError } from '../core/errors.js';
import type { ExecutionSpec } from '../core/model.js';
import type { HeldLease, Outcome, PlatformOffer } from '../store/ports.js';

export interface WorkerRegistration {
  /** Stable across reconnects of the same process; the server assigns one when absent. */
  id?: string;
  name: string;
  platforms: PlatformOffer[];
  slots: number;
  /** The operator's labels (`pool=arm-spot`, `version=1.4`): what an autoscaler or a blue/green switch selects by. */
  labels?: Record<string, string>;
  /** The provider's id of the machine or process (an EC2 instance id, a pid): how a scaler finds it again. */
  instanceId?: string;
  /** What it costs per hour (`--price-per-hour`), for `remex workers`; a run's report carries it too. */
  pricePerHour?: number;
}

/** Protocol features a server offers beyond the first version's calls. */
export const WORKER_PROTOCOL_FEATURES = ['complete-and-lease'] as const;
export type WorkerProtocolFeature = (typeof WORKER_PROTOCOL_FEATURES)[number];

/** Offered besides, by a server that keeps live logs (one with a log intake): `appendLogs`. */
export const LIVE_LOGS_FEATURE = 'live-logs';

/** One chunk of a running job's output a worker sends: bytes `offset` on of one stream of one run. */
export interface LogChunk {
  jobId: string;
  attempt: number;
  stream: 'stdout' | 'stderr';
  offset: number;
  /** 1 to MAX_LOG_CHUNK_BYTES (events/bus-events.ts). */
  data: Uint8Array;
}

/**
 * How much of a stream the server holds after an `appendLogs`: the worker goes on from there. `leaseLost`:
 * the run's lease is not this worker's (revoked, reassigned, the job ended); nothing of it was stored, and
 * the worker sends no more of it.
 */
export interface LogAck {
  jobId: string;
  attempt: number;
  stream: 'stdout' | 'stderr';
  storedBytes: number;
  leaseLost?: true;
}

export interface WorkerSession {
  workerId: string;
  leaseTimeoutMs: number;
  heartbeatIntervalMs: number;
  /** What the server offers beyond the first version (absent from older servers). */
  features?: string[];
}

export interface Lease {
  jobId: string;
  attempt: number;
  spec: ExecutionSpec;
  leaseExpiresAtMs: number;
  /**
   * The run's failsafe: its spec's, else the server's default. Past max-runtime + this, the worker's
   * watchdog reports the run `emergency_stopped` (absent from older servers: the worker's default).
   */
  failsafeMs?: number;
}

export interface HeartbeatReply {
  /**
   * Jobs the worker holds that it must stop: their cancellation was requested (complete them as cancelled),
   * or their lease is no longer its (requeued, or emergency-stopped by the server: the result will be stale).
   */
  cancel: string[];
  /** False when the server no longer knows this worker (it was declared gone): register again. */
  known: boolean;
  /**
   * The server orders this worker to drain (scale-in, blue/green): take nothing new, finish and commit what
   * it holds, unregister and stop. Absent from servers before it.
   */
  drain?: boolean;
}

export interface Completion {
  jobId: string;
  attempt: number;
  outcome: Outcome;
}

/** How one completion sent with a lease call ended. */
export interface CompletionSettlement {
  jobId: string;
  attempt: number;
  /**
   * committed: the result is the job's; stale: the lease is no longer this worker's (result discarded, final);
   * retry: not committed for a passing reason (the database, say) — send it again.
   */
  status: 'committed' | 'stale' | 'retry';
  message?: string;
}

export interface CompleteAndLeaseReply {
  /** One per completion sent, in the same order. */
  settled: CompletionSettlement[];
  leases: Lease[];
}

export interface WorkerLink {
  register(reg: WorkerRegistration): Promise<WorkerSession>;
  /** Up to `max` jobs; waits up to `waitMs` for one when none is queued. Resolves [] on timeout or abort. */
  lease(workerId: string, max: number, waitMs: number, signal?: AbortSignal): Promise<Lease[]>;
  /**
   * Keeps the worker known and renews its leases: those in `held` (the leases it is running), or, when
   * absent, every lease the server thinks it holds.
   */
  heartbeat(workerId: string, draining: boolean, held?: readonly HeldLease[]): Promise<HeartbeatReply>;
  /** Commits the result of one lease; ConflictError when the lease is no longer this worker's. */
  complete(workerId: string, completion: Completion): Promise<void>;
  /**
   * One round trip per job for a busy worker: commits `completions` (each settles on its own, and is
   * published at once), then leases up to `max` jobs as `lease` does, waiting up to `waitMs` for one
   * (`max` 0: none, no wait). The settlements come back with the answer. A draining heartbeat ends the
   * wait. Throws only when the call as a whole failed: no settlement is known, and the completions may be
   * sent again (those already committed then settle as stale).
   */
  completeAndLease(workerId: string, completions: readonly Completion[], max: number, waitMs: number, signal?: AbortSignal): Promise<CompleteAndLeaseReply>;
  unregister(workerId: string): Promise<void>;
  /**
   * Live logs (offered as {@link LIVE_LOGS_FEATURE}): stores the chunks, in order, and answers how much of
   * each stream sent the server holds. Idempotent by offset; a chunk past the stored end is not stored (the
   * answer says where to resume). Chunks of a run whose lease this worker does not hold are not stored:
   * their streams are answered `leaseLost`. Absent from links to servers without it.
   */
  appendLogs?(workerId: string, chunks: readonly LogChunk[]): Promise<LogAck[]>;
}

/**
 * `completeAndLease` in the calls every link has: each completion through `complete` (a lease no longer the
 * worker's settles `stale`, any other failure `retry`, with `describe`'s message), then a lease unless `max`
 * is 0. The settlements reach the caller whatever the lease does: with completions, a failing lease gives
 * no leases (the worker asks again) rather than losing them.
 */
export async function completeThenLease(
  link: Pick<WorkerLink, 'complete' | 'lease'>,
  workerId: string,
  call: { completions: readonly Completion[]; max: number; waitMs: number; signal?: AbortSignal | undefined },
  describe: (err: unknown) => string = (err) => (err instanceof Error ? err.message : String(err)),
): Promise<CompleteAndLeaseReply> {
  const { completions, max, waitMs, signal } = call;
  const settled = await Promise.all(
    completions.map(async ({ jobId, attempt, outcome }): Promise<CompletionSettlement> => {
      try {
        await link.complete(workerId, { jobId, attempt, outcome });
        return { jobId, attempt, status: 'committed' };
      } catch (err) {
        return { jobId, attempt, status: isRemexError(err, 'ABORTED') ? 'stale' : 'retry', message: describe(err) };
      }
    }),
  );
  if (max <= 0) return { settled, leases: [] };
  const leases = await link.lease(workerId, max, waitMs, signal).catch((err: unknown) => {
    if (completions.length === 0) throw err;
    return [];
  });
  return { settled, leases };
}
