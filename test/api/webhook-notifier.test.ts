/**
 * Completion webhooks with a real server, real programs and a real HTTP receiver: the final result arrives
 * signed with the server's secret, a receiver's failure is tried again, one that never answers delays
 * nothing, and a notify URL that is not http(s) is refused.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ExecutionView } from '../../src/api/execution-view.js';
import { SIGNATURE_HEADER, signatureOf } from '../../src/api/webhook-notifier.js';
import { digestOf } from '../../src/core/digest.js';
import type { Digest } from '../../src/core/digest.js';
import { isRemexError } from '../../src/core/errors.js';
import { eventually } from '../helpers/processes.js';
import { startTestServer } from '../helpers/server.js';
import type { TestServer } from '../helpers/server.js';
import { compileC, requireTools } from '../helpers/tools.js';

const SECRET = 'test-webhook-secret-0123456789abcdef';
let ts: TestServer;
let receiver: ReturnType<typeof createServer>;
let base: string;
const received: Array<{ path: string; body: string; signature: string | undefined; delivery: string | undefined }> = [];
/** Per path, how the receiver answers each POST in turn (then 200). */
const script = new Map<string, Array<'fail' | 'hang'>>();

describe('completion webhooks', () => {
  before(async () => {
    receiver = createServer((req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const path = req.url ?? '';
        received.push({ path, body: Buffer.concat(chunks).toString(), signature: req.headers[SIGNATURE_HEADER] as string | undefined, delivery: req.headers['x-remex-delivery'] as string | undefined });
        const next = script.get(path)?.shift();
        if (next === 'hang') return; // never answers
        res.statusCode = next === 'fail' ? 500 : 204;
        res.end();
      });
    });
    receiver.listen(0, '127.0.0.1');
    await once(receiver, 'listening');
    base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    ts = await startTestServer({ workerSlots: 2, webhookSecret: SECRET });
  });
  after(async () => {
    await ts?.close();
    receiver?.closeAllConnections();
    receiver?.close();
  });

  async function echoExe(): Promise<Digest> {
    const bytes = readFileSync(compileC({ file: 'programs/echo.c' }, 'x86_64'));
    const d = digestOf(bytes);
    await ts.client.putBlob(d, bytes);
    return d;
  }

  test('the final result arrives signed; a failed delivery is tried again', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    script.set('/hook?token=abc', ['fail']);
    const done: ExecutionView = await ts.client.submit({ executable: await echoExe(), args: ['hi'], env: { EXIT_CODE: '3' }, notify: `${base}/hook?token=abc`, doNotCache: true }, { wait: true });
    assert.equal(done.code, 3);
    const deliveries = await eventually(async () => {
      const mine = received.filter((r) => r.path === '/hook?token=abc');
      return mine.length >= 2 ? mine : undefined;
    }, 15_000, 'a second delivery after the receiver failed the first');
    assert.deepEqual(deliveries.map((d) => d.delivery), [`${done.id}/1`, `${done.id}/2`]);
    for (const d of deliveries) {
      assert.equal(d.signature, signatureOf(SECRET, d.body), 'signed with the server secret');
      const notice = JSON.parse(d.body) as { event: string; execution: ExecutionView };
      assert.equal(notice.event, 'execution.finished');
      assert.deepEqual([notice.execution.id, notice.execution.state, notice.execution.code], [done.id, 'completed', 3]);
    }
  });

  test('a receiver that never answers delays nothing', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    script.set('/silent', ['hang', 'hang', 'hang']);
    const startedAt = Date.now();
    const done = await ts.client.submit({ executable: await echoExe(), args: ['x'], notify: `${base}/silent`, doNotCache: true }, { wait: true });
    assert.equal(done.state, 'completed');
    assert.ok(Date.now() - startedAt < 8_000, 'the job ended without waiting on its webhook');
    await eventually(async () => (received.some((r) => r.path === '/silent') ? true : undefined), 10_000, 'the delivery attempted');
    // The next job is served as ever while that delivery hangs.
    assert.equal((await ts.client.submit({ executable: await echoExe(), args: ['y'], doNotCache: true }, { wait: true })).state, 'completed');
  });

  test('without a configured secret, one is made in the data directory (mode 0600) and kept across restarts', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'remex-webhook-secret-'));
    try {
      const first = await startTestServer({ workerSlots: 0, dataDir });
      await first.close();
      const path = join(dataDir, 'webhook-secret');
      const secret = readFileSync(path, 'utf8');
      assert.match(secret, /^[0-9a-f]{64}\n$/);
      assert.equal(statSync(path).mode & 0o777, 0o600);
      const second = await startTestServer({ workerSlots: 0, dataDir });
      await second.close();
      assert.equal(readFileSync(path, 'utf8'), secret);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('a notify URL that is not http(s) is refused, and nothing is queued', async (t) => {
    if (!requireTools(t, 'gcc')) return;
    const exe = await echoExe();
    for (const notify of ['ftp://example.com/x', 'not a url', `file:///etc/passwd`]) {
      await assert.rejects(ts.client.submit({ executable: exe, notify }), (err: unknown) => isRemexError(err, 'INVALID_ARGUMENT') && /notify must be an http/.test((err as Error).message), notify);
    }
  });
});
