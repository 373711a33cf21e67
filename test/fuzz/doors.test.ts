/**
 * Fuzzing of the doors of a real server (in-process, port 0): generated HTTP requests on every route the
 * Fastify instance has (methods, path parameters, query strings, JSON and raw bodies — the worker protocol
 * included), blob uploads under right and wrong names, WebSocket frames, and raw gRPC messages to every
 * REAPI method, ByteStream resource names and offsets among them. Properties: no 5xx / INTERNAL, every
 * refusal a problem with a code and a detail, the server answers the next request, no unhandled rejection,
 * and a stored blob always has the digest it is stored under.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { WebSocket } from 'ws';
import { reapiProtos } from '../../src/api/grpc/protos.js';
import { routesOf } from '../../src/api/http/route-table.js';
import { bearerMetadata, callRaw, protoMethods } from '../helpers/grpc-raw.js';
import { startTestServer } from '../helpers/server.js';
import type { TestServer } from '../helpers/server.js';
import { fuzzParams, mutate, watchUnhandledRejections } from './fuzz.js';

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
/** gRPC codes that mean the server failed rather than refused. */
const SERVER_FAULTS = new Set([grpc.status.INTERNAL, grpc.status.UNKNOWN, grpc.status.DATA_LOSS]);

describe('fuzz: the doors of a running server', () => {
  let ts: TestServer;
  let client: grpc.Client;
  const rejections = watchUnhandledRejections();

  before(async () => {
    // No worker: nothing generated runs, a submission is refused as unservable or queued.
    ts = await startTestServer({ workerSlots: 0, grpcPort: 0 });
    client = new grpc.Client(`127.0.0.1:${ts.server.grpcPort}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    client?.close();
    await ts?.close();
    rejections.stop();
  });

  async function stillServing(): Promise<void> {
    const res = await fetch(`${ts.server.url}/healthz`);
    assert.equal(res.status, 200, 'the server answers the next request');
    await res.arrayBuffer();
  }

  test('HTTP: generated requests on every route get an answer, and a refusal is a clear problem', async () => {
    const routes = routesOf(ts.server.http);
    const segment = fc.oneof(fc.string({ maxLength: 70 }), fc.constantFrom('0'.repeat(64), 'A'.repeat(64), '..', '%00', '%2F', 'x'.repeat(300)));
    const query = fc.array(fc.tuple(fc.constantFrom('wait', 'state', 'label', 'name', 'since', 'limit', 'after', 'x'), fc.string({ maxLength: 30 })), { maxLength: 4 });
    const body = fc.oneof(
      fc.jsonValue({ maxDepth: 4 }).map((v) => ({ type: 'application/json', bytes: Buffer.from(JSON.stringify(v)) })),
      fc.string({ maxLength: 200 }).map((s) => ({ type: 'application/json', bytes: Buffer.from(s) })),
      fc.uint8Array({ maxLength: 200 }).map((b) => ({ type: 'application/octet-stream', bytes: Buffer.from(b) })),
      fc.constant(undefined),
    );
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: routes.length - 1 }), fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'PATCH'), segment, query, body, async (which, otherMethod, param, q, b) => {
        const route = routes[which] as { method: string; url: string };
        const method = which % 3 === 0 ? otherMethod : route.method;
        const path = route.url.replace(/:[A-Za-z_]+|\*/g, encodeURIComponent(param));
        const search = new URLSearchParams(q).toString();
        const withBody = b !== undefined && method !== 'GET' && method !== 'HEAD';
        const res = await fetch(`${ts.server.url}${path}${search ? `?${search}` : ''}`, {
          method,
          ...(withBody ? { body: b.bytes, headers: { 'content-type': b.type } } : {}),
          signal: AbortSignal.timeout(10_000),
        });
        const text = await res.text();
        assert.ok(res.status < 500, `${method} ${path}?${search} answered ${res.status}: ${text}`);
        if (res.status >= 400 && method !== 'HEAD') {
          const problem = JSON.parse(text) as { code?: string; detail?: string };
          assert.ok(problem.code && problem.detail, `${method} ${path}: a problem with a code and a detail: ${text}`);
        }
      }),
      fuzzParams(150),
    );
    await stillServing();
    rejections.check();
  });

  test('HTTP: a blob is stored only under its own digest', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), fc.constantFrom('right', 'other', 'upper', 'short'), fc.integer({ min: -1, max: 2 }), async (bytes, naming, sizeSkew) => {
        const right = sha256(bytes);
        const hash = naming === 'right' ? right : naming === 'other' ? sha256(Buffer.concat([Buffer.from(bytes), Buffer.from('!')])) : naming === 'upper' ? right.toUpperCase() : right.slice(1);
        const body = sizeSkew > 0 ? Buffer.concat([Buffer.from(bytes), Buffer.alloc(sizeSkew)]) : sizeSkew < 0 && bytes.length > 0 ? Buffer.from(bytes).subarray(1) : Buffer.from(bytes);
        const res = await fetch(`${ts.server.url}/v1/blobs/sha256/${hash}`, { method: 'PUT', body, headers: { 'content-type': 'application/octet-stream' } });
        const text = await res.text();
        if (res.status < 300) {
          assert.equal(hash, sha256(body), `stored ${body.length} bytes under ${hash}: ${text}`);
        } else {
          assert.ok(res.status >= 400 && res.status < 500, `PUT answered ${res.status}: ${text}`);
          assert.ok((JSON.parse(text) as { detail?: string }).detail);
        }
        // Whatever is stored under a name has that name's digest.
        const back = await fetch(`${ts.server.url}/v1/blobs/sha256/${hash}`);
        const stored = Buffer.from(await back.arrayBuffer());
        if (back.status === 200) assert.equal(sha256(stored), hash);
      }),
      fuzzParams(100),
    );
    await stillServing();
    rejections.check();
  });

  test('WebSocket: generated frames get a pong or an error frame, and the socket goes on', async () => {
    const frame = fc.oneof(
      fc.string({ maxLength: 100 }),
      fc.tuple(fc.constantFrom('subscribe', 'follow', 'unsubscribe', 'ack', 'SUBSCRIBE', 'ping'), fc.constantFrom(':', ': ', ':\t', ''), fc.string({ maxLength: 60 })).map(([v, sep, id]) => `${v}${sep}${id}`),
      fc.uint8Array({ maxLength: 100 }).map((b) => Buffer.from(b)),
      fc.constant('x'.repeat(5000)),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(frame, { minLength: 1, maxLength: 8 }), async (frames) => {
        const ws = new WebSocket(`${ts.server.url.replace(/^http/, 'ws')}/v1/events`);
        const replies: string[] = [];
        try {
          await new Promise<void>((resolve, reject) => {
            ws.on('open', resolve);
            ws.on('error', reject);
          });
          const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
          const ponged = new Promise<void>((resolve) =>
            ws.on('message', (data) => {
              const text = data.toString();
              replies.push(text);
              if (text === 'pong' && replies.length > 0) resolve();
            }),
          );
          for (const f of frames) ws.send(f);
          ws.send('ping');
          const oversized = frames.some((f) => f.length > 4096);
          // An oversized frame closes the socket (1009); anything else leaves it open to answer the ping.
          const outcome = await Promise.race([ponged.then(() => 'pong' as const), closed]);
          if (oversized) assert.ok(outcome === 1009 || outcome === 'pong', `closed with ${outcome}`);
          else assert.equal(outcome, 'pong', `replies: ${replies.join(' | ')}`);
          for (const r of replies) {
            if (r === 'pong') continue;
            const parsed = JSON.parse(r) as { error?: { code: string; detail: string } };
            if (parsed.error) assert.ok(parsed.error.code && parsed.error.detail, r);
          }
        } finally {
          ws.terminate();
        }
      }),
      fuzzParams(60),
    );
    await stillServing();
    rejections.check();
  });

  test('gRPC: random and mutated messages to every REAPI method are refused, never a server fault', async () => {
    const protos = reapiProtos();
    const hash = 'c'.repeat(64);
    const samples: Record<string, Buffer> = {
      ReadRequest: protos.codec('google.bytestream.ReadRequest').encode({ resource_name: `main/blobs/${hash}/10`, read_offset: 0, read_limit: 5 }),
      WriteRequest: protos.codec('google.bytestream.WriteRequest').encode({ resource_name: `uploads/u1/blobs/${hash}/3`, write_offset: 0, finish_write: true, data: Buffer.from('abc') }),
      FindMissingBlobsRequest: protos.codec('build.bazel.remote.execution.v2.FindMissingBlobsRequest').encode({ blob_digests: [{ hash, size_bytes: 3 }] }),
      ExecuteRequest: protos.codec('build.bazel.remote.execution.v2.ExecuteRequest').encode({ action_digest: { hash, size_bytes: 3 }, skip_cache_lookup: true }),
    };
    const methods = protoMethods().filter((m) => !m.path.startsWith('/grpc.health.v1.'));
    const request = fc.oneof(
      fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
      fc.tuple(fc.constantFrom(...Object.values(samples)), fc.array(fc.record({ kind: fc.nat(), at: fc.nat(), value: fc.nat() }), { minLength: 1, maxLength: 6 })).map(([s, ops]) => mutate(s, ops)),
    );
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: methods.length - 1 }), request, async (which, bytes) => {
        const m = methods[which] as (typeof methods)[number];
        const code = await callRaw(client, m, bearerMetadata(), bytes, 10_000);
        assert.ok(code === 'served' || !SERVER_FAULTS.has(code), `${m.path} answered ${String(code)}`);
        assert.notEqual(code, grpc.status.DEADLINE_EXCEEDED, `${m.path} did not answer within its bound`);
      }),
      fuzzParams(200),
    );
    await stillServing();
    rejections.check();
  });

  test('gRPC: ByteStream resource names and offsets', async () => {
    const protos = reapiProtos();
    const content = Buffer.from('bytestream fuzz');
    const stored = sha256(content);
    await ts.server.blobs.put({ hash: stored, sizeBytes: content.length }, content);
    const read = { path: '/google.bytestream.ByteStream/Read', requestStream: false, responseStream: true };
    const segment = fc.oneof(fc.constantFrom('blobs', 'uploads', 'compressed-blobs', 'zstd', 'sha256', stored, String(content.length), '0', '-1', '99999999999999999999', ''), fc.string({ maxLength: 12 }));
    const offset = fc.oneof(fc.integer({ min: -5, max: 40 }), fc.constantFrom(Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 2 ** 40));
    await fc.assert(
      fc.asyncProperty(fc.array(segment, { maxLength: 7 }), offset, offset, async (segments, readOffset, readLimit) => {
        const bytes = protos.codec('google.bytestream.ReadRequest').encode({ resource_name: segments.join('/'), read_offset: readOffset, read_limit: readLimit });
        const code = await callRaw(client, read, bearerMetadata(), bytes, 10_000);
        assert.ok(code === 'served' || !SERVER_FAULTS.has(code), `Read ${segments.join('/')} @${readOffset}+${readLimit}: ${String(code)}`);
        if (code === 'served') assert.ok(segments.includes(stored), 'only the stored blob is served');
      }),
      fuzzParams(200),
    );
    await stillServing();
    rejections.check();
  });
});
