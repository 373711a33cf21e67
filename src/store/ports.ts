/**
 * Store ports: durable state of jobs, the action cache and the worker registry. Adapters own their
 * connections and transactions; nothing of a driver leaks through these types. Every state change is
 * compare-and-set on (state, attempt, lease owner), so a stale worker can never commit a result.
 * Adapters: `sqlite/` (embedded, the default) and `postgres/` (shared by controllers), with the same file per
 * port in each and the same conformance suite (test/store/store-conformance.ts); rules they share are in job-rules.ts.
 */
import type { Digest } from '../core/digest.js';
import type { ExecutionSpec, JobFailure, JobProgress, JobState, RunReport } from '../core/model.js';

export interface JobRecord {
  id: string;
  /** Cache and merge key: the digest the front door computed for this action. */
  actionDigest: Digest;
  /** Separates caches and queues (REAPI instance name); '' by default. */
  instance: string;
  platform: string;
  state: JobState;
  /** Attempts started so far; the current lease belongs to this attempt. */
  attempt: number;
  /** Lower runs sooner. */
  priority: number;
  spec: ExecutionSpec;
  createdAtMs: number;
  /** When the job last entered the queue. */
  queuedAtMs: number;
  startedAtMs: number | null;
  completedAtMs: number | null;
  /** Time spent waiting for a worker, summed over attempts. */
  queueTimeMs: number;
  leaseOwner: string | null;
  leaseExpiresAtMs: number | null;
  cancelRequested: boolean;
  /** True when the result came from the action cache, not a run. */
  cached: boolean;
  result: RunReport | null;
  failure: JobFailure | null;
  /** The program's latest progress report (jobs that asked for a progress channel), with its history. */
  progress: JobProgress | null;
  /** Run at most once: when its worker is lost it fails as LOST instead of running again (a benchmark's choice). */
  noRetry: boolean;
  /** Where the server POSTs the final result (a webhook), if anywhere. */
  notifyUrl: string | null;
  /** The submitter's name for it (`stream-c7g`), if any; not part of the action, so never merged on. */
  name: string | null;
  /** The submitter's labels (`suite=stream`), selectable in listings; not part of the action either. */
  labels: Record<string, string>;
}

/** Which jobs a listing returns, newest first. */
export interface JobQuery {
  limit: number;
  states?: readonly JobState[];
  /** Any of these platforms (canonical triples). */
  platforms?: readonly string[];
  name?: string;
  /** Every label given must match. */
  labels?: Readonly<Record<string, string>>;
  createdSinceMs?: number;
  /** The next page: jobs listed after this one (older than it). An unknown id lists nothing. */
  afterId?: string;
}

export interface NewJob {
  id: string;
  actionDigest: Digest;
  instance: string;
  priority: number;
  spec: ExecutionSpec;
  nowMs: number;
  /** Merge with an identical queued or running job instead of inserting (when the spec allows caching). */
  mergeable: boolean;
  /**
   * Hand the new job straight to a worker that waits for one: inserted running (attempt 1, this lease
   * owner and expiry, started now, no queue time) instead of queued. A merge inserts nothing, as ever.
   */
  leaseTo?: { workerId: string; leaseExpiresAtMs: number };
  name?: string | null;
  labels?: Readonly<Record<string, string>>;
  noRetry?: boolean;
  notifyUrl?: string | null;
}

/** A lease as its worker knows it. */
export interface HeldLease {
  jobId: string;
  attempt: number;
  /** The program's progress since the last heartbeat, stored with the renewal (the latest wins). */
  progress?: JobProgress;
}

/** How a lease ends: the run's report, or why remex could not run it. */
export type Outcome =
  | { state: 'completed' | 'timed_out' | 'cancelled'; result: RunReport }
  | { state: 'failed' | 'cancelled' | 'emergency_stopped'; failure: JobFailure };

export interface LeaseExpiry {
  requeued: JobRecord[];
  /** Jobs that ran out of attempts and were failed as lost. */
  failed: JobRecord[];
  /** Jobs whose cancellation was requested: cancelled, never run again. */
  cancelled: JobRecord[];
}

