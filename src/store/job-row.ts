/**
 * The jobs table's row as both the SQLite and the PostgreSQL adapter name it: the columns a job is read
 * from, and the row a new job is inserted as (the column list their insert statements name, and the values
 * in that order). Booleans stay booleans here; SQLite's adapter binds them as 0/1.
 */
import type { JobState, RunReport } from '../core/model.js';
import type { NewJob } from './ports.js';

/** The columns a JobRecord is read from (each adapter adds `seq` where it sorts by it). */
export const JOB_COLUMN_NAMES = [
  'id', 'instance', 'action_hash', 'action_size', 'platform', 'state', 'attempt', 'priority', 'spec', 'created_at',
  'queued_at', 'started_at', 'completed_at', 'queue_time_ms', 'lease_owner', 'lease_expires_at', 'cancel_requested',
  'cached', 'result', 'failure', 'name', 'labels', 'progress', 'no_retry', 'notify_url',
] as const;

export const NEW_JOB_COLUMNS = [
  'id',
  'instance',
  'action_hash',
  'action_size',
  'platform',
  'state',
  'priority',
  'mergeable',
  'spec',
  'created_at',
  'queued_at',
  'cached',
  'result',
  'completed_at',
  'attempt',
  'lease_owner',
  'lease_expires_at',
  'started_at',
  'name',
  'labels',
  'no_retry',
  'notify_url',
] as const;

export type NewJobColumn = (typeof NEW_JOB_COLUMNS)[number];
export type NewJobValue = string | number | boolean | null;

/**
 * The values of {@link NEW_JOB_COLUMNS} for `job` inserted in `state`: completed from the action cache when
 * `cachedResult` is given, running under `job.leaseTo` when `state` is 'running' (attempt 1, started now).
 */
export function newJobValues(job: NewJob, state: JobState, cachedResult: RunReport | null): NewJobValue[] {
  const cached = cachedResult !== null;
  const lease = state === 'running' ? job.leaseTo : undefined;
  return [
    job.id,
    job.instance,
    job.actionDigest.hash,
    job.actionDigest.sizeBytes,
    job.spec.platform,
    state,
    job.priority,
    job.mergeable,
    JSON.stringify(job.spec),
    job.nowMs,
    job.nowMs,
    cached,
    cached ? JSON.stringify(cachedResult) : null,
    cached ? job.nowMs : null,
    lease ? 1 : 0,
    lease?.workerId ?? null,
    lease?.leaseExpiresAtMs ?? null,
    lease ? job.nowMs : null,
    job.name ?? null,
    JSON.stringify(job.labels ?? {}),
    job.noRetry ?? false,
    job.notifyUrl ?? null,
  ];
}
