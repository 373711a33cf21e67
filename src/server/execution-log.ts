/**
 * The log lines of an execution's life at debug level (queued, leased, finished), each with the job's id
 * and its trace id, so `--log-level debug` shows one execution's story with `grep <trace id>`.
 */
import type { Logger } from 'pino';
import { traceIdOf } from '../core/trace-context.js';
import type { SchedulerObserver } from '../scheduler/observer.js';
import type { JobRecord } from '../store/ports.js';

export function executionLog(logger: Logger): SchedulerObserver {
  // Nothing to do, not even the fields, unless someone reads debug lines.
  const ids = (job: JobRecord): Record<string, unknown> => {
    const traceId = traceIdOf(job.spec.traceparent);
    return { jobId: job.id, ...(traceId ? { traceId } : {}), platform: job.platform };
  };
  return {
    jobQueued(job, cause) {
      if (logger.isLevelEnabled('debug')) logger.debug({ ...ids(job), cause, attempt: job.attempt }, 'execution queued');
    },
    jobCached(job) {
      if (logger.isLevelEnabled('debug')) logger.debug(ids(job), 'execution answered from the action cache');
    },
    jobMerged(job) {
      if (logger.isLevelEnabled('debug')) logger.debug(ids(job), 'execution merged into an identical one in flight');
    },
    jobLeased(job, how) {
      if (logger.isLevelEnabled('debug')) logger.debug({ ...ids(job), how, worker: job.leaseOwner, attempt: job.attempt }, 'execution leased');
    },
    jobFinished(job) {
      if (logger.isLevelEnabled('debug')) {
        logger.debug({ ...ids(job), state: job.state, queueTimeMs: job.queueTimeMs, wallTimeMs: job.result?.wallTimeMs, failure: job.failure?.code }, 'execution finished');
      }
    },
  };
}
