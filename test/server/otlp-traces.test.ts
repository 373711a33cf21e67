/**
 * OTLP trace export: configuration from the OpenTelemetry environment variables, and a real execution
 * (real server, real bubblewrap worker) exported as spans under the caller's span. The receiving end is a
 * stand-in for an OpenTelemetry Collector (a plain HTTP server that keeps what it is sent): no collector
 * can run on this machine.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { digestOf } from '../../src/core/digest.js';
import { otlpTraceOptionsOf } from '../../src/server/otlp-traces.js';
import { compileC, requireTools } from '../helpers/tools.js';
import { startTestServer } from '../helpers/server.js';

test('configuration: none without the variables; the traces endpoint wins; headers parsed', () => {
  assert.equal(otlpTraceOptionsOf({}), undefined);
  assert.deepEqual(otlpTraceOptionsOf({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }), { url: 'http://collector:4318/v1/traces', headers: {}, serviceName: 'remex' });
  assert.deepEqual(
    otlpTraceOptionsOf({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://traces:4318/custom',
      OTEL_EXPORTER_OTLP_HEADERS: 'api-key=abc%3D1, x-team = builds',
      OTEL_SERVICE_NAME: 'remex-eu',
    }),
    { url: 'http://traces:4318/custom', headers: { 'api-key': 'abc=1', 'x-team': 'builds' }, serviceName: 'remex-eu' },
  );
});

test('an execution becomes a span under the caller\'s, with a child span per phase, sent as OTLP/HTTP JSON', async (t) => {
  if (!requireTools(t, 'bwrap', 'gcc')) return;
  const received: Array<{ path: string; headers: IncomingHttpHeaders; body: unknown }> = [];
  const collector = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ path: req.url ?? '', headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString()) });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
  const address = collector.address();
  assert.ok(typeof address === 'object' && address);
  const ts = await startTestServer({
    workerSlots: 1,
    localPlatforms: ['x86_64-linux-cpu'],
    otlpTraces: { url: `http://127.0.0.1:${address.port}/v1/traces`, headers: { 'x-api-key': 'collector-key' }, serviceName: 'remex-test' },
  });
  let jobId: string;
  try {
    const exe = readFileSync(compileC({ code: 'int main(void) { return 0; }\n', name: 'otlp-trivial' }, 'x86_64'));
    await ts.client.putBlob(digestOf(exe), exe);
    const res = await fetch(`${ts.server.url}/v1/executions?wait=1`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: '00-5b8aa5a2d2c872e8321cf37308d69df2-051581bf3cb55c13-01' },
      body: JSON.stringify({ executable: digestOf(exe), doNotCache: true }),
    });
    assert.equal(res.status, 200);
    jobId = ((await res.json()) as { id: string }).id;
  } finally {
    // Closing sends what is held.
    await ts.close();
    await new Promise<void>((resolve) => collector.close(() => resolve()));
  }
  assert.equal(received.length, 1);
  const [post] = received as [(typeof received)[number]];
  assert.equal(post.path, '/v1/traces');
  assert.equal(post.headers['content-type'], 'application/json');
  assert.equal(post.headers['x-api-key'], 'collector-key');
  type Span = { traceId: string; spanId: string; parentSpanId?: string; name: string; startTimeUnixNano: string; endTimeUnixNano: string; attributes: Array<{ key: string; value: Record<string, unknown> }> };
  const body = post.body as { resourceSpans: Array<{ resource: { attributes: Array<{ key: string; value: { stringValue: string } }> }; scopeSpans: Array<{ spans: Span[] }> }> };
  const resource = body.resourceSpans[0];
  assert.deepEqual(resource?.resource.attributes, [{ key: 'service.name', value: { stringValue: 'remex-test' } }]);
  const spans = resource?.scopeSpans[0]?.spans ?? [];
  const root = spans.find((s) => s.name === 'remex execution');
  assert.ok(root);
  assert.equal(root.traceId, '5b8aa5a2d2c872e8321cf37308d69df2');
  assert.equal(root.parentSpanId, '051581bf3cb55c13', 'under the caller\'s span');
  assert.deepEqual(root.attributes.find((a) => a.key === 'remex.job_id')?.value, { stringValue: jobId });
  const phases = spans.filter((s) => s !== root);
  assert.deepEqual(phases.map((s) => s.name), ['queued', 'leased', 'staged', 'running', 'outputs_stored']);
  for (const s of phases) {
    assert.equal(s.traceId, root.traceId);
    assert.equal(s.parentSpanId, root.spanId);
    assert.ok(BigInt(s.endTimeUnixNano) >= BigInt(s.startTimeUnixNano));
    assert.ok(BigInt(s.startTimeUnixNano) >= BigInt(root.startTimeUnixNano) && BigInt(s.endTimeUnixNano) <= BigInt(root.endTimeUnixNano));
  }
});
