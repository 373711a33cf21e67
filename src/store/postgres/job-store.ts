/**
 * The JobStore on PostgreSQL. Each state change is one compare-and-set statement (`UPDATE … WHERE state …
 * AND attempt … AND lease_owner …`), so controllers need no coordination beyond the database: claims take
 * the head of a queue with `FOR UPDATE SKIP LOCKED` (two controllers never hand one job to two workers, and
 * never wait for each other), the in-flight merge is a unique partial index with `ON CONFLICT DO NOTHING`,
 * and lease expiry skips rows another controller holds at that moment (the next reaper tick sees them).
 * Inserts, single-platform claims and finishes of concurrent callers share statements (group commit:
 * docs/decisions/0010-postgres-group-commit.md).
 */
import type { PoolClient } from 'pg';
import type { JobFailure, JobProgress, JobState, RunReport } from '../../core/model.js';
import { CANCELLED_BEFORE_START, CANCELLED_WORKER_LOST, LOST_NO_RETRY, compareDispatchOrder, lostFailure } from '../job-rules.js';
import { JOB_COLUMN_NAMES, NEW_JOB_COLUMNS, newJobValues } from '../job-row.js';
import type { NewJobColumn } from '../job-row.js';
import type { HeldLease, JobQuery, JobRecord, JobStore, LeaseExpiry, NewJob, Outcome } from '../ports.js';
import { checkLabels } from '../../core/labels.js';
import { int, intOrNull, refusedByDatabase } from './connection.js';
import type { PostgresDb } from './connection.js';
import { StatementBatcher } from './statement-batcher.js';

interface JobRow {
  seq: string;
  id: string;
  instance: string;
  action_hash: string;
  action_size: string;
  platform: string;
  state: JobState;
  attempt: number;
  priority: number;
  /** json columns arrive parsed. */
  spec: JobRecord['spec'];
  created_at: string;
  queued_at: string;
  started_at: string | null;
  completed_at: string | null;
  queue_time_ms: string;
  lease_owner: string | null;
  lease_expires_at: string | null;
  cancel_requested: boolean;
  cached: boolean;
  result: RunReport | null;
  failure: JobFailure | null;
  name: string | null;
  labels: Record<string, string>;
  progress: JobProgress | null;
  no_retry: boolean;
  notify_url: string | null;
}

function toJob(row: JobRow): JobRecord {
  return {
    id: row.id,
    actionDigest: { hash: row.action_hash, sizeBytes: int(row.action_size) },
    instance: row.instance,
    platform: row.platform,
    state: row.state,
    attempt: row.attempt,
    priority: row.priority,
    spec: row.spec,
    createdAtMs: int(row.created_at),
    queuedAtMs: int(row.queued_at),
    startedAtMs: intOrNull(row.started_at),
    completedAtMs: intOrNull(row.completed_at),
    queueTimeMs: int(row.queue_time_ms),
    leaseOwner: row.lease_owner,
    leaseExpiresAtMs: intOrNull(row.lease_expires_at),
    cancelRequested: row.cancel_requested,
    cached: row.cached,
    result: row.result,
    failure: row.failure,
    name: row.name,
    labels: row.labels,
    progress: row.progress,
    noRetry: row.no_retry,
    notifyUrl: row.notify_url,
  };
}

/** Dispatch order within a batch (job-rules); `seq` is int8, which arrives as a string. */
function byDispatchOrder(a: JobRow, b: JobRow): number {
  return compareDispatchOrder({ priority: a.priority, seq: int(a.seq) }, { priority: b.priority, seq: int(b.seq) });
}

/** Every row read carries `seq`: batches are put in dispatch order, and expiries in insertion order. */
const READ_COLUMNS = ['seq', ...JOB_COLUMN_NAMES] as const;
const JOB_COLUMNS = READ_COLUMNS.join(', ');

/** One worker's claim on one platform, as the batched statement takes it. */
interface ClaimItem {
  workerId: string;
  platform: string;
  max: number;
  leaseExpiresAtMs: number;
  nowMs: number;
}

/** One finish as the batched statement takes it. */
interface FinishItem {
  id: string;
  attempt: number;
  workerId: string;
  state: string;
  result: string | null;
  failure: string | null;
  nowMs: number;
}

