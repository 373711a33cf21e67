/**
 * Comparisons over HTTP: `POST /v1/comparisons` validates (every refusal before any run), starts the runs
 * on the server and answers 202 with the comparison as it stands; `GET /v1/comparisons/<id>` reads it back
 * from the store, from any controller, running or done.
 */
import type { FastifyInstance } from 'fastify';
import type { BlobStore } from '../../cas/blob-store.js';
import type { ComparisonRunner } from '../../compare/runner.js';
import { NotFoundError } from '../../core/errors.js';
import type { Scheduler } from '../../scheduler/scheduler.js';
import { prepareComparison } from '../comparison-request.js';
import type { ExecutionPolicy } from '../execution-request.js';

export function registerComparisonRoutes(app: FastifyInstance, deps: { runner: ComparisonRunner; scheduler: Scheduler; blobs: BlobStore; policy: ExecutionPolicy }): void {
  app.post('/v1/comparisons', async (req, reply) => {
    const { plan, submitters } = await prepareComparison(req.body, deps);
    const doc = await deps.runner.start(plan, submitters);
    return reply.status(202).header('location', `/v1/comparisons/${doc.id}`).send(doc);
  });

  app.get<{ Params: { id: string } }>('/v1/comparisons/:id', async (req) => {
    const doc = await deps.runner.get(req.params.id);
    if (!doc) throw new NotFoundError(`no comparison ${req.params.id}`);
    return doc;
  });
}
