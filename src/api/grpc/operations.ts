/**
 * A remex job as a google.longrunning.Operation, the way REAPI's Execute and WaitExecution stream it:
 * named by the job id, with ExecuteOperationMetadata (stage QUEUED, EXECUTING or COMPLETED) and, once done,
 * an ExecuteResponse. Failures of the run go in ExecuteResponse.status (DEADLINE_EXCEEDED for a timeout,
 * with the output so far in the result); Operation.error is never set.
 */
import { status as GrpcStatus } from '@grpc/grpc-js';
import { isTerminal } from '../../core/model.js';
import type { JobRecord } from '../../store/ports.js';
import type { OutputLayout } from './action-result.js';
import { toActionResult } from './action-result.js';
import { toProtoDigest } from './digests.js';
import type { ExecuteOperationMetadata, ExecuteResponse, Operation, Status } from './messages.js';
import { grpcCode, packAny } from './status.js';

export interface InlineOptions {
  inlineStdout?: boolean;
  inlineStderr?: boolean;
}

type Stage = 'QUEUED' | 'EXECUTING' | 'COMPLETED';

export function stageOf(job: JobRecord): Stage {
  if (isTerminal(job.state)) return 'COMPLETED';
  return job.state === 'running' ? 'EXECUTING' : 'QUEUED';
}

/**
 * Orders a job's successive records, so a stream never goes back to an older state it raced with. A lease
 * raises the attempt as the job starts running; a requeue keeps the attempt, so at one attempt `queued`
 * (requeued) comes after `running`.
 */
export function progressKey(job: JobRecord): number {
  if (isTerminal(job.state)) return Number.MAX_SAFE_INTEGER;
  return job.attempt * 2 + (job.state === 'queued' ? 1 : 0);
}

export function operationOf(job: JobRecord, layout: OutputLayout, inline: InlineOptions = {}): Operation {
  const metadata: ExecuteOperationMetadata = { stage: stageOf(job), action_digest: toProtoDigest(job.actionDigest), digest_function: 'SHA256' };
  const done = isTerminal(job.state);
  return {
    name: job.id,
    metadata: packAny('build.bazel.remote.execution.v2.ExecuteOperationMetadata', metadata),
    done,
    ...(done ? { response: packAny('build.bazel.remote.execution.v2.ExecuteResponse', executeResponseOf(job, layout, inline)) } : {}),
  };
}

export function executeResponseOf(job: JobRecord, layout: OutputLayout, inline: InlineOptions = {}): ExecuteResponse {
  const report = job.result;
  const timing = job.cached ? undefined : { queuedAtMs: job.queuedAtMs, startedAtMs: job.startedAtMs, completedAtMs: job.completedAtMs };
  return {
    ...(report ? { result: toActionResult(report, layout, { ...inline, ...(timing ? { timing } : {}) }) } : {}),
    cached_result: job.cached,
    status: statusOf(job),
    message: messageOf(job),
  };
}

function statusOf(job: JobRecord): Status {
  switch (job.state) {
    case 'timed_out':
      return { code: GrpcStatus.DEADLINE_EXCEEDED, message: `execution timed out after ${job.spec.timeoutMs} ms; the output so far is in the result` };
    case 'cancelled':
      return { code: GrpcStatus.CANCELLED, message: 'execution cancelled' };
    case 'emergency_stopped':
      // Past its timeout and the failsafe after it: no result, as a timeout that could not be ended cleanly.
      return { code: GrpcStatus.DEADLINE_EXCEEDED, message: job.failure?.message ?? 'execution emergency-stopped by a failsafe layer' };
    case 'failed':
      return { code: grpcCode(job.failure?.code ?? 'INTERNAL'), message: job.failure?.message ?? 'remex could not run the action' };
    default:
      return { code: GrpcStatus.OK, message: '' };
  }
}

function messageOf(job: JobRecord): string {
  const r = job.result;
  if (!r) return '';
  const notes: string[] = [];
  if (r.limitExceeded && r.limitExceeded !== 'wall_time') notes.push(`stopped by the ${r.limitExceeded} limit (not cached)`);
  if (r.stdout.truncated || r.stderr.truncated) notes.push('output truncated at the server limit');
  if (r.emulated) notes.push(`ran emulated on ${r.worker}`);
  return notes.join('; ');
}