export interface JobStore {
  /** Inserts a queued job (a running one with `leaseTo`), or returns the identical in-flight one when `mergeable` (merged = true). */
  enqueue(job: NewJob): Promise<{ job: JobRecord; merged: boolean }>;
  /** Inserts a job already completed from the action cache. */
  insertCached(job: NewJob, result: RunReport): Promise<JobRecord>;
  get(id: string): Promise<JobRecord | undefined>;
  list(query: JobQuery): Promise<JobRecord[]>;
  /**
   * Leases up to `max` queued jobs of these platforms to a worker: state running, attempt + 1. Platforms are
   * served in the order given; within one, jobs go lowest priority first, then first in, first out, and
   * are returned in that order.
   */
  claim(opts: { platforms: readonly string[]; workerId: string; max: number; leaseMs: number; nowMs: number }): Promise<JobRecord[]>;
  /**
   * Extends the worker's leases — only those in `held` when given (a lease the worker never received, its
   * answer lost with a controller, is then left to expire and be requeued), else all it owns. Returns ids
   * of the renewed jobs whose cancellation was requested.
   */
  renewLeases(workerId: string, leaseExpiresAtMs: number, held?: readonly HeldLease[]): Promise<{ renewed: number; renewedIds: string[]; cancelRequested: string[] }>;
  /** Commits a terminal state iff the job is running under this worker and attempt; undefined otherwise. */
  finish(opts: { id: string; attempt: number; workerId: string; outcome: Outcome; nowMs: number }): Promise<JobRecord | undefined>;
  /** Cancels a queued job at once, or flags a running one for its worker; returns the job as it now is. */
  cancel(id: string, nowMs: number): Promise<JobRecord | undefined>;
  /** Queued or running job to terminal `failed` regardless of lease (input missing, worker gone for good). */
  fail(id: string, failure: JobFailure, nowMs: number): Promise<JobRecord | undefined>;
  /**
   * Ends running jobs whose lease expired: cancels those whose cancellation was requested, requeues the
   * rest while attempt < maxAttempts, and fails the others as lost.
   */
  expireLeases(nowMs: number, maxAttempts: number): Promise<LeaseExpiry>;
  /**
   * Running jobs past their failsafe deadline at `nowMs`: started + the spec's `timeoutMs` + its `failsafeMs`
   * (`defaultFailsafeMs` where it has none). For the server's failsafe layer; at most `limit`, oldest first.
   */
  overdue(nowMs: number, defaultFailsafeMs: number, limit: number): Promise<JobRecord[]>;
  /** Expires at once the leases of every running job these workers hold (their process is known gone), as expireLeases does. */
  releaseLeasesOf(workerIds: readonly string[] | { prefix: string }, nowMs: number, maxAttempts: number): Promise<LeaseExpiry>;
  queueDepths(): Promise<Map<string, number>>;
  runningCounts(): Promise<Map<string, number>>;
  /** Running jobs per lease owner (worker id). */
  runningByWorker(): Promise<Map<string, number>>;
  /** Removes up to `limit` finished jobs completed before `cutoffMs` (`remex serve --retain`); how many went. */
  deleteFinishedBefore(cutoffMs: number, limit: number): Promise<number>;
}

export interface ActionCache {
  get(instance: string, actionDigest: Digest): Promise<RunReport | undefined>;
  put(instance: string, actionDigest: Digest, result: RunReport, nowMs: number): Promise<void>;
  delete(instance: string, actionDigest: Digest): Promise<void>;
}

export interface PlatformOffer {
  platform: string;
  emulated: boolean;
}

export interface WorkerRecord {
  id: string;
  name: string;
  platforms: PlatformOffer[];
  slots: number;
  /** `active` takes jobs; `draining` finishes what it holds and takes no more; `gone` left or timed out. */
  state: 'active' | 'draining' | 'gone';
  registeredAtMs: number;
  lastSeenAtMs: number;
  /** The operator's labels, as the worker registered them. */
  labels: Record<string, string>;
  /** The provider's id of its machine or process, if it said. */
  instanceId: string | null;
  /** Someone (an operator, the autoscaler) asked it to drain: its next heartbeat tells it. Kept across re-registrations. */
  drainRequested: boolean;
  /** What it said it costs per hour (`remex worker --price-per-hour`); absent when it did not say. */
  pricePerHour?: number;
}

/** What a touch learns of a known worker. */
export interface WorkerTouch {
  drainRequested: boolean;
}

export interface WorkerRegistry {
  upsert(worker: WorkerRecord): Promise<void>;
  /** Marks a worker seen (and in `state`, if given); what it should know, or undefined when it is unknown or gone. */
  touch(id: string, nowMs: number, state?: WorkerRecord['state']): Promise<WorkerTouch | undefined>;
  /** Asks a worker to drain (it hears so at its next heartbeat); false when it is unknown or gone. */
  requestDrain(id: string): Promise<boolean>;
  /**
   * Withdraws a drain order before the worker acted on it; false when it is unknown, gone, or already
   * draining (a worker that began to drain finishes and leaves: that cannot be turned back).
   */
  cancelDrain(id: string): Promise<boolean>;
  get(id: string): Promise<WorkerRecord | undefined>;
  list(): Promise<WorkerRecord[]>;
  /** Marks workers not seen since `cutoffMs` gone; returns their ids. */
  markSilentGone(cutoffMs: number): Promise<string[]>;
  /** Platforms some worker has ever offered (still registered, any state): those are servable. */
  offeredPlatforms(): Promise<PlatformOffer[]>;
}

