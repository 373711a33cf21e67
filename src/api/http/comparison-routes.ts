/**
 * Comparisons over HTTP: `POST /v1/comparisons` validates (every refusal before any run), starts the runs
 * on the server and answers 202 with the comparison as it stands; `GET /v1/comparisons/<id>` reads it back
 * from the store, from any controller, running or done; `GET /v1/comparisons` lists them, newest first, a page
 * at a time, each without its runs.
 */
import type { FastifyInstance } from 'fastify';
import type { BlobStore } from '../../cas/blob-store.js';
import type { ComparisonDocument } from '../../compare/comparison.js';
import type { ComparisonRunner } from '../../compare/runner.js';
import { InvalidArgumentError, NotFoundError } from '../../core/errors.js';
import type { Scheduler } from '../../scheduler/scheduler.js';
import { prepareComparison } from '../comparison-request.js';
import type { ExecutionPolicy } from '../execution-request.js';

export function registerComparisonRoutes(app: FastifyInstance, deps: { runner: ComparisonRunner; scheduler: Scheduler; blobs: BlobStore; policy: ExecutionPolicy }): void {
  app.post('/v1/comparisons', async (req, reply) => {
    const { plan, submitters } = await prepareComparison(req.body, deps);
    const doc = await deps.runner.start(plan, submitters);
    return reply.status(202).header('location', `/v1/comparisons/${doc.id}`).send(doc);
  });

  app.get('/v1/comparisons', async (req) => {
    const query = parseListQuery(req.query);
    const docs = await deps.runner.list(query);
    const next = docs.length === query.limit ? (docs[docs.length - 1]?.id ?? null) : null;
    return { comparisons: docs.map(summaryOf), next };
  });

  app.get<{ Params: { id: string } }>('/v1/comparisons/:id', async (req) => {
    const doc = await deps.runner.get(req.params.id);
    if (!doc) throw new NotFoundError(`no comparison ${req.params.id}`);
    return doc;
  });
}

/** A comparison in a list: what it compared and how it stands, without its runs or report. */
export function summaryOf(doc: ComparisonDocument) {
  const { id, state, createdAt, completedAt, progress, failure, plan } = doc;
  return { id, state, createdAt, completedAt, progress, failure, baseline: plan.baseline, repeat: plan.repeat, entries: plan.entries.map((e) => ({ label: e.label, platform: e.platform })) };
}

function parseListQuery(raw: unknown): { limit: number; afterId?: string } {
  const q = (raw ?? {}) as Record<string, unknown>;
  for (const key of Object.keys(q)) if (key !== 'limit' && key !== 'after') throw new InvalidArgumentError(`unknown parameter "${key}" (limit, after)`);
  let limit = 50;
  if (q.limit !== undefined) {
    limit = typeof q.limit === 'string' && /^\d+$/.test(q.limit) ? Number(q.limit) : NaN;
    if (!(limit >= 1 && limit <= 1000)) throw new InvalidArgumentError(`limit must be an integer from 1 to 1000, not ${JSON.stringify(q.limit)}`);
  }
  if (q.after !== undefined && (typeof q.after !== 'string' || q.after === '')) throw new InvalidArgumentError('after must be one comparison id');
  return q.after === undefined ? { limit } : { limit, afterId: q.after as string };
}
