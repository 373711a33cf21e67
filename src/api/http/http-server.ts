/**
 * The HTTP front door: blobs, executions, platforms, health, the worker protocol, and the WebSocket event
 * relay at /v1/events. Every route validates its input and reports errors through problem.ts only.
 */
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import Fastify, { LogController } from 'fastify';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import { Authenticator } from '../../auth/tokens.js';
import type { BlobStore } from '../../cas/blob-store.js';
import { HASH_RE } from '../../core/digest.js';
import { InvalidArgumentError, NotFoundError } from '../../core/errors.js';
import { isTerminal } from '../../core/model.js';
import type { ComparisonRunner } from '../../compare/runner.js';
import { traceContextOf } from '../../core/trace-context.js';
import type { Scheduler } from '../../scheduler/scheduler.js';
import { buildExecution, parseExecutionRequest } from '../execution-request.js';
import type { ExecutionPolicy } from '../execution-request.js';
import { parseExecutionQuery } from '../execution-query.js';
import { executionView } from '../execution-view.js';
import { digestList, parseWith } from '../schemas.js';
import { attachEventRelay } from '../ws/event-relay.js';
import type { LiveStats } from '../live-stats.js';
import { BEARER_CHALLENGE, registerHttpAuth } from './auth.js';
import { whenClientGone } from './client-gone.js';
import { registerDashboard } from './dashboard-assets.js';
import type { ActionCache } from '../../store/ports.js';
import { acceptAnyBody, blobLength, bodyStream, registerHttpCacheRoutes, replyBlob, replyBlobSize, storeBody } from './http-cache-routes.js';
import { toProblem } from './problem.js';
import { registerComparisonRoutes } from './comparison-routes.js';
import { recordRoutes } from './route-table.js';
import { registerWorkerRoutes } from './worker-routes.js';
import { registerLogRoutes } from './log-routes.js';
import { EMPTY_LOG_STORE } from '../../logs/log-store.js';
import type { LogStore } from '../../logs/log-store.js';

export interface HttpServerOptions {
  scheduler: Scheduler;
  blobs: BlobStore;
  logger: Logger;
  policy: ExecutionPolicy;
  /** Largest JSON body accepted. */
  maxJsonBodyBytes: number;
  /** Answered by GET /healthz beside status. */
  describe: () => Record<string, unknown>;
  /** Token check for every route but /healthz (default: open). */
  auth?: Authenticator;
  /** Running jobs' live logs (absent: a job's output is read from its result only). */
  logs?: LogStore;
  /** Serve HTTPS (and WSS) with this certificate chain and key (PEM). */
  tls?: TlsFiles;
  /** The dashboard's charts, pushed to its watchers (none: the charts stay empty). */
  liveStats?: LiveStats;
  /** Where the built dashboard is (default: dist/web). */
  dashboardDir?: string;
  /** The autoscaler's state for `GET /v1/autoscaler` (absent: no autoscaler, 404). */
  autoscaler?: () => unknown;
  /** Runs comparisons (`/v1/comparisons`); without it those routes are absent. */
  comparisons?: ComparisonRunner;
  /** Served as GET /metrics (behind a client token when tokens are on). */
  metrics?: MetricsEndpoint;
  /** Told of every answered request, by route pattern (for the request metrics). */
  onRequestDone?: (method: string, route: string, statusCode: number, seconds: number) => void;
  /** The action cache: given, Bazel's HTTP cache protocol is served at /cas/… and /ac/… (http-cache-routes.ts). */
  actionCache?: ActionCache;
}

/** The Prometheus text of the server's metrics (metrics/metrics.ts's Metrics satisfies it). */
export interface MetricsEndpoint {
  readonly contentType: string;
  render(): Promise<string>;
}

export interface TlsFiles {
  cert: Buffer;
  key: Buffer;
}

export const DEFAULT_MAX_JSON_BODY_BYTES = 32 * 1024 * 1024;