export class PostgresJobStore implements JobStore {
  private readonly sql;
  /** Inserts and finishes of concurrent callers share statements (group commit): see StatementBatcher. */
  private readonly inserts: StatementBatcher<unknown[], JobRow | undefined>;
  private readonly finishes: StatementBatcher<FinishItem, JobRow | undefined>;
  private readonly claims: StatementBatcher<ClaimItem, JobRow[]>;

  constructor(private readonly db: PostgresDb) {
    const jobs = `${db.schema}.jobs`;
    this.sql = {
      insert: `INSERT INTO ${jobs} (${NEW_JOB_COLUMNS.join(', ')})
        VALUES (${NEW_JOB_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})
        ON CONFLICT (instance, action_hash, action_size) WHERE mergeable AND state IN ('queued','running') DO NOTHING
        RETURNING ${JOB_COLUMNS}`,
      // The insert above for many rows: one array per column, zipped by unnest, row order kept.
      insertMany: `INSERT INTO ${jobs} (${NEW_JOB_COLUMNS.join(', ')})
        SELECT * FROM unnest(${NEW_JOB_COLUMNS.map((c, i) => `$${i + 1}::${NEW_JOB_TYPES[c]}[]`).join(', ')})
        ON CONFLICT (instance, action_hash, action_size) WHERE mergeable AND state IN ('queued','running') DO NOTHING
        RETURNING ${JOB_COLUMNS}`,
      inflight: `SELECT ${JOB_COLUMNS} FROM ${jobs} WHERE instance = $1 AND action_hash = $2 AND action_size = $3
          AND mergeable AND state IN ('queued','running')`,
      get: `SELECT ${JOB_COLUMNS} FROM ${jobs} WHERE id = $1`,
      list: `SELECT ${JOB_COLUMNS} FROM ${jobs} ORDER BY seq DESC LIMIT $1`,
      // A claim over several platforms: one dispatch order across them (job-rules), so a busy platform's
      // queue does not hold a quiet one's jobs back. SKIP LOCKED: rows another controller is claiming right
      // now are passed over, not waited for, and only the rows taken are locked (a claimer never holds rows
      // it leaves, which others would then pass over). The outer `state = 'queued'` re-checks each row once
      // locked. One statement: a controller dying halfway leaves no job leased to a worker that never heard.
      claimAcross: `WITH head AS (
          SELECT seq FROM ${jobs} WHERE state = 'queued' AND platform = ANY($5::text[]) ORDER BY priority, seq LIMIT $6
          FOR UPDATE SKIP LOCKED
        )
        UPDATE ${jobs} AS j SET state = 'running', attempt = j.attempt + 1, lease_owner = $1, lease_expires_at = $2,
          started_at = $3, queue_time_ms = j.queue_time_ms + greatest(0, $4::int8 - j.queued_at)
        FROM head WHERE j.seq = head.seq AND j.state = 'queued'
        RETURNING ${READ_COLUMNS.map((c) => `j.${c}`).join(', ')}`,
      // A claim of one platform for several workers at once: their wanted slots are numbered in the
      // order the workers asked, the head of the queue in dispatch order, and slot n gets job n.
      claimMany: `WITH req AS (
          SELECT * FROM unnest($1::text[], $2::int4[], $3::int8[], $4::int8[]) WITH ORDINALITY AS r(owner, want, expires, now, ord)
        ), slot AS (
          SELECT req.owner, req.expires, req.now, row_number() OVER (ORDER BY req.ord, k) AS n
          FROM req CROSS JOIN LATERAL generate_series(1, req.want) AS k
        ), head AS (
          SELECT seq, priority FROM ${jobs} WHERE state = 'queued' AND platform = $5 ORDER BY priority, seq LIMIT $6
          FOR UPDATE SKIP LOCKED
        ), pick AS (
          SELECT seq, row_number() OVER (ORDER BY priority, seq) AS n FROM head
        )
        UPDATE ${jobs} AS j SET state = 'running', attempt = j.attempt + 1, lease_owner = slot.owner, lease_expires_at = slot.expires,
          started_at = slot.now, queue_time_ms = j.queue_time_ms + greatest(0, slot.now - j.queued_at)
        FROM pick JOIN slot USING (n) WHERE j.seq = pick.seq AND j.state = 'queued'
        RETURNING ${READ_COLUMNS.map((c) => `j.${c}`).join(', ')}`,
      renew: `UPDATE ${jobs} SET lease_expires_at = $1 WHERE state = 'running' AND lease_owner = $2
        RETURNING id, cancel_requested`,
      renewHeld: `UPDATE ${jobs} AS j SET lease_expires_at = $1, progress = coalesce(h.progress::json, j.progress)
        FROM unnest($3::text[], $4::int4[], $5::text[]) AS h (id, attempt, progress)
        WHERE j.state = 'running' AND j.lease_owner = $2 AND j.id = h.id AND j.attempt = h.attempt
        RETURNING j.id, j.cancel_requested`,
      // Compare-and-set of many finishes at once; each item carries either a result or a failure. A batch
      // never holds two items for one job (StatementBatcher keyOf), so each row is judged once.
      finishMany: `UPDATE ${jobs} AS j SET state = v.state, result = coalesce(v.result, j.result), failure = coalesce(v.failure, j.failure),
          completed_at = v.completed_at, lease_owner = NULL, lease_expires_at = NULL
        FROM unnest($1::text[], $2::int4[], $3::text[], $4::text[], $5::json[], $6::json[], $7::int8[])
          AS v(id, attempt, owner, state, result, failure, completed_at)
        WHERE j.id = v.id AND j.attempt = v.attempt AND j.lease_owner = v.owner AND j.state = 'running'
        RETURNING ${READ_COLUMNS.map((c) => `j.${c}`).join(', ')}`,
      // One statement for both cases, so a job that changes state meanwhile is judged on its newest version.
      cancel: `UPDATE ${jobs} SET
          state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
          completed_at = CASE WHEN state = 'queued' THEN $2 ELSE completed_at END,
          failure = CASE WHEN state = 'queued' THEN $3::json ELSE failure END,
          cancel_requested = cancel_requested OR state = 'running'
        WHERE id = $1 AND state IN ('queued','running') RETURNING ${JOB_COLUMNS}`,
      fail: `UPDATE ${jobs} SET state = 'failed', failure = $1, completed_at = $2, lease_owner = NULL, lease_expires_at = NULL
        WHERE id = $3 AND state IN ('queued','running') RETURNING ${JOB_COLUMNS}`,
      // Expiry skips rows locked elsewhere (a worker completing or renewing right now, another controller's
      // reaper): it never waits, so it cannot deadlock, and what it skipped the next tick sees.
      // A cancellation that its lost worker never acted on still stands: the job ends, it does not run again.
      expiredCancel: `UPDATE ${jobs} SET state = 'cancelled', completed_at = $1, lease_owner = NULL, lease_expires_at = NULL,
          failure = $2
        WHERE seq IN (SELECT seq FROM ${jobs} WHERE state = 'running' AND lease_expires_at < $1 AND cancel_requested
          FOR UPDATE SKIP LOCKED)
        RETURNING ${JOB_COLUMNS}`,
      expiredRequeue: `UPDATE ${jobs} SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL, cancel_requested = false,
          queued_at = $1
        WHERE seq IN (SELECT seq FROM ${jobs} WHERE state = 'running' AND lease_expires_at < $1 AND attempt < $2 AND NOT no_retry
          FOR UPDATE SKIP LOCKED)
        RETURNING ${JOB_COLUMNS}`,
      expiredFail: `UPDATE ${jobs} SET state = 'failed', completed_at = $1, lease_owner = NULL, lease_expires_at = NULL,
          failure = CASE WHEN no_retry THEN $3::json ELSE $2::json END
        WHERE seq IN (SELECT seq FROM ${jobs} WHERE state = 'running' AND lease_expires_at < $1 FOR UPDATE SKIP LOCKED)
        RETURNING ${JOB_COLUMNS}`,
      // The running rows are few (a fleet's slots), and the partial index on running jobs finds them.
      overdue: `SELECT ${JOB_COLUMNS} FROM ${jobs}
        WHERE state = 'running' AND lease_expires_at IS NOT NULL
          AND started_at + (spec->>'timeoutMs')::int8 + coalesce((spec->>'failsafeMs')::int8, $1) < $2
        ORDER BY started_at LIMIT $3`,
      expireOwners: `UPDATE ${jobs} SET lease_expires_at = 0 WHERE state = 'running' AND lease_owner = ANY($1::text[])`,
      expireOwnerPrefix: `UPDATE ${jobs} SET lease_expires_at = 0 WHERE state = 'running' AND starts_with(lease_owner, $1)`,
      depths: `SELECT platform, count(*) AS n FROM ${jobs} WHERE state = 'queued' GROUP BY platform`,
      running: `SELECT platform, count(*) AS n FROM ${jobs} WHERE state = 'running' GROUP BY platform`,
      byWorker: `SELECT lease_owner AS owner, count(*) AS n FROM ${jobs} WHERE state = 'running' GROUP BY lease_owner`,
      deleteFinished: `DELETE FROM ${jobs} WHERE seq IN (SELECT seq FROM ${jobs}
        WHERE state IN ('completed', 'timed_out', 'cancelled', 'failed', 'emergency_stopped') AND completed_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING seq`,
    };
    this.inserts = new StatementBatcher({
      retryAlone: refusedByDatabase,
      keyOf: (args) => String(args[0]),
      run: async (rows) => {
        if (rows.length === 1) return [(await this.db.query<JobRow>(this.sql.insert, rows[0] as unknown[]))[0]];
        const columns = NEW_JOB_COLUMNS.map((_, c) => rows.map((r) => r[c]));
        const inserted = new Map((await this.db.query<JobRow>(this.sql.insertMany, columns)).map((r) => [r.id, r]));
        return rows.map((r) => inserted.get(String(r[0])));
      },
    });
    this.claims = new StatementBatcher({
      retryAlone: refusedByDatabase,
      // One worker's claims go one at a time: its slots are numbered by request.
      keyOf: (c) => c.workerId,
      run: async (items) => {
        const byPlatform = new Map<string, ClaimItem[]>();
        for (const item of items) {
          const group = byPlatform.get(item.platform);
          if (group) group.push(item);
          else byPlatform.set(item.platform, [item]);
        }
        const byOwner = new Map<string, JobRow[]>();
        await Promise.all(
          [...byPlatform].map(async ([platform, group]) => {
            const rows = await this.db.query<JobRow>(this.sql.claimMany, [
              group.map((c) => c.workerId),
              group.map((c) => c.max),
              group.map((c) => c.leaseExpiresAtMs),
              group.map((c) => c.nowMs),
              platform,
              group.reduce((n, c) => n + c.max, 0),
            ]);
            for (const row of rows) {
              const owned = byOwner.get(row.lease_owner as string);
              if (owned) owned.push(row);
              else byOwner.set(row.lease_owner as string, [row]);
            }
          }),
        );
        return items.map((c) => (byOwner.get(c.workerId) ?? []).sort(byDispatchOrder));
      },
    });
    this.finishes = new StatementBatcher({
      retryAlone: refusedByDatabase,
      keyOf: (f) => f.id,
      run: async (items) => {
        const columns = [
          items.map((f) => f.id),
          items.map((f) => f.attempt),
          items.map((f) => f.workerId),
          items.map((f) => f.state),
          items.map((f) => f.result),
          items.map((f) => f.failure),
          items.map((f) => f.nowMs),
        ];
        const finished = new Map((await this.db.query<JobRow>(this.sql.finishMany, columns)).map((r) => [r.id, r]));
        return items.map((f) => finished.get(f.id));
      },
    });
  }

