/**
 * Every route of an HTTP door, as Fastify registered it (an onRoute hook added before the first route, so
 * routes added later — by this door or by a plugin of another component — are listed too). Read by the
 * security test that calls each route without a token, and by anyone who wants to list the door.
 */
import type { FastifyInstance } from 'fastify';

export interface RouteEntry {
  method: string;
  /** Fastify's pattern, e.g. `/v1/blobs/sha256/:hash`. */
  url: string;
}

const tables = new WeakMap<FastifyInstance, RouteEntry[]>();

/** Starts listing the routes of `app`; call before any route is added. */
export function recordRoutes(app: FastifyInstance): void {
  const table: RouteEntry[] = [];
  tables.set(app, table);
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) table.push({ method, url: route.url });
  });
}

/** The routes of `app` (empty when recordRoutes was not called on it). */
export function routesOf(app: FastifyInstance): readonly RouteEntry[] {
  return tables.get(app) ?? [];
}