export async function buildHttpServer(opts: HttpServerOptions): Promise<FastifyInstance> {
  const { scheduler, blobs } = opts;
  const auth = opts.auth ?? Authenticator.open();
  const app = Fastify({
    // HTTPS when certificates are given; the instance is typed as the plain-HTTP one it otherwise is.
    ...(opts.tls ? { https: { cert: opts.tls.cert, key: opts.tls.key } } : {}),
    // pino's Logger is Fastify's logger; the cast only bridges the two packages' declarations.
    loggerInstance: opts.logger as unknown as FastifyBaseLogger,
    // Per-request info lines cost more than the request on the hot path; errors are logged by the handler.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: opts.maxJsonBodyBytes,
    genReqId: () => randomUUID(),
    // A URL the router refuses (bad percent-encoding, a path parameter past 100 characters) is answered
    // here, before any route or hook: as a problem like every other refusal (fuzzing found Fastify's own
    // JSON, which echoed the path, on these).
    frameworkErrors: (err, req, rawReply) => {
      const problem = toProblem(err, String(req.id));
      // The option's reply type is the generic default one; the problem is what every refusal sends.
      void (rawReply as unknown as FastifyReply).status(problem.status).type('application/problem+json').send(problem.body);
    },
  }) as unknown as FastifyInstance;
  recordRoutes(app);

  // Blob bodies are streamed into the store as they arrive, never buffered whole (see acceptAnyBody).
  app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));

  app.setErrorHandler((err, req, reply) => {
    const problem = toProblem(err, String(req.id));
    if (problem.status >= 500) req.log.error({ err, requestId: req.id }, 'request failed');
    if (problem.status === 401) void reply.header('www-authenticate', BEARER_CHALLENGE);
    void reply.status(problem.status).type('application/problem+json').send(problem.body);
  });
  app.setNotFoundHandler((req, reply) => {
    const problem = toProblem(new NotFoundError(`no route ${req.method} ${req.url}`), String(req.id));
    void reply.status(problem.status).type('application/problem+json').send(problem.body);
  });

  registerHttpAuth(app, auth, opts.logger);
  const onRequestDone = opts.onRequestDone;
  if (onRequestDone) {
    app.addHook('onResponse', async (req, reply) => {
      onRequestDone(req.method, req.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
    });
  }
  const metrics = opts.metrics;
  if (metrics) app.get('/metrics', async (_req, reply) => reply.type(metrics.contentType).send(await metrics.render()));

  app.get('/healthz', async () => ({ status: 'ok', ...opts.describe() }));

  // ---- blobs ----------------------------------------------------------------------------------------
  // Blob PUTs take their body whatever its Content-Type (`curl -T` sends none, `--data-binary` a form
  // type): in a context of their own, so the JSON routes keep their parser.
  await app.register(async (blobRoutes) => {
    acceptAnyBody(blobRoutes);
    blobRoutes.put<{ Params: { hash: string } }>('/v1/blobs/sha256/:hash', async (req, reply) => {
      const digest = { hash: blobHash(req.params.hash), sizeBytes: blobLength(req.headers, blobs) };
      const body = bodyStream(req.body);
      if (await blobs.has(digest)) {
        (body as Partial<Readable>).resume?.();
        return reply.status(200).send({ digest, stored: false });
      }
      await storeBody(blobs, digest, req.body);
      return reply.status(201).send({ digest, stored: true });
    });
    if (opts.actionCache) registerHttpCacheRoutes(blobRoutes, { blobs, actionCache: opts.actionCache });
  });

  app.head<{ Params: { hash: string } }>('/v1/blobs/sha256/:hash', async (req, reply) => replyBlobSize(blobs, blobHash(req.params.hash), reply));
  app.get<{ Params: { hash: string } }>('/v1/blobs/sha256/:hash', async (req, reply) => replyBlob(blobs, blobHash(req.params.hash), reply));

  app.post('/v1/blobs/find-missing', async (req) => {
    const { digests } = parseWith(digestList, req.body, 'digest list');
    return { missing: await blobs.findMissing(digests) };
  });

  // ---- executions -----------------------------------------------------------------------------------
  app.post<{ Querystring: { wait?: string } }>('/v1/executions', async (req, reply) => {
    const request = parseExecutionRequest(req.body);
    const built = await buildExecution(request, blobs, opts.policy);
    // The caller's trace (or a new one) goes with the job to its worker and into the log lines about it.
    const trace = traceContextOf(req.headers.traceparent);
    const submitted = await scheduler.submit({ ...built, spec: { ...built.spec, traceparent: trace.traceparent }, instance: '' });
    req.log.debug({ requestId: req.id, traceId: trace.traceId, jobId: submitted.job.id, cached: submitted.cached, merged: submitted.merged }, 'execution submitted');
    void reply.header('traceparent', trace.traceparent);
    const wait = req.query.wait === '1' || req.query.wait === 'true';
    if (wait && !isTerminal(submitted.job.state)) {
      const done = await scheduler.waitForTerminal(submitted.job.id, whenClientGone(reply));
      return reply.status(200).send({ ...executionView(done), merged: submitted.merged });
    }
    const status = isTerminal(submitted.job.state) ? 200 : 202;
    return reply
      .status(status)
      .header('location', `/v1/executions/${submitted.job.id}`)
      .send({ ...executionView(submitted.job), merged: submitted.merged });
  });

  app.get<{ Params: { id: string } }>('/v1/executions/:id', async (req) => {
    const job = await scheduler.get(req.params.id);
    if (!job) throw new NotFoundError(`no execution ${req.params.id}`);
    return executionView(job);
  });

  app.get('/v1/executions', async (req) => {
    const query = parseExecutionQuery(req.query, Date.now());
    const jobs = await scheduler.list(query);
    // A full page may have more behind it: `next` is the cursor of the page after.
    const next = jobs.length === query.limit ? (jobs[jobs.length - 1]?.id ?? null) : null;
    return { executions: jobs.map(executionView), next };
  });

  app.post<{ Params: { id: string } }>('/v1/executions/:id/cancel', async (req) => executionView(await scheduler.cancel(req.params.id)));

  // ---- discovery ------------------------------------------------------------------------------------
  app.get('/v1/platforms', async () => scheduler.status());

  if (opts.comparisons) registerComparisonRoutes(app, { runner: opts.comparisons, scheduler, blobs, policy: opts.policy });
  const logs = opts.logs ?? EMPTY_LOG_STORE;
  registerLogRoutes(app, { logs, blobs, events: scheduler.events, getJob: (id) => scheduler.get(id) });
  registerWorkerRoutes(app, scheduler);
  // The autoscaler's pools, their last decisions and reasons (issue 15); metrics may read the same state.
  const autoscaler = opts.autoscaler;
  if (autoscaler) app.get('/v1/autoscaler', async () => autoscaler());
  registerDashboard(app, opts.dashboardDir);
  attachEventRelay(app.server, scheduler, opts.logger, auth, { logs, blobs }, opts.liveStats);
  return app;
}

function blobHash(text: string): string {
  if (!HASH_RE.test(text)) throw new InvalidArgumentError('blob hash must be 64 lower-case hex characters (SHA-256)');
  return text;
}
