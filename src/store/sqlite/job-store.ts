/**
 * The JobStore on SQLite. Each state change is one compare-and-set statement or a short transaction, run
 * synchronously underneath: atomic with respect to every other caller in the process, so a claim or a merge
 * needs no locking of its own.
 */
import type Database from 'better-sqlite3';
import type { JobFailure, JobProgress, JobState, RunReport } from '../../core/model.js';
import { CANCELLED_BEFORE_START, CANCELLED_WORKER_LOST, LOST_NO_RETRY, compareDispatchOrder, lostFailure } from '../job-rules.js';
import { JOB_COLUMN_NAMES, NEW_JOB_COLUMNS, newJobValues } from '../job-row.js';
import type { HeldLease, JobQuery, JobRecord, JobStore, LeaseExpiry, NewJob, Outcome } from '../ports.js';
import { checkLabels } from '../../core/labels.js';

interface JobRow {
  id: string;
  instance: string;
  action_hash: string;
  action_size: number;
  platform: string;
  state: JobState;
  attempt: number;
  priority: number;
  spec: string;
  created_at: number;
  queued_at: number;
  started_at: number | null;
  completed_at: number | null;
  queue_time_ms: number;
  lease_owner: string | null;
  lease_expires_at: number | null;
  cancel_requested: number;
  cached: number;
  result: string | null;
  failure: string | null;
  name: string | null;
  labels: string;
  progress: string | null;
  no_retry: number;
  notify_url: string | null;
}

function toJob(row: JobRow): JobRecord {
  return {
    id: row.id,
    actionDigest: { hash: row.action_hash, sizeBytes: row.action_size },
    instance: row.instance,
    platform: row.platform,
    state: row.state,
    attempt: row.attempt,
    priority: row.priority,
    spec: JSON.parse(row.spec) as JobRecord['spec'],
    createdAtMs: row.created_at,
    queuedAtMs: row.queued_at,
    startedAtMs: row.started_at,
    completedAtMs: row.completed_at,
    queueTimeMs: row.queue_time_ms,
    leaseOwner: row.lease_owner,
    leaseExpiresAtMs: row.lease_expires_at,
    cancelRequested: row.cancel_requested === 1,
    cached: row.cached === 1,
    result: row.result === null ? null : (JSON.parse(row.result) as RunReport),
    failure: row.failure === null ? null : (JSON.parse(row.failure) as JobFailure),
    name: row.name,
    labels: JSON.parse(row.labels) as Record<string, string>,
    progress: row.progress === null ? null : (JSON.parse(row.progress) as JobProgress),
    noRetry: row.no_retry === 1,
    notifyUrl: row.notify_url,
  };
}

const JOB_COLUMNS = JOB_COLUMN_NAMES.join(', ');

export class SqliteJobStore implements JobStore {
  private readonly s;

