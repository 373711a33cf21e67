/**
 * Every door checks its token. The HTTP routes are listed from the Fastify instance itself (route-table.ts)
 * and the gRPC methods from the loaded protos, so a route or service added later is called here without
 * being named: each must refuse a call without a token (HTTP 401, gRPC UNAUTHENTICATED), except /healthz
 * and grpc.health.v1. Failed attempts are rate-limited per address across the doors, and logged once
 * the limit is reached, never with the token.
 */
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { WebSocket } from 'ws';
import { routesOf } from '../../src/api/http/route-table.js';
import { Authenticator } from '../../src/auth/tokens.js';
import { bearerMetadata, callRaw, protoMethods } from '../helpers/grpc-raw.js';
import { newToken } from '../helpers/remex-cli.js';
import { startTestServer } from '../helpers/server.js';
import type { TestServer } from '../helpers/server.js';

// Open on purpose: health, and the dashboard's page and assets (they hold no data; the page asks for a token).
const OPEN_HTTP = new Set(['/healthz', '/', '/assets/:name']);
const OPEN_GRPC_SERVICE = 'grpc.health.v1.Health';

/** A concrete path for a Fastify route pattern. */
function concrete(url: string): string {
  return url.replace(/:hash\b/g, '0'.repeat(64)).replace(/:[A-Za-z_]+/g, 'x').replace(/\*/g, 'x');
}

let lastRetryAfter: string | undefined;

function wsStatus(url: string, path: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}${path}`, { headers });
    ws.on('unexpected-response', (_req, res: IncomingMessage) => {
      lastRetryAfter = res.headers['retry-after'];
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.on('open', () => {
      resolve(101);
      ws.close();
    });
    ws.on('error', (err) => reject(err));
  });
}

describe('every door checks its token', () => {
  const clientToken = newToken();
  const workerToken = newToken();
  let ts: TestServer;
  let client: grpc.Client;

  before(async () => {
    // No rate limit here: this test fails on purpose once per route and method.
    ts = await startTestServer({ workerSlots: 0, grpcPort: 0, auth: Authenticator.fromTokens({ client: [clientToken], worker: [workerToken] }, { maxFailures: 1_000_000 }) });
    client = new grpc.Client(`127.0.0.1:${ts.server.grpcPort}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    client?.close();
    await ts?.close();
  });

  test('each HTTP route refuses a call without a token or with an unknown one', async () => {
    const routes = routesOf(ts.server.http);
    assert.ok(routes.length >= 15, `the routes are listed (${routes.length})`);
    const checked: string[] = [];
    for (const { method, url } of routes) {
      const path = concrete(url);
      const call = (headers: Record<string, string>): Promise<Response> =>
        fetch(`${ts.server.url}${path}`, { method, headers: { ...headers, ...(method === 'PUT' || method === 'POST' ? { 'content-type': 'application/json' } : {}) }, ...(method === 'PUT' || method === 'POST' ? { body: '{}' } : {}) });
      const bare = await call({});
      const text = await bare.text();
      if (OPEN_HTTP.has(url)) {
        assert.notEqual(bare.status, 401, `${method} ${url} is open`);
        continue;
      }
      assert.equal(bare.status, 401, `${method} ${url} without a token`);
      if (method !== 'HEAD') assert.equal((JSON.parse(text) as { code: string }).code, 'UNAUTHENTICATED');
      const unknown = await call({ authorization: `Bearer ${newToken()}` });
      await unknown.arrayBuffer();
      assert.equal(unknown.status, 401, `${method} ${url} with an unknown token`);
      // A valid token of one kind or the other gets past the check (to the handler, or a 403 for the other kind).
      const statuses = [];
      for (const token of [clientToken, workerToken]) {
        const res = await call({ authorization: `Bearer ${token}` });
        await res.arrayBuffer();
        statuses.push(res.status);
      }
      assert.ok(statuses.every((s) => s !== 401) && statuses.some((s) => s !== 403), `${method} ${url} with tokens: ${statuses.join(', ')}`);
      checked.push(`${method} ${url}`);
    }
    for (const expected of ['POST /v1/executions', 'PUT /v1/blobs/sha256/:hash', 'POST /v1/workers/:id/lease', 'GET /v1/platforms']) {
      assert.ok(checked.includes(expected), `${expected} was enumerated`);
    }
    // A path no route has is refused too (default deny), before it could be found missing.
    assert.equal((await fetch(`${ts.server.url}/v1/no-such-route`)).status, 401);
  });

  test('the WebSocket relay refuses an upgrade without a client token', async () => {
    assert.equal(await wsStatus(ts.server.url, '/v1/events', {}), 401);
    assert.equal(await wsStatus(ts.server.url, '/v1/events', { authorization: `Bearer ${newToken()}` }), 401);
    assert.equal(await wsStatus(ts.server.url, '/v1/events', { authorization: `Bearer ${workerToken}` }), 403);
    assert.equal(await wsStatus(ts.server.url, '/v1/events', { authorization: `Bearer ${clientToken}` }), 101);
  });

  test('each gRPC method of the loaded protos refuses a call without a token', async () => {
    const methods = protoMethods();
    assert.ok(methods.length >= 15, `the methods are listed (${methods.length})`);
    let refused = 0;
    for (const m of methods) {
      const bare = await callRaw(client, m, bearerMetadata());
      if (m.path.startsWith(`/${OPEN_GRPC_SERVICE}/`)) {
        assert.notEqual(bare, grpc.status.UNAUTHENTICATED, `${m.path} is open`);
        continue;
      }
      if (bare === grpc.status.UNIMPLEMENTED) {
        // Not served: it must say so with a token as well (it is not a refusal that skipped the check).
        assert.equal(await callRaw(client, m, bearerMetadata(clientToken)), grpc.status.UNIMPLEMENTED, m.path);
        continue;
      }
      assert.equal(bare, grpc.status.UNAUTHENTICATED, `${m.path} without a token`);
      assert.equal(await callRaw(client, m, bearerMetadata(newToken())), grpc.status.UNAUTHENTICATED, `${m.path} with an unknown token`);
      assert.notEqual(await callRaw(client, m, bearerMetadata(clientToken)), grpc.status.UNAUTHENTICATED, `${m.path} with a client token`);
      refused++;
    }
    assert.ok(refused >= 12, `the REAPI methods were all checked (${refused})`);
  });
});

