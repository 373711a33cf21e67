/**
 * Serves the web dashboard `npm run build` put in dist/web (web/ holds its source): `/` is its page, `/assets/*`
 * its scripts and styles, read into memory once at start (a few hundred KB). Both are open: they hold no
 * data, and the page asks for a token before it reads anything (decision 0028). Nothing is fetched from
 * elsewhere: the Content-Security-Policy allows this server only.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { NotFoundError } from '../../core/errors.js';

/** dist/web, beside dist/src where this module runs from. */
export const DEFAULT_DASHBOARD_DIR = fileURLToPath(new URL('../../../web/', import.meta.url));

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
};

const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'self'; connect-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
} as const;

interface Asset {
  body: Buffer;
  type: string;
}

export function registerDashboard(app: FastifyInstance, dir = DEFAULT_DASHBOARD_DIR): void {
  const index = join(dir, 'index.html');
  const page = existsSync(index) ? readFileSync(index) : undefined;
  const assets = new Map<string, Asset>();
  const assetDir = join(dir, 'assets');
  if (existsSync(assetDir)) {
    for (const name of readdirSync(assetDir)) {
      assets.set(name, { body: readFileSync(join(assetDir, name)), type: TYPES[extname(name)] ?? 'application/octet-stream' });
    }
  }
  const send = (reply: FastifyReply, asset: Asset, cache: string) =>
    reply.status(200).headers(SECURITY_HEADERS).header('cache-control', cache).type(asset.type).send(asset.body);

  app.get('/', async (_req, reply) => {
    if (!page) throw new NotFoundError(`the dashboard is not built: ${index} is missing (run npm run build)`);
    // The page names its assets by content hash: it is checked on every load, they are kept for good.
    return send(reply, { body: page, type: TYPES['.html'] as string }, 'no-cache');
  });
  app.get<{ Params: { name: string } }>('/assets/:name', async (req, reply) => {
    const asset = assets.get(req.params.name);
    if (!asset) throw new NotFoundError(`no dashboard asset ${req.params.name}`);
    return send(reply, asset, 'public, max-age=31536000, immutable');
  });
}