  async enqueue(job: NewJob): Promise<{ job: JobRecord; merged: boolean }> {
    const args = newJobValues(job, job.leaseTo ? 'running' : 'queued', null);
    // The in-flight job we conflicted with may finish before we read it; then insert again. Bounded: each
    // round needs another job to have entered and left the in-flight state meanwhile.
    for (let round = 0; ; round++) {
      const inserted = round === 0 ? await this.inserts.submit(args) : (await this.db.query<JobRow>(this.sql.insert, args))[0];
      if (inserted) return { job: toJob(inserted), merged: false };
      const [existing] = await this.db.query<JobRow>(this.sql.inflight, [job.instance, job.actionDigest.hash, job.actionDigest.sizeBytes]);
      if (existing) return { job: toJob(existing), merged: true };
      if (round >= 100) throw new Error(`enqueue of ${job.id}: the in-flight job it merges with kept changing`);
    }
  }

  async insertCached(job: NewJob, result: RunReport): Promise<JobRecord> {
    const [row] = await this.db.query<JobRow>(this.sql.insert, newJobValues({ ...job, mergeable: false }, 'completed', result));
    if (!row) throw new Error(`insert of cached job ${job.id} returned no row`);
    return toJob(row);
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const [row] = await this.db.query<JobRow>(this.sql.get, [id]);
    return row ? toJob(row) : undefined;
  }