describe('failed token attempts are rate-limited per address', () => {
  const clientToken = newToken();
  const lines: string[] = [];
  let ts: TestServer;

  before(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''));
        cb();
      },
    });
    ts = await startTestServer({
      workerSlots: 0,
      grpcPort: 0,
      logger: pino({ level: 'debug' }, sink),
      auth: Authenticator.fromTokens({ client: [clientToken] }, { maxFailures: 5, windowMs: 600_000 }),
    });
  });
  after(async () => {
    await ts?.close();
  });

  test('past the limit the address is refused at every door, even with a valid token; one log line says so', async () => {
    const guesses = Array.from({ length: 5 }, () => newToken());
    for (const guess of guesses.slice(0, 4)) {
      assert.equal((await fetch(`${ts.server.url}/v1/platforms`, { headers: { authorization: `Bearer ${guess}` } })).status, 401);
    }
    const fifth = await fetch(`${ts.server.url}/v1/platforms`, { headers: { authorization: `Bearer ${guesses[4]}` } });
    assert.equal(fifth.status, 429, 'the attempt that reaches the limit');
    const body = (await fifth.json()) as { code: string; detail: string };
    assert.equal(body.code, 'RESOURCE_EXHAUSTED');
    assert.match(body.detail, /too many failed authentication attempts/);
    assert.ok(Number(fifth.headers.get('retry-after')) > 0, 'Retry-After says when');

    const valid = await fetch(`${ts.server.url}/v1/platforms`, { headers: { authorization: `Bearer ${clientToken}` } });
    assert.equal(valid.status, 429, 'a valid token is not even looked at from a limited address');
    assert.equal((await fetch(`${ts.server.url}/healthz`)).status, 200, '/healthz stays open');
    assert.equal(await wsStatus(ts.server.url, '/v1/events', { authorization: `Bearer ${clientToken}` }), 429, 'the WebSocket door shares the count');
    assert.ok(Number(lastRetryAfter) > 0, 'the refused upgrade says when to retry');

    const client = new grpc.Client(`127.0.0.1:${ts.server.grpcPort}`, grpc.credentials.createInsecure());
    try {
      const code = await callRaw(client, { path: '/build.bazel.remote.execution.v2.Capabilities/GetCapabilities', requestStream: false, responseStream: false }, bearerMetadata(clientToken));
      assert.equal(code, grpc.status.RESOURCE_EXHAUSTED, 'the gRPC door shares the count');
    } finally {
      client.close();
    }

    const warnings = lines.map((l) => JSON.parse(l) as { level: number; msg: string; code?: string }).filter((l) => l.level >= 40);
    assert.equal(warnings.filter((l) => l.code === 'UNAUTHENTICATED').length, 4, 'each failure up to the limit is a warning');
    assert.equal(warnings.filter((l) => l.code === 'RESOURCE_EXHAUSTED').length, 1, 'reaching the limit is one warning; the refusals after it are not');
    const log = lines.join('\n');
    for (const token of [clientToken, ...guesses]) assert.ok(!log.includes(token), 'no token in the log');
  });
});