/**
 * One holder at a time among the controllers sharing a store, for work only one may do (the autoscaler).
 * A holder that dies loses it (its connection closes, or its lease expires), and another takes over.
 */
export interface LeaderLease {
  /** Takes or keeps `name` for `holder`; true while this holder has it. */
  tryAcquire(name: string, holder: string, ttlMs: number, nowMs: number): Promise<boolean>;
  /** Gives it up if this holder has it. */
  release(name: string, holder: string): Promise<void>;
}

/** A comparison (`remex compare`) as kept; its document is the compare layer's, opaque here. */
export interface ComparisonRow {
  id: string;
  /** `running`, `completed` or `failed`. */
  state: string;
  createdAtMs: number;
  updatedAtMs: number;
  document: unknown;
}

export interface ComparisonStore {
  /** Inserts the comparison or replaces it whole (its runner is its only writer). */
  save(row: ComparisonRow): Promise<void>;
  get(id: string): Promise<ComparisonRow | undefined>;
  /** The newest first (by creation, then id), `limit` of them, those older than `afterId`'s when given (an unknown `afterId`: none). */
  list(query: { limit: number; afterId?: string }): Promise<ComparisonRow[]>;
}

/** A finished job or an action-cache entry whose blob references are not recorded yet. */
export type UnrecordedOwner =
  | { kind: 'job'; id: string; actionDigest: Digest; spec: ExecutionSpec; result: RunReport | null }
  | { kind: 'cache'; instance: string; actionDigest: Digest; result: RunReport };

/** What one recording adds: the hashes each owner references (a tree's: its own entries, files and subdirectories). */
export interface BlobReferenceBatch {
  jobs: ReadonlyArray<{ id: string; hashes: Iterable<string> }>;
  cache: ReadonlyArray<{ instance: string; actionDigest: Digest; hashes: Iterable<string> }>;
  trees: ReadonlyArray<{ root: string; hashes: Iterable<string> }>;
}

/**
 * Which CAS blobs the kept jobs and action-cache entries reference, so that the retention sweep removes
 * what only the jobs it deletes used (decision 0047). The server records finished jobs and entries after
 * the fact (never on the hot path); deleting a job or an entry, or replacing an entry's result, releases
 * its references in the same statement (a trigger), and takeUnreferenced turns released hashes that
 * nothing references any more into the CAS's to remove.
 */
export interface BlobReferences {
  /** Up to `limit` finished jobs and action-cache entries whose references are not recorded yet. */
  unrecorded(limit: number): Promise<UnrecordedOwner[]>;
  /** Those of these tree roots whose members are recorded. */
  recordedTrees(roots: readonly string[]): Promise<Set<string>>;
  /** Records the references and marks the jobs and entries recorded (an owner gone meanwhile records nothing). */
  record(batch: BlobReferenceBatch): Promise<void>;
  /**
   * Takes up to `limit` released hashes and returns those nothing references any more (no job, entry or
   * parent tree); such a tree releases its members on the way.
   */
  takeUnreferenced(limit: number): Promise<string[]>;
  /** Offers these hashes again at the next takeUnreferenced (the CAS kept them for now: pinned, or used lately). */
  release(hashes: readonly string[]): Promise<void>;
}

/** One piece of a running job's live log kept in the CAS: bytes `offset` on of one stream of one run (decision 0043). */
export interface LogPiece {
  offset: number;
  sizeBytes: number;
  /** SHA-256 of the bytes, hex: the CAS blob holding them. */
  hash: string;
}

/**
 * Where a running job's live log is, piece by piece, in a database every controller shares: each piece is a
 * CAS blob, so any controller reads what another took in. Append-only by offset, per run and stream.
 */
export interface LogPieceIndex {
  /**
   * Records a piece when it starts exactly at the stream's end (else records nothing: another controller
   * stored these bytes, or a piece before it is missing), and answers the stream's end after.
   */
  append(jobId: string, attempt: number, stream: string, piece: LogPiece): Promise<number>;
  /** The pieces holding bytes past `from`, in offset order, at most `limit`. */
  pieces(jobId: string, attempt: number, stream: string, from: number, limit: number): Promise<LogPiece[]>;
  /** The stream's end: 0 when nothing is recorded. */
  end(jobId: string, attempt: number, stream: string): Promise<number>;
  /** Forgets every piece of a job (it ended: its output is in its result). */
  remove(jobId: string): Promise<void>;
}

/** One embedded or networked database holding all four. */
export interface Store {
  readonly jobs: JobStore;
  readonly actionCache: ActionCache;
  readonly workers: WorkerRegistry;
  /** Leadership among the controllers sharing this store (the autoscaler's). */
  readonly leader?: LeaderLease;
  readonly comparisons: ComparisonStore;
  readonly blobReferences: BlobReferences;
  /** Live logs shared by the controllers of one store (decision 0043). */
  readonly logPieces: LogPieceIndex;
  close(): Promise<void>;
}