  async list(query: JobQuery): Promise<JobRecord[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    const arg = (value: unknown): string => `$${args.push(value)}`;
    if (query.states) where.push(`state = ANY(${arg(query.states)}::text[])`);
    if (query.platforms) where.push(`platform = ANY(${arg(query.platforms)}::text[])`);
    if (query.name !== undefined) where.push(`name = ${arg(query.name)}`);
    if (query.labels) {
      checkLabels(query.labels, 'label selector');
      for (const [label, value] of Object.entries(query.labels)) where.push(`labels ->> ${arg(label)} = ${arg(value)}`);
    }
    if (query.createdSinceMs !== undefined) where.push(`created_at >= ${arg(query.createdSinceMs)}`);
    if (query.afterId !== undefined) where.push(`seq < (SELECT seq FROM ${this.db.schema}.jobs WHERE id = ${arg(query.afterId)})`);
    const sql = where.length === 0 ? this.sql.list : `SELECT ${JOB_COLUMNS} FROM ${this.db.schema}.jobs WHERE ${where.join(' AND ')} ORDER BY seq DESC LIMIT ${arg(query.limit)}`;
    return (await this.db.query<JobRow>(sql, where.length === 0 ? [query.limit] : args)).map(toJob);
  }

  async claim(opts: { platforms: readonly string[]; workerId: string; max: number; leaseMs: number; nowMs: number }): Promise<JobRecord[]> {
    if (opts.max <= 0 || opts.platforms.length === 0) return [];
    // One platform (the common case): one autocommit statement, shared with other workers claiming now.
    if (opts.platforms.length === 1) {
      const rows = await this.claims.submit({
        workerId: opts.workerId,
        platform: opts.platforms[0] as string,
        max: opts.max,
        leaseExpiresAtMs: opts.nowMs + opts.leaseMs,
        nowMs: opts.nowMs,
      });
      return rows.map(toJob);
    }
    // Several: one statement over all of them, in one dispatch order.
    const rows = await this.db.query<JobRow>(this.sql.claimAcross, [
      opts.workerId,
      opts.nowMs + opts.leaseMs,
      opts.nowMs,
      opts.nowMs,
      [...opts.platforms],
      opts.max,
    ]);
    return rows.sort(byDispatchOrder).map(toJob);
  }

