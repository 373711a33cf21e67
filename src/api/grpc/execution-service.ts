/**
 * The Execution service. Execute plans the action (execution-plan.ts), submits it to the scheduler — the
 * same submit the HTTP door uses, so cache hits, merging of identical in-flight actions, priorities,
 * platform checks and the job's life are one mechanism — and streams the job as Operations until it is
 * done. The REAPI Action digest is the cache and merge key, and the job id is the Operation name, so the
 * execution also shows in GET /v1/executions/<name> and on the WebSocket events.
 *
 * The first Operation reflects the job as submit left it: COMPLETED for a cache hit, QUEUED, or EXECUTING
 * when merged into a running job. (The cache check happens inside submit, before the job — and so the
 * Operation's name — exists, so no separate CACHE_CHECK message is sent.)
 */
import type { Logger } from 'pino';
import type { BlobStore } from '../../cas/blob-store.js';
import type { Digest } from '../../core/digest.js';
import { InvalidArgumentError, NotFoundError } from '../../core/errors.js';
import { isTerminal } from '../../core/model.js';
import { traceContextOf } from '../../core/trace-context.js';
import type { Scheduler } from '../../scheduler/scheduler.js';
import type { ActionCache, JobRecord } from '../../store/ports.js';
import type { ExecutionPolicy } from '../execution-request.js';
import type { OutputLayout } from './action-result.js';
import { missingTreeBlobs } from './cached-results.js';
import { MAX_PRIORITY, MIN_PRIORITY } from './capabilities-service.js';
import { checkDigestFunction, fromProtoDigest } from './digests.js';
import { checkInputs, planExecution } from './execution-plan.js';
import type { CallContext, ResponseSink } from './handlers.js';
import type { InstanceNames } from './instances.js';
import type { ExecuteRequestOut, Operation, WaitExecutionRequestOut } from './messages.js';
import type { InlineOptions } from './operations.js';
import { operationOf, progressKey } from './operations.js';
import type { OutputLayouts } from './output-layouts.js';

export interface ExecutionServiceDeps {
  scheduler: Scheduler;
  actionCache: ActionCache;
  blobs: BlobStore;
  instances: InstanceNames;
  layouts: OutputLayouts;
  policy: ExecutionPolicy;
  defaultPlatform: string;
  logger: Logger;
}

export class ExecutionService {
  constructor(private readonly deps: ExecutionServiceDeps) {}

  async execute(req: ExecuteRequestOut, sink: ResponseSink<Operation>, ctx: CallContext): Promise<void> {
    const { scheduler, blobs, instances, layouts } = this.deps;
    const instance = instances.check(req.instance_name);
    checkDigestFunction(req.digest_function);
    const actionDigest = fromProtoDigest(req.action_digest, 'action_digest');
    const priority = req.execution_policy?.priority ?? 0;
    if (priority < MIN_PRIORITY || priority > MAX_PRIORITY) {
      throw new InvalidArgumentError(`execution_policy.priority ${priority} is outside ${MIN_PRIORITY}..${MAX_PRIORITY}`);
    }

    const plan = await planExecution(actionDigest, this.deps);
    layouts.remember(actionDigest, plan.layout);
    const mayHit = !plan.spec.doNotCache && !req.skip_cache_lookup && (await this.cachedResultUsable(instance, actionDigest));
    // A usable cached result needs no inputs; anything that will run needs them all.
    if (!mayHit) await checkInputs(plan.spec, blobs);
    // The caller's trace (traceparent metadata, or a new one) goes with the job to its worker and into its log lines.
    const trace = traceContextOf(ctx.metadata.get('traceparent').filter((v): v is string => typeof v === 'string'));
    const spec = { ...plan.spec, traceparent: trace.traceparent };
    const { job } = await scheduler.submit({ actionDigest, instance, spec, priority, skipCacheLookup: req.skip_cache_lookup });
    this.deps.logger.debug({ jobId: job.id, traceId: trace.traceId, instance, cached: job.cached }, 'REAPI execute');
    await this.follow(job, plan.layout, { inlineStdout: req.inline_stdout, inlineStderr: req.inline_stderr }, sink, ctx);
  }

  /** Streams an execution started earlier, by its Operation name (the job id); NOT_FOUND when unknown. */
  async waitExecution(req: WaitExecutionRequestOut, sink: ResponseSink<Operation>, ctx: CallContext): Promise<void> {
    const job = req.name === '' ? undefined : await this.deps.scheduler.get(req.name);
    if (!job) throw new NotFoundError(`no operation ${JSON.stringify(req.name)}; call Execute again`);
    const layout = (await this.deps.layouts.forAction(job.actionDigest)) ?? { workingDirectory: job.spec.command.workingDirectory };
    await this.follow(job, layout, {}, sink, ctx);
  }

  /**
   * Whether submit would answer from the cache with a result whose blobs all exist. The scheduler checks
   * the blobs a result names; the files inside its output trees are checked here, and an entry missing
   * any is dropped so submit runs the action instead.
   */
  private async cachedResultUsable(instance: string, actionDigest: Digest): Promise<boolean> {
    const report = await this.deps.scheduler.lookupCache(instance, actionDigest);
    if (!report) return false;
    if ((await missingTreeBlobs(report, this.deps.blobs)).length === 0) return true;
    await this.deps.actionCache.delete(instance, actionDigest);
    return false;
  }

  /** Sends the job's state now and at each change, until it is done or the client goes away. */
  private follow(first: JobRecord, layout: OutputLayout, inline: InlineOptions, sink: ResponseSink<Operation>, ctx: CallContext): Promise<void> {
    const { scheduler } = this.deps;
    return new Promise<void>((resolve, reject) => {
      let lastKey = -1;
      let settled = false;
      let chain = Promise.resolve();
      const settle = (err?: unknown): void => {
        if (settled) return;
        settled = true;
        unsubscribe();
        ctx.signal.removeEventListener('abort', onAbort);
        if (err === undefined) resolve();
        else reject(err);
      };
      const onAbort = (): void => settle();
      // Records arrive from the event bus and from the store; they are sent in order, stale ones skipped.
      const deliver = (job: JobRecord): void => {
        chain = chain
          .then(async () => {
            if (settled) return;
            const key = progressKey(job);
            if (key <= lastKey) return;
            lastKey = key;
            await sink.send(operationOf(job, layout, inline));
            if (isTerminal(job.state)) settle();
          })
          .catch((err: unknown) => settle(ctx.signal.aborted ? undefined : err));
      };
      const unsubscribe = scheduler.events.subscribe(first.id, deliver);
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      deliver(first);
      // The job may have moved on between submit and the subscription.
      scheduler
        .get(first.id)
        .then((job) => (job ? deliver(job) : settle(new NotFoundError(`operation ${first.id} disappeared`))))
        .catch((err: unknown) => settle(err));
    });
  }
}
