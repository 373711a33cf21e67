/**
 * RemexClient's failover rules against plain in-process HTTP servers that misbehave on purpose: which
 * failures move to the next controller, which requests are repeated, how long it keeps trying.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { RemexClient, parseServerList } from '../../src/client/remex-client.js';
import { isRemexError } from '../../src/core/errors.js';

interface FakeServer {
  url: string;
  /** Requests seen: "METHOD path auth". */
  seen: string[];
  close(): Promise<void>;
}

async function fake(handle: (req: http.IncomingMessage, res: http.ServerResponse) => void, port = 0): Promise<FakeServer> {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url} ${req.headers.authorization ?? '-'}`);
    req.resume();
    req.on('end', () => handle(req, res));
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const json = (status: number, body: unknown) => (_req: http.IncomingMessage, res: http.ServerResponse) => {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
};
const reset = (req: http.IncomingMessage) => req.socket.destroy();

async function freePort(): Promise<number> {
  const s = await fake(json(200, {}));
  const port = Number(new URL(s.url).port);
  await s.close();
  return port;
}

test('server lists: commas, spaces, trailing slashes; bad schemes and credentials refused', () => {
  assert.deepEqual(parseServerList('http://a:1/, https://b:2'), ['http://a:1', 'https://b:2']);
  assert.deepEqual(parseServerList(['http://a:1,http://b:2', 'http://c:3']), ['http://a:1', 'http://b:2', 'http://c:3']);
  assert.throws(() => parseServerList('ftp://a'), /only http/);
  assert.throws(() => parseServerList('http://u:secret@a:1'), (err: Error) => /token file/.test(err.message) && !err.message.includes('secret'));
  assert.throws(() => parseServerList(' , '), /no remex server/);
});

test('a refused controller, then a 503 one: the request lands on the third; the token goes along', async (t) => {
  const dead = `http://127.0.0.1:${await freePort()}`;
  const busy = await fake(json(503, { code: 'UNAVAILABLE', detail: 'draining' }));
  const good = await fake(json(200, { platforms: [] }));
  t.after(() => Promise.all([busy.close(), good.close()]));
  const client = new RemexClient([dead, busy.url, good.url], { token: 'T'.repeat(20) });
  const changes: string[] = [];
  client.onServerChange(({ to }) => changes.push(to));
  assert.deepEqual(await client.platforms(), []);
  assert.deepEqual(changes, [busy.url, good.url]);
  assert.equal(client.baseUrl, good.url, 'the client stays on the controller that answered');
  assert.deepEqual(good.seen, [`GET /v1/platforms Bearer ${'T'.repeat(20)}`]);
  await client.platforms();
  assert.equal(busy.seen.length, 1, 'no second visit to the busy one');
  client.close();
});

test('a submission whose connection broke after sending is not repeated; a read is', async (t) => {
  const flaky = await fake(reset);
  const good = await fake(json(200, { id: 'x' }));
  t.after(() => Promise.all([flaky.close(), good.close()]));
  const client = new RemexClient([flaky.url, good.url]);
  await assert.rejects(client.request('POST', '/v1/executions', { a: 1 }), (err: Error) => isRemexError(err, 'UNAVAILABLE') && /may or may not have been processed/.test(err.message));
  assert.equal(good.seen.length, 0, 'the submission was not sent again');

  const again = new RemexClient([flaky.url, good.url]);
  assert.deepEqual(await again.getExecution('x'), { id: 'x' });
  assert.deepEqual(good.seen, ['GET /v1/executions/x -']);
  const worker = new RemexClient([flaky.url, good.url]);
  await worker.request('POST', '/v1/workers/w/heartbeat', { draining: false }, { idempotent: true });
  assert.equal(good.seen.length, 2, 'a POST marked idempotent moves on');
  for (const c of [client, again, worker]) c.close();
});

test('no controller ever answered: one round and out; after an answer: retried within the window', async (t) => {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const fresh = new RemexClient(url, { retryWindowMs: 5_000 });
  const t0 = Date.now();
  await assert.rejects(fresh.health(), (err: Error) => isRemexError(err, 'UNAVAILABLE') && err.message.startsWith(`cannot reach remex at ${url}: `));
  assert.ok(Date.now() - t0 < 1_000, 'a wrong address fails at once');

  let server = await fake(json(200, { status: 'ok' }), port);
  const client = new RemexClient(url, { retryWindowMs: 400 });
  await client.health();
  await server.close();
  const t1 = Date.now();
  await assert.rejects(client.health(), (err: Error) => isRemexError(err, 'UNAVAILABLE'));
  assert.ok(Date.now() - t1 >= 350, 'kept trying for the window');

  const patient = new RemexClient(url, { retryWindowMs: 10_000 });
  server = await fake(json(200, { status: 'ok' }), port);
  await patient.health();
  await server.close();
  const back = setTimeout(() => void fake(json(200, { status: 'back' }), port).then((s) => t.after(() => s.close())), 300);
  t.after(() => clearTimeout(back));
  assert.deepEqual(await patient.health(), { status: 'back' }, 'a controller that comes back within the window is used');
  for (const c of [fresh, client, patient]) c.close();
});