  async renewLeases(workerId: string, leaseExpiresAtMs: number, held?: readonly HeldLease[]): Promise<{ renewed: number; renewedIds: string[]; cancelRequested: string[] }> {
    const rows = held
      ? await this.db.query<{ id: string; cancel_requested: boolean }>(this.sql.renewHeld, [
          leaseExpiresAtMs,
          workerId,
          held.map((h) => h.jobId),
          held.map((h) => h.attempt),
          held.map((h) => (h.progress ? JSON.stringify(h.progress) : null)),
        ])
      : await this.db.query<{ id: string; cancel_requested: boolean }>(this.sql.renew, [leaseExpiresAtMs, workerId]);
    return { renewed: rows.length, renewedIds: rows.map((r) => r.id), cancelRequested: rows.filter((r) => r.cancel_requested).map((r) => r.id) };
  }

  async finish(opts: { id: string; attempt: number; workerId: string; outcome: Outcome; nowMs: number }): Promise<JobRecord | undefined> {
    const { outcome } = opts;
    const row = await this.finishes.submit({
      id: opts.id,
      attempt: opts.attempt,
      workerId: opts.workerId,
      state: outcome.state,
      result: 'result' in outcome ? JSON.stringify(outcome.result) : null,
      failure: 'failure' in outcome ? JSON.stringify(outcome.failure) : null,
      nowMs: opts.nowMs,
    });
    return row ? toJob(row) : undefined;
  }

