/**
 * The metrics module on its own: gauges read at scrape time (what other components, the autoscaler among
 * them, register), the doors' view of a real (in-memory) blob store counting bytes in and out, the
 * execution outcomes taken from the job states, and a real gRPC server's calls counted by code.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Readable } from 'node:stream';
import { MemoryBlobStore } from '../../src/cas/memory/memory-blob-store.js';
import { digestOf } from '../../src/core/digest.js';
import { TERMINAL_STATES } from '../../src/core/model.js';
import * as grpc from '@grpc/grpc-js';
import { Authenticator } from '../../src/auth/tokens.js';
import { grpcCallMetrics, meteredBlobStore } from '../../src/metrics/door-metrics.js';
import { startGrpcHarness } from '../api/grpc/harness.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { EXECUTION_OUTCOMES } from '../../src/metrics/scheduler-metrics.js';

test('a gauge with a reading shows what the reading sets at each scrape, and only that', async () => {
  const metrics = new Metrics({ processMetrics: false });
  let pools: Array<{ pool: string; desired: number }> = [{ pool: 'arm', desired: 3 }, { pool: 'x86', desired: 1 }];
  metrics.gauge({ name: 'remex_autoscaler_desired_workers', help: 'Workers the autoscaler wants.', labelNames: ['pool'], read: (set) => pools.forEach((p) => set({ pool: p.pool }, p.desired)) });
  let text = await metrics.render();
  assert.match(text, /^remex_autoscaler_desired_workers\{pool="arm"\} 3$/m);
  assert.match(text, /^remex_autoscaler_desired_workers\{pool="x86"\} 1$/m);
  pools = [{ pool: 'arm', desired: 0 }];
  text = await metrics.render();
  assert.match(text, /^remex_autoscaler_desired_workers\{pool="arm"\} 0$/m);
  assert.doesNotMatch(text, /pool="x86"/, 'a series no longer set is gone');
  assert.match(metrics.contentType, /^text\/plain/);
});

test('the doors\' blob store counts bytes in and out; everything else is the store\'s own', async () => {
  const metrics = new Metrics({ processMetrics: false });
  const store = new MemoryBlobStore();
  const blobs = meteredBlobStore(metrics, store);
  const a = Buffer.from('a blob of some bytes');
  const b = Buffer.from('another, streamed');
  await blobs.put(digestOf(a), a);
  await blobs.putStream(digestOf(b), Readable.from([b]));
  assert.deepEqual(await blobs.get(digestOf(a)), a);
  const chunks: Buffer[] = [];
  for await (const c of await blobs.getStream(digestOf(b), { offset: 2, limit: 5 })) chunks.push(c);
  assert.equal(Buffer.concat(chunks).toString(), 'other'.slice(0, 5));
  assert.equal(blobs.maxBlobBytes, store.maxBlobBytes);
  assert.equal(await blobs.has(digestOf(b)), true);
  const text = await metrics.render();
  assert.match(text, new RegExp(`^remex_cas_bytes_in_total ${a.length + b.length}$`, 'm'));
  assert.match(text, new RegExp(`^remex_cas_bytes_out_total ${a.length + 5}$`, 'm'));
  assert.match(text, /^remex_cas_blobs_stored_total 2$/m);
});

test('execution outcomes are the terminal job states and cached', () => {
  assert.deepEqual(EXECUTION_OUTCOMES, [...TERMINAL_STATES, 'cached']);
});

test('gRPC calls are counted by method and code, refusals of the token check included', async () => {
  const metrics = new Metrics({ processMetrics: false });
  const token = 'a-client-token-for-the-grpc-door-0123456789';
  const h = await startGrpcHarness({ onCallDone: grpcCallMetrics(metrics), auth: Authenticator.fromTokens({ client: [token] }) }, { workerSlots: 0 });
  try {
    const authed = new grpc.Metadata();
    authed.set('authorization', `Bearer ${token}`);
    await new Promise<void>((resolve, reject) => h.clients.caps.getCapabilities({ instance_name: '' }, authed, (err) => (err ? reject(err) : resolve())));
    const refused = await new Promise<grpc.ServiceError | null>((resolve) => h.clients.caps.getCapabilities({ instance_name: '' }, (err) => resolve(err)));
    assert.equal(refused?.code, grpc.status.UNAUTHENTICATED);
  } finally {
    await h.close();
  }
  const text = await metrics.render();
  const method = '/build.bazel.remote.execution.v2.Capabilities/GetCapabilities';
  assert.match(text, new RegExp(`^remex_grpc_requests_total\\{method="${method}",code="OK"\\} 1$`, 'm'));
  assert.match(text, new RegExp(`^remex_grpc_requests_total\\{method="${method}",code="UNAUTHENTICATED"\\} 1$`, 'm'));
  assert.match(text, new RegExp(`^remex_grpc_request_duration_seconds_count\\{method="${method}"\\} 2$`, 'm'));
});
