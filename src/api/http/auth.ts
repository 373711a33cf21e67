/**
 * Who may call what over HTTP. One table, default deny: /healthz is open; blobs take a client or a
 * worker token (workers stage inputs and store outputs); the worker protocol takes a worker token; the
 * operator's view of the fleet (the registry, drain and undrain orders) takes either, so the dashboard and
 * `remex workers` need one token; the dashboard's page and assets are open (they hold no data: the page
 * asks for a token); everything else (executions, platforms, the event relay, unknown routes) takes a
 * client token.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { refusalLogLevel, TooManyFailedAttemptsError } from '../../auth/failed-attempts.js';
import type { Authenticator, Scope } from '../../auth/tokens.js';
import { isRemexError } from '../../core/errors.js';

const CLIENT: readonly Scope[] = ['client'];
const WORKER: readonly Scope[] = ['worker'];
const BLOBS: readonly Scope[] = ['client', 'worker'];
const OPERATOR: readonly Scope[] = ['client', 'worker'];
const OPERATOR_ROUTES = new Set(['GET /v1/workers', 'POST /v1/workers/:id/drain', 'POST /v1/workers/:id/undrain']);

/** The scopes a route (Fastify's route pattern, or a raw path) accepts; null for an open route. */
export function routeScopes(route: string | undefined, method = 'GET'): readonly Scope[] | null {
  if (route === '/healthz' || route === '/' || route?.startsWith('/assets/')) return null;
  if (OPERATOR_ROUTES.has(`${method} ${route}`)) return OPERATOR;
  if (route === '/v1/workers' || route?.startsWith('/v1/workers/')) return WORKER;
  if (route?.startsWith('/v1/blobs/')) return BLOBS;
  // Bazel's HTTP cache protocol (http-cache-routes.ts): blobs and action results, as a client's.
  if (route?.startsWith('/cas/') || route?.startsWith('/ac/')) return BLOBS;
  return CLIENT;
}

/** The WWW-Authenticate challenge sent with every 401 (RFC 6750). */
export const BEARER_CHALLENGE = 'Bearer realm="remex"';

/**
 * Checks every request before its body is read; refusals are logged without any header value. Failed
 * attempts count against the caller's address (429 with Retry-After past the limit: failed-attempts.ts).
 */
export function registerHttpAuth(app: FastifyInstance, auth: Authenticator, logger: Logger): void {
  if (!auth.enabled) return;
  app.addHook('onRequest', async (req, reply) => {
    const route = req.routeOptions.url;
    const scopes = routeScopes(route, req.method);
    if (!scopes) return;
    try {
      auth.authorize(req.headers.authorization, scopes, req.ip);
    } catch (err) {
      if (isRemexError(err)) logger[refusalLogLevel(err)]({ method: req.method, route: route ?? null, remote: req.ip, code: err.code }, 'request refused');
      if (err instanceof TooManyFailedAttemptsError) void reply.header('retry-after', Math.ceil(err.retryAfterMs / 1000));
      throw err;
    }
  });
}
