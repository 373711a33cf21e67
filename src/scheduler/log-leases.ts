/**
 * Whose live-log chunks are taken (`Scheduler.appendLogs`): a worker appends only to the runs it holds the
 * lease of — a run whose lease was revoked (the worker went quiet, the failsafe layer stopped it) or given
 * to another worker must not grow the job's log, nor a finished job's.
 */
import type { JobStore } from '../store/ports.js';
import type { LogChunk } from './worker-link.js';

/** `jobId\nattempt` of each run named in `chunks` whose lease `workerId` holds now: one read per job named. */
export async function leasesHeld(jobs: Pick<JobStore, 'get'>, workerId: string, chunks: readonly LogChunk[]): Promise<Set<string>> {
  const ids = [...new Set(chunks.map((c) => c.jobId))];
  const records = await Promise.all(ids.map((id) => jobs.get(id)));
  const held = new Set<string>();
  for (const job of records) {
    if (job?.state === 'running' && job.leaseOwner === workerId) held.add(`${job.id}\n${job.attempt}`);
  }
  return held;
}
