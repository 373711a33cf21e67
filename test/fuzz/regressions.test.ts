/** The bugs fuzzing found, each kept by its own test (test/fuzz/*.test.ts found them). */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { WebSocket } from 'ws';
import { startTestServer } from '../helpers/server.js';
import type { TestServer } from '../helpers/server.js';

function openSocket(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/events`);
    ws.on('open', () => resolve(ws));
    ws.on('error', reject);
  });
}

describe('fuzzing regressions', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ workerSlots: 0 });
  });
  after(async () => {
    await ts?.close();
  });

  test('a WebSocket frame over the 4 KiB limit closes that socket (1009), not the server', async () => {
    // Before: ws emitted 'error' on the server's socket with no listener, which threw and ended remex serve.
    const ws = await openSocket(ts.server.url);
    const code = await new Promise<number>((resolve) => {
      ws.on('close', (c) => resolve(c));
      ws.send('x'.repeat(5000));
    });
    assert.equal(code, 1009);
    const other = await openSocket(ts.server.url);
    try {
      const reply = await new Promise<string>((resolve) => {
        other.on('message', (d) => resolve(d.toString()));
        other.send('ping');
      });
      assert.equal(reply, 'pong', 'the relay goes on serving');
    } finally {
      other.close();
    }
  });

  test('a path parameter past 100 characters or a malformed percent-encoding is refused as a problem', async () => {
    // Before: Fastify's own JSON ({"error","code":"FST_ERR_…","message"}) echoing the whole path.
    const long = await fetch(`${ts.server.url}/v1/executions/${'x'.repeat(300)}`);
    assert.equal(long.status, 414);
    assert.match(long.headers.get('content-type') ?? '', /application\/problem\+json/);
    const body = (await long.json()) as { code: string; detail: string; requestId: string };
    assert.equal(body.code, 'INVALID_ARGUMENT');
    assert.equal(body.detail, 'a path segment is too long (at most 100 characters)');
    assert.ok(body.requestId);

    const bad = await fetch(`${ts.server.url}/v1/executions/%zz`);
    assert.equal(bad.status, 400);
    const badBody = (await bad.json()) as { code: string; detail: string };
    assert.equal(badBody.code, 'INVALID_ARGUMENT');
    assert.equal(badBody.detail, 'the URL is not valid (malformed percent-encoding)');
  });
});