  constructor(private readonly db: Database.Database) {
    const prepare = <R>(sql: string) => db.prepare<unknown[], R>(sql);
    this.s = {
      insert: prepare<JobRow>(`INSERT INTO jobs (${NEW_JOB_COLUMNS.join(', ')})
        VALUES (${NEW_JOB_COLUMNS.map(() => '?').join(', ')}) RETURNING ${JOB_COLUMNS}`),
      inflight: prepare<JobRow>(`SELECT ${JOB_COLUMNS} FROM jobs WHERE instance = ? AND action_hash = ? AND action_size = ?
          AND mergeable = 1 AND state IN ('queued','running')`),
      get: prepare<JobRow>(`SELECT ${JOB_COLUMNS} FROM jobs WHERE id = ?`),
      list: prepare<JobRow>(`SELECT ${JOB_COLUMNS} FROM jobs ORDER BY seq DESC LIMIT ?`),
      // RETURNING has no ORDER BY: `seq` comes back so the batch can be put in dispatch order.
      claim: prepare<JobRow & { seq: number }>(`UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_owner = ?,
          lease_expires_at = ?, started_at = ?, queue_time_ms = queue_time_ms + max(0, ? - queued_at)
        WHERE seq IN (SELECT seq FROM jobs WHERE state = 'queued' AND platform = ? ORDER BY priority, seq LIMIT ?)
        RETURNING ${JOB_COLUMNS}, seq`),
      // A claim over several platforms: the head of each platform's queue, then the chosen rows by seq.
      heads: prepare<{ seq: number; priority: number }>(`SELECT seq, priority FROM jobs
        WHERE state = 'queued' AND platform = ? ORDER BY priority, seq LIMIT ?`),
      claimSeq: prepare<JobRow & { seq: number }>(`UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_owner = ?,
          lease_expires_at = ?, started_at = ?, queue_time_ms = queue_time_ms + max(0, ? - queued_at)
        WHERE seq = ? AND state = 'queued' RETURNING ${JOB_COLUMNS}, seq`),
      renew: prepare<{ id: string; cancel_requested: number }>(`UPDATE jobs SET lease_expires_at = ?
        WHERE state = 'running' AND lease_owner = ? RETURNING id, cancel_requested`),
      renewHeld: prepare<{ id: string; cancel_requested: number }>(`UPDATE jobs SET lease_expires_at = ?, progress = coalesce(?, progress)
        WHERE state = 'running' AND lease_owner = ? AND id = ? AND attempt = ? RETURNING id, cancel_requested`),
      finishResult: prepare<JobRow>(`UPDATE jobs SET state = ?, result = ?, completed_at = ?, lease_owner = NULL,
          lease_expires_at = NULL
        WHERE id = ? AND attempt = ? AND lease_owner = ? AND state = 'running' RETURNING ${JOB_COLUMNS}`),
      finishFailure: prepare<JobRow>(`UPDATE jobs SET state = ?, failure = ?, completed_at = ?, lease_owner = NULL,
          lease_expires_at = NULL
        WHERE id = ? AND attempt = ? AND lease_owner = ? AND state = 'running' RETURNING ${JOB_COLUMNS}`),
      cancelQueued: prepare<JobRow>(`UPDATE jobs SET state = 'cancelled', completed_at = ?, failure = ?
        WHERE id = ? AND state = 'queued' RETURNING ${JOB_COLUMNS}`),
      flagCancel: prepare<JobRow>(`UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND state = 'running'
        RETURNING ${JOB_COLUMNS}`),
      fail: prepare<JobRow>(`UPDATE jobs SET state = 'failed', failure = ?, completed_at = ?, lease_owner = NULL,
          lease_expires_at = NULL
        WHERE id = ? AND state IN ('queued','running') RETURNING ${JOB_COLUMNS}`),
      // A cancellation that its lost worker never acted on still stands: the job ends, it does not run again.
      expiredCancel: prepare<JobRow>(`UPDATE jobs SET state = 'cancelled', completed_at = ?, lease_owner = NULL,
          lease_expires_at = NULL, failure = ?
        WHERE state = 'running' AND lease_expires_at < ? AND cancel_requested = 1 RETURNING ${JOB_COLUMNS}`),
      expiredRequeue: prepare<JobRow>(`UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL,
          cancel_requested = 0, queued_at = ?
        WHERE state = 'running' AND lease_expires_at < ? AND attempt < ? AND no_retry = 0 RETURNING ${JOB_COLUMNS}`),
      expiredFail: prepare<JobRow>(`UPDATE jobs SET state = 'failed', completed_at = ?, lease_owner = NULL,
          lease_expires_at = NULL, failure = CASE WHEN no_retry = 1 THEN ? ELSE ? END
        WHERE state = 'running' AND lease_expires_at < ? RETURNING ${JOB_COLUMNS}`),
      // The running rows are few (a fleet's slots), and the partial index on running jobs finds them.
      overdue: prepare<JobRow>(`SELECT ${JOB_COLUMNS} FROM jobs
        WHERE state = 'running' AND lease_expires_at IS NOT NULL
          AND started_at + json_extract(spec, '$.timeoutMs') + coalesce(json_extract(spec, '$.failsafeMs'), ?) < ?
        ORDER BY started_at LIMIT ?`),
      expireOwner: prepare(`UPDATE jobs SET lease_expires_at = 0 WHERE state = 'running' AND lease_owner = ?`),
      expireOwnerPrefix: prepare(`UPDATE jobs SET lease_expires_at = 0
        WHERE state = 'running' AND substr(lease_owner, 1, ?) = ?`),
      depths: prepare<{ platform: string; n: number }>(`SELECT platform, count(*) AS n FROM jobs
        WHERE state = 'queued' GROUP BY platform`),
      running: prepare<{ platform: string; n: number }>(`SELECT platform, count(*) AS n FROM jobs
        WHERE state = 'running' GROUP BY platform`),
      byWorker: prepare<{ owner: string; n: number }>(`SELECT lease_owner AS owner, count(*) AS n FROM jobs
        WHERE state = 'running' GROUP BY lease_owner`),
      deleteFinished: prepare<never>(`DELETE FROM jobs WHERE id IN (SELECT id FROM jobs
        WHERE state IN ('completed', 'timed_out', 'cancelled', 'failed', 'emergency_stopped') AND completed_at < ? LIMIT ?)`),
    };
  }