  async cancel(id: string, nowMs: number): Promise<JobRecord | undefined> {
    const [row] = await this.db.query<JobRow>(this.sql.cancel, [id, nowMs, JSON.stringify(CANCELLED_BEFORE_START)]);
    if (row) return toJob(row);
    return this.get(id);
  }

  async fail(id: string, failure: JobFailure, nowMs: number): Promise<JobRecord | undefined> {
    const [row] = await this.db.query<JobRow>(this.sql.fail, [JSON.stringify(failure), nowMs, id]);
    return row ? toJob(row) : undefined;
  }

  async expireLeases(nowMs: number, maxAttempts: number): Promise<LeaseExpiry> {
    return this.db.tx((c) => this.expireIn(c, nowMs, maxAttempts));
  }

  private async expireIn(c: PoolClient, nowMs: number, maxAttempts: number): Promise<LeaseExpiry> {
    const cancelled = await this.db.query<JobRow>(this.sql.expiredCancel, [nowMs, JSON.stringify(CANCELLED_WORKER_LOST)], c);
    const requeued = await this.db.query<JobRow>(this.sql.expiredRequeue, [nowMs, maxAttempts], c);
    const failed = await this.db.query<JobRow>(this.sql.expiredFail, [nowMs, JSON.stringify(lostFailure(maxAttempts)), JSON.stringify(LOST_NO_RETRY)], c);
    const inOrder = (rows: JobRow[]) => rows.sort((a, b) => int(a.seq) - int(b.seq)).map(toJob);
    return { requeued: inOrder(requeued), failed: inOrder(failed), cancelled: inOrder(cancelled) };
  }

  async overdue(nowMs: number, defaultFailsafeMs: number, limit: number): Promise<JobRecord[]> {
    return (await this.db.query<JobRow>(this.sql.overdue, [defaultFailsafeMs, nowMs, limit])).map(toJob);
  }

  async releaseLeasesOf(workerIds: readonly string[] | { prefix: string }, nowMs: number, maxAttempts: number): Promise<LeaseExpiry> {
    return this.db.tx(async (c) => {
      if ('prefix' in workerIds) await this.db.query(this.sql.expireOwnerPrefix, [workerIds.prefix], c);
      else if (workerIds.length > 0) await this.db.query(this.sql.expireOwners, [workerIds], c);
      return this.expireIn(c, nowMs, maxAttempts);
    });
  }

  async queueDepths(): Promise<Map<string, number>> {
    return countsBy(await this.db.query<{ platform: string; n: string }>(this.sql.depths), (r) => r.platform);
  }

  async runningCounts(): Promise<Map<string, number>> {
    return countsBy(await this.db.query<{ platform: string; n: string }>(this.sql.running), (r) => r.platform);
  }

  async runningByWorker(): Promise<Map<string, number>> {
    return countsBy(await this.db.query<{ owner: string; n: string }>(this.sql.byWorker), (r) => r.owner);
  }

  async deleteFinishedBefore(cutoffMs: number, limit: number): Promise<number> {
    return (await this.db.query<{ seq: string }>(this.sql.deleteFinished, [cutoffMs, limit])).length;
  }
}

/** PostgreSQL's type of each new-job column, for the batched insert's arrays. */
const NEW_JOB_TYPES: Record<NewJobColumn, string> = {
  id: 'text',
  instance: 'text',
  action_hash: 'text',
  action_size: 'int8',
  platform: 'text',
  state: 'text',
  priority: 'int4',
  mergeable: 'bool',
  spec: 'json',
  created_at: 'int8',
  queued_at: 'int8',
  cached: 'bool',
  result: 'json',
  completed_at: 'int8',
  attempt: 'int4',
  lease_owner: 'text',
  lease_expires_at: 'int8',
  started_at: 'int8',
  name: 'text',
  labels: 'json',
  no_retry: 'bool',
  notify_url: 'text',
};

function countsBy<R extends { n: string }>(rows: R[], key: (row: R) => string): Map<string, number> {
  return new Map(rows.map((r) => [key(r), int(r.n)]));
}
