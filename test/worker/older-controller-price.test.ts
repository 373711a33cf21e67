/**
 * A worker with `--price-per-hour` registering with a controller older than prices in registrations. Such a
 * controller refuses unknown fields; its refusal is reproduced here by a stand-in HTTP server (an older
 * remex cannot run in this tree) with the problem body the strict schema produced, byte for byte. The link
 * registers again without the price; any other refusal still fails the registration.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { HttpWorkerLink } from '../../src/client/http-worker-link.js';
import { RemexClient } from '../../src/client/remex-client.js';

test('a controller refusing pricePerHour by name gets the registration again without it; other refusals stand', async (t) => {
  const bodies: Array<Record<string, unknown>> = [];
  let refuseAll = false;
  const server = createServer((req, res) => {
    let text = '';
    req.on('data', (c: Buffer) => (text += c.toString()));
    req.on('end', () => {
      const body = JSON.parse(text) as Record<string, unknown>;
      bodies.push(body);
      res.setHeader('content-type', 'application/problem+json');
      if (refuseAll || 'pricePerHour' in body) {
        const detail = refuseAll ? 'invalid worker registration: slots: Too big' : 'invalid worker registration: (body): Unrecognized key: "pricePerHour"';
        res.statusCode = 400;
        res.end(JSON.stringify({ type: 'about:blank', title: 'INVALID_ARGUMENT', status: 400, code: 'INVALID_ARGUMENT', detail }));
        return;
      }
      res.end(JSON.stringify({ workerId: 'w-older', leaseTimeoutMs: 30_000, heartbeatIntervalMs: 10_000 }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const client = new RemexClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  t.after(() => client.close());
  const link = new HttpWorkerLink(client);
  const reg = { name: 'priced', platforms: [{ platform: 'x86_64-linux-cpu', emulated: false }], slots: 1, pricePerHour: 0.25 };

  const session = await link.register(reg);
  assert.equal(session.workerId, 'w-older');
  assert.deepEqual(bodies.map((b) => b.pricePerHour), [0.25, undefined]);

  refuseAll = true;
  await assert.rejects(link.register(reg), /slots: Too big/);
});