  async enqueue(job: NewJob): Promise<{ job: JobRecord; merged: boolean }> {
    return this.db.transaction(() => {
      if (job.mergeable) {
        const existing = this.s.inflight.get(job.instance, job.actionDigest.hash, job.actionDigest.sizeBytes);
        if (existing) return { job: toJob(existing), merged: true };
      }
      const row = this.s.insert.get(...this.insertArgs(job, job.leaseTo ? 'running' : 'queued', null)) as JobRow;
      return { job: toJob(row), merged: false };
    })();
  }

  async insertCached(job: NewJob, result: RunReport): Promise<JobRecord> {
    const row = this.s.insert.get(...this.insertArgs({ ...job, mergeable: false }, 'completed', result)) as JobRow;
    return toJob(row);
  }

  /** The new row's values as SQLite binds them (booleans as 0/1). */
  private insertArgs(job: NewJob, state: JobState, cachedResult: RunReport | null): unknown[] {
    return newJobValues(job, state, cachedResult).map((v) => (typeof v === 'boolean' ? (v ? 1 : 0) : v));
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const row = this.s.get.get(id);
    return row ? toJob(row) : undefined;
  }

  async list(query: JobQuery): Promise<JobRecord[]> {
    const plain = !query.states && !query.platforms && query.name === undefined && !query.labels && query.createdSinceMs === undefined && query.afterId === undefined;
    if (plain) return this.s.list.all(query.limit).map(toJob);
    if (query.states?.length === 0 || query.platforms?.length === 0) return [];
    const where: string[] = [];
    const args: unknown[] = [];
    if (query.states) {
      where.push(`state IN (${query.states.map(() => '?').join(',')})`);
      args.push(...query.states);
    }
    if (query.platforms) {
      where.push(`platform IN (${query.platforms.map(() => '?').join(',')})`);
      args.push(...query.platforms);
    }
    if (query.name !== undefined) {
      where.push('name = ?');
      args.push(query.name);
    }
    if (query.labels) {
      checkLabels(query.labels, 'label selector');
      // Label names are checked: a quoted JSON path key cannot be broken out of.
      for (const [label, value] of Object.entries(query.labels)) {
        where.push('json_extract(labels, ?) = ?');
        args.push(`$."${label}"`, value);
      }
    }
    if (query.createdSinceMs !== undefined) {
      where.push('created_at >= ?');
      args.push(query.createdSinceMs);
    }
    if (query.afterId !== undefined) {
      where.push('seq < (SELECT seq FROM jobs WHERE id = ?)');
      args.push(query.afterId);
    }
    return this.db
      .prepare<unknown[], JobRow>(`SELECT ${JOB_COLUMNS} FROM jobs WHERE ${where.join(' AND ')} ORDER BY seq DESC LIMIT ?`)
      .all(...args, query.limit)
      .map(toJob);
  }

  async claim(opts: { platforms: readonly string[]; workerId: string; max: number; leaseMs: number; nowMs: number }): Promise<JobRecord[]> {
    if (opts.max <= 0 || opts.platforms.length === 0) return [];
    const lease = [opts.workerId, opts.nowMs + opts.leaseMs, opts.nowMs, opts.nowMs] as const;
    if (opts.platforms.length === 1) {
      return this.s.claim
        .all(...lease, opts.platforms[0], opts.max)
        .sort(compareDispatchOrder)
        .map(toJob);
    }
    // Several platforms: one dispatch order across them (job-rules), so that a worker serving a busy
    // platform and a quiet one does not leave the quiet one's jobs queued behind the busy one's for as
    // long as the busy queue is not empty. Each platform's head comes from its index; at most max of each.
    return this.db.transaction(() => {
      const heads = opts.platforms.flatMap((platform) => this.s.heads.all(platform, opts.max));
      const chosen = heads.sort(compareDispatchOrder).slice(0, opts.max);
      const claimed = chosen.flatMap((head) => this.s.claimSeq.all(...lease, head.seq));
      return claimed.map(toJob);
    })();
  }

