/**
 * The ActionCache service. Entries live in remex's action cache (the one the scheduler fills from
 * executions), keyed by instance name and Action digest; only entries whose every blob still exists are
 * served (cached-results.ts).
 */
import type { BlobStore } from '../../cas/blob-store.js';
import type { Digest } from '../../core/digest.js';
import type { RunReport } from '../../core/model.js';
import { digestOf, formatDigest } from '../../core/digest.js';
import { InvalidArgumentError, MissingBlobsError, NotFoundError } from '../../core/errors.js';
import type { Scheduler } from '../../scheduler/scheduler.js';
import type { ActionCache } from '../../store/ports.js';
import { EncodedResponse } from './handlers.js';
import { readAction, readCommand } from './action-blobs.js';
import type { UploadedStreams } from './action-result.js';
import { blobsOfReport, fromActionResult, layoutOfCommand, toActionResult } from './action-result.js';
import { missingTreeBlobs } from './cached-results.js';
import { checkDigestFunction, fromProtoDigest } from './digests.js';
import type { InstanceNames } from './instances.js';
import { INLINE_OUTPUT_BYTES } from './limits.js';
import type { ActionResult, DigestOut, GetActionResultRequestOut, UpdateActionResultRequestOut } from './messages.js';
import type { OutputLayouts } from './output-layouts.js';
import { reapiProtos } from './protos.js';
import type { MessageCodec } from './protos.js';

export interface ActionCacheServiceDeps {
  scheduler: Scheduler;
  actionCache: ActionCache;
  blobs: BlobStore;
  instances: InstanceNames;
  layouts: OutputLayouts;
}

export class ActionCacheService {
  private readonly resultCodec: MessageCodec<ActionResult, unknown> = reapiProtos().codec(`build.bazel.remote.execution.v2.ActionResult`);
  /**
   * Answers already encoded, per stored result (the action cache hands out the same result object while
   * it keeps it in memory: see RecentActionResults) and per request shape. A hit is then a lookup, the
   * blob checks, and bytes sent as they are.
   */
  private readonly encoded = new WeakMap<RunReport, Map<string, EncodedResponse>>();

  constructor(private readonly deps: ActionCacheServiceDeps) {}

  /** NOT_FOUND unless a result is cached and every blob it names (trees and their files too) exists. */
  async getActionResult(req: GetActionResultRequestOut): Promise<ActionResult | EncodedResponse> {
    const { scheduler, actionCache, blobs, instances, layouts } = this.deps;
    const instance = instances.check(req.instance_name);
    checkDigestFunction(req.digest_function);
    const actionDigest = fromProtoDigest(req.action_digest, 'action_digest');
    const report = await scheduler.lookupCache(instance, actionDigest);
    if (!report) throw new NotFoundError(`no cached result for action ${formatDigest(actionDigest)}`);
    if ((await missingTreeBlobs(report, blobs)).length > 0) {
      await actionCache.delete(instance, actionDigest);
      throw new NotFoundError(`no cached result for action ${formatDigest(actionDigest)} (its outputs are gone)`);
    }
    const shape = `${formatDigest(actionDigest)} ${req.inline_stdout} ${req.inline_stderr}`;
    let forReport = this.encoded.get(report);
    const known = forReport?.get(shape);
    if (known) return known;
    const layout = await layouts.forAction(actionDigest);
    if (!layout) throw new NotFoundError(`no usable cached result for action ${formatDigest(actionDigest)}: its Action or Command is not in the CAS`);
    const answer = new EncodedResponse(this.resultCodec.encode(toActionResult(report, layout, { inlineStdout: req.inline_stdout, inlineStderr: req.inline_stderr })));
    if (!forReport) this.encoded.set(report, (forReport = new Map()));
    // A handful of shapes per result at most (the inline flags); bounded anyway.
    if (forReport.size < 8) forReport.set(shape, answer);
    return answer;
  }

  /**
   * Stores a client's result. As REAPI asks, the Action and its Command must be in the CAS, and remex
   * also requires every blob the result names: FAILED_PRECONDITION with MISSING violations otherwise.
   */
  async updateActionResult(req: UpdateActionResultRequestOut): Promise<ActionResult> {
    const { actionCache, blobs, instances, layouts } = this.deps;
    const instance = instances.check(req.instance_name);
    checkDigestFunction(req.digest_function);
    const actionDigest = fromProtoDigest(req.action_digest, 'action_digest');
    if (!req.action_result) throw new InvalidArgumentError('action_result is required');
    const action = await readAction(blobs, actionDigest);
    if (!action) throw new MissingBlobsError([actionDigest]);
    const commandDigest = fromProtoDigest(action.command_digest, 'Action.command_digest');
    const command = await readCommand(blobs, commandDigest);
    if (!command) throw new MissingBlobsError([commandDigest]);
    const layout = layoutOfCommand(command);

    const streams: UploadedStreams = {
      stdout: await this.uploadedStream(req.action_result.stdout_digest, req.action_result.stdout_raw, 'stdout'),
      stderr: await this.uploadedStream(req.action_result.stderr_digest, req.action_result.stderr_raw, 'stderr'),
    };
    const report = fromActionResult(req.action_result, layout, streams);
    const missing = [...(await blobs.findMissing(blobsOfReport(report)))];
    if (missing.length === 0) missing.push(...(await missingTreeBlobs(report, blobs)));
    if (missing.length > 0) throw new MissingBlobsError(missing);

    await actionCache.put(instance, actionDigest, report, Date.now());
    layouts.remember(actionDigest, layout);
    return toActionResult(report, layout);
  }

  /** A stream's digest, storing raw bytes a client sent inline; small streams are kept inline as well. */
  private async uploadedStream(digestMsg: DigestOut | null, raw: Buffer, what: string): Promise<{ digest: Digest; inline: Buffer | null }> {
    const { blobs } = this.deps;
    if (raw.byteLength > 0) {
      const digest = digestOf(raw);
      if (digestMsg) {
        const given = fromProtoDigest(digestMsg, `${what}_digest`);
        if (given.hash !== digest.hash || given.sizeBytes !== digest.sizeBytes) throw new InvalidArgumentError(`${what}_raw does not match ${what}_digest`);
      }
      await blobs.put(digest, raw);
      return { digest, inline: raw.byteLength <= INLINE_OUTPUT_BYTES ? raw : null };
    }
    const digest = digestMsg ? fromProtoDigest(digestMsg, `${what}_digest`) : digestOf(Buffer.alloc(0));
    if (digest.sizeBytes > INLINE_OUTPUT_BYTES || !(await blobs.has(digest))) return { digest, inline: null };
    return { digest, inline: await blobs.get(digest) };
  }
}
