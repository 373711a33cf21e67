/**
 * The worker protocol over HTTP: the WorkerLink port's calls as JSON routes. `client/http-worker-link.ts`
 * is the other end. Lease calls long-poll so an idle worker hears of new work at once. Bodies are plain
 * zod objects, not strict ones: a newer worker's extra fields are accepted and dropped (version skew), while
 * the known fields keep their types and bounds.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Scheduler } from '../../scheduler/scheduler.js';
import { jobFailure, jobProgress, labels, parseWith, runReport } from '../schemas.js';
import { whenClientGone } from './client-gone.js';
import { MAX_LOG_CHUNK_BYTES } from '../../events/bus-events.js';
import { InvalidArgumentError } from '../../core/errors.js';
import type { Outcome } from '../../store/ports.js';

const MAX_LEASE_WAIT_MS = 60_000;
/** Live-log chunks in one call: a worker sends at most logBytesPerCall (4 MiB) in chunks of up to 64 KiB. */
const MAX_LOG_CHUNKS_PER_CALL = 64;

const logChunks = z.object({
  chunks: z
    .array(
      z.object({
        jobId: z.string().min(1).max(256),
        attempt: z.number().int().min(1),
        stream: z.enum(['stdout', 'stderr']),
        offset: z.number().int().min(0),
        // Base64 of 1 to MAX_LOG_CHUNK_BYTES bytes.
        data: z.string().min(1).max(Math.ceil(MAX_LOG_CHUNK_BYTES / 3) * 4).base64(),
      }),
    )
    .max(MAX_LOG_CHUNKS_PER_CALL),
});

const registration = z.object({
  id: z.string().min(1).max(200).optional(),
  name: z.string().min(1).max(200),
  platforms: z.array(z.object({ platform: z.string(), emulated: z.boolean() })).min(1).max(64),
  slots: z.number().int().min(1).max(1024),
  labels: labels.optional(),
  instanceId: z.string().min(1).max(256).optional(),
  pricePerHour: z.number().nonnegative().finite().optional(),
});

const heartbeatBody = z.object({
  draining: z.boolean(),
  // The leases the worker is running; absent (older workers): every lease the server thinks it holds is renewed.
  // Progress not yet sent rides with its lease.
  held: z.array(z.object({ jobId: z.string().min(1).max(256), attempt: z.number().int().min(1), progress: jobProgress.optional() })).max(4096).optional(),
});
const REPORTED = ['completed', 'timed_out', 'cancelled'] as const;
const FAILED = ['failed', 'cancelled', 'emergency_stopped'] as const;
/**
 * How a lease ended: a run's report, or a failure. One object rather than a union of two, so that a bad
 * field is refused by its own path and reason (`outcome.result.exitCode: …`), not as "Invalid input".
 */
const outcome = z
  .object({ state: z.enum([...REPORTED, ...FAILED]), result: runReport.optional(), failure: jobFailure.optional() })
  .transform((o, ctx): Outcome => {
    if (o.result !== undefined && (REPORTED as readonly string[]).includes(o.state)) return { state: o.state as (typeof REPORTED)[number], result: o.result };
    if (o.failure !== undefined && (FAILED as readonly string[]).includes(o.state)) return { state: o.state as (typeof FAILED)[number], failure: o.failure };
    ctx.addIssue({ code: 'custom', message: `a ${REPORTED.join(', ')} outcome carries a result; a ${FAILED.join(', ')} one carries a failure` });
    return z.NEVER;
  });
const completionBody = z.object({
  jobId: z.string(),
  attempt: z.number().int().min(1),
  outcome,
});
const leaseBody = z
  .object({
    max: z.number().int().min(0).max(1024),
    waitMs: z.number().int().min(0).max(MAX_LEASE_WAIT_MS),
    // Results of finished leases, committed before new ones are taken: one round trip for a busy worker.
    completions: z.array(completionBody).max(1024).optional(),
  })
  .refine((b) => b.max > 0 || (b.completions?.length ?? 0) > 0, { message: 'max must be at least 1 unless completions are sent', path: ['max'] });

export function registerWorkerRoutes(app: FastifyInstance, scheduler: Scheduler): void {
  app.post('/v1/workers', async (req) => scheduler.register(parseWith(registration, req.body, 'worker registration')));

  app.post<{ Params: { id: string } }>('/v1/workers/:id/lease', async (req, reply) => {
    const { max, waitMs, completions } = parseWith(leaseBody, req.body, 'lease request');
    const gone = whenClientGone(reply);
    if (completions) return scheduler.completeAndLease(req.params.id, completions, max, waitMs, gone);
    return { leases: await scheduler.lease(req.params.id, max, waitMs, gone) };
  });

  app.post<{ Params: { id: string } }>('/v1/workers/:id/heartbeat', async (req) => {
    const { draining, held } = parseWith(heartbeatBody, req.body, 'heartbeat');
    return scheduler.heartbeat(req.params.id, draining, held);
  });

  app.post<{ Params: { id: string } }>('/v1/workers/:id/logs', async (req) => {
    const { chunks } = parseWith(logChunks, req.body, 'log chunks');
    const decoded = chunks.map((c) => ({ ...c, data: Buffer.from(c.data, 'base64') }));
    const bad = decoded.find((c) => c.data.byteLength === 0 || c.data.byteLength > MAX_LOG_CHUNK_BYTES);
    if (bad) throw new InvalidArgumentError(`log chunks: each holds 1 to ${MAX_LOG_CHUNK_BYTES} bytes (one of ${bad.data.byteLength})`);
    const stored = await scheduler.appendLogs(req.params.id, decoded);
    return { stored };
  });

  app.post<{ Params: { id: string } }>('/v1/workers/:id/complete', async (req) => {
    await scheduler.complete(req.params.id, parseWith(completionBody, req.body, 'completion'));
    return { ok: true };
  });

  // For operators and autoscalers (a worker token): the registry, and the order to drain one worker.
  app.get('/v1/workers', async () => ({ workers: await scheduler.workersWithLoad() }));

  app.post<{ Params: { id: string } }>('/v1/workers/:id/drain', async (req) => ({ worker: await scheduler.requestDrain(req.params.id) }));
  app.post<{ Params: { id: string } }>('/v1/workers/:id/undrain', async (req) => ({ worker: await scheduler.cancelDrain(req.params.id) }));

  app.delete<{ Params: { id: string } }>('/v1/workers/:id', async (req) => {
    await scheduler.unregister(req.params.id);
    return { ok: true };
  });
}