  async renewLeases(workerId: string, leaseExpiresAtMs: number, held?: readonly HeldLease[]): Promise<{ renewed: number; renewedIds: string[]; cancelRequested: string[] }> {
    const rows = held
      ? this.db.transaction(() => held.flatMap((h) => this.s.renewHeld.all(leaseExpiresAtMs, h.progress ? JSON.stringify(h.progress) : null, workerId, h.jobId, h.attempt)))()
      : this.s.renew.all(leaseExpiresAtMs, workerId);
    return { renewed: rows.length, renewedIds: rows.map((r) => r.id), cancelRequested: rows.filter((r) => r.cancel_requested === 1).map((r) => r.id) };
  }

  async finish(opts: { id: string; attempt: number; workerId: string; outcome: Outcome; nowMs: number }): Promise<JobRecord | undefined> {
    const { outcome } = opts;
    const row =
      'result' in outcome
        ? this.s.finishResult.get(outcome.state, JSON.stringify(outcome.result), opts.nowMs, opts.id, opts.attempt, opts.workerId)
        : this.s.finishFailure.get(outcome.state, JSON.stringify(outcome.failure), opts.nowMs, opts.id, opts.attempt, opts.workerId);
    return row ? toJob(row) : undefined;
  }

  async cancel(id: string, nowMs: number): Promise<JobRecord | undefined> {
    return this.db.transaction(() => {
      const row = this.s.cancelQueued.get(nowMs, JSON.stringify(CANCELLED_BEFORE_START), id) ?? this.s.flagCancel.get(id) ?? this.s.get.get(id);
      return row ? toJob(row) : undefined;
    })();
  }

  async fail(id: string, failure: JobFailure, nowMs: number): Promise<JobRecord | undefined> {
    const row = this.s.fail.get(JSON.stringify(failure), nowMs, id);
    return row ? toJob(row) : undefined;
  }

  async expireLeases(nowMs: number, maxAttempts: number): Promise<LeaseExpiry> {
    return this.db.transaction(() => {
      const cancelled = this.s.expiredCancel.all(nowMs, JSON.stringify(CANCELLED_WORKER_LOST), nowMs).map(toJob);
      const requeued = this.s.expiredRequeue.all(nowMs, nowMs, maxAttempts).map(toJob);
      const failed = this.s.expiredFail.all(nowMs, JSON.stringify(LOST_NO_RETRY), JSON.stringify(lostFailure(maxAttempts)), nowMs).map(toJob);
      return { requeued, failed, cancelled };
    })();
  }

  async overdue(nowMs: number, defaultFailsafeMs: number, limit: number): Promise<JobRecord[]> {
    return this.s.overdue.all(defaultFailsafeMs, nowMs, limit).map(toJob);
  }

  async releaseLeasesOf(workerIds: readonly string[] | { prefix: string }, nowMs: number, maxAttempts: number): Promise<LeaseExpiry> {
    this.db.transaction(() => {
      if ('prefix' in workerIds) this.s.expireOwnerPrefix.run(workerIds.prefix.length, workerIds.prefix);
      else for (const id of workerIds) this.s.expireOwner.run(id);
    })();
    return this.expireLeases(nowMs, maxAttempts);
  }

  async queueDepths(): Promise<Map<string, number>> {
    return new Map(this.s.depths.all().map((r) => [r.platform, r.n]));
  }

  async runningCounts(): Promise<Map<string, number>> {
    return new Map(this.s.running.all().map((r) => [r.platform, r.n]));
  }

  async runningByWorker(): Promise<Map<string, number>> {
    return new Map(this.s.byWorker.all().map((r) => [r.owner, r.n]));
  }

  async deleteFinishedBefore(cutoffMs: number, limit: number): Promise<number> {
    return this.s.deleteFinished.run(cutoffMs, limit).changes;
  }
}
