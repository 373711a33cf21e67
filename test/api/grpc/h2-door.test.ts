/**
 * The door's own gRPC server on node:http2 (h2-door.ts), at the edges grpc-js used to cover: a deadline
 * that runs out mid-Write, a client that cancels mid-Read or mid-Write, an oversize or malformed frame,
 * tokens and TLS. The rest of what the door does is the same handlers as on grpc-js, and every other gRPC
 * test runs against it with REMEX_GRPC_DOOR=h2. Bad frames are sent from a bare node:http2 client, as a
 * broken or hostile peer would; everything else from real grpc-js clients.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect } from 'node:http2';
import type { ClientHttp2Session, IncomingHttpHeaders } from 'node:http2';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Authenticator } from '../../../src/auth/tokens.js';
import { DEFAULT_MAX_BATCH_BYTES, maxMessageBytes } from '../../../src/api/grpc/limits.js';
import type { ReadResponseOut, WriteResponseOut } from '../../../src/api/grpc/messages.js';
import { reapiProtos } from '../../../src/api/grpc/protos.js';
import { digestOf } from '../../../src/core/digest.js';
import { makeTestPki } from '../../helpers/tls.js';
import type { GrpcHarness } from './harness.js';
import { call, encode, expectCode, startGrpcHarness, V2 } from './harness.js';

const CAPS = `/${V2}.Capabilities/GetCapabilities`;
const WRITE = '/google.bytestream.ByteStream/Write';

interface RawResult {
  headers: IncomingHttpHeaders;
  trailers: IncomingHttpHeaders;
  body: Buffer;
}

/** One call from a bare HTTP/2 client: `frames` written as they are; resolves at the stream's end. */
async function rawCall(session: ClientHttp2Session, path: string, frames: Buffer[], extra: Record<string, string> = {}, endRequest = true): Promise<RawResult> {
  const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...extra });
  for (const f of frames) req.write(f);
  if (endRequest) req.end();
  const chunks: Buffer[] = [];
  let headers: IncomingHttpHeaders = {};
  let trailers: IncomingHttpHeaders = {};
  req.on('response', (h) => (headers = h));
  req.on('trailers', (t) => (trailers = t));
  req.on('data', (d: Buffer) => chunks.push(d));
  await once(req, 'close');
  return { headers, trailers, body: Buffer.concat(chunks) };
}

/** The grpc-status of a raw call, from its trailers or (trailers-only) its headers. */
const statusOf = (r: RawResult): number => Number(r.trailers['grpc-status'] ?? r.headers['grpc-status']);
const messageOf = (r: RawResult): string => decodeURIComponent(String(r.trailers['grpc-message'] ?? r.headers['grpc-message'] ?? ''));

function frame(bytes: Buffer, flag = 0): Buffer {
  const prefix = Buffer.alloc(5);
  prefix[0] = flag;
  prefix.writeUInt32BE(bytes.byteLength, 1);
  return Buffer.concat([prefix, bytes]);
}

describe('the node:http2 gRPC door', () => {
  let h: GrpcHarness;
  let session: ClientHttp2Session;
  const done: Array<{ method: string; code: string }> = [];

  before(async () => {
    h = await startGrpcHarness({ door: 'h2', onCallDone: (method, code) => done.push({ method, code }) }, { workerSlots: 0 });
    session = connect(`http://${h.address}`);
    await once(session, 'connect');
  });
  after(async () => {
    session.close();
    await h.close();
  });

  /** The server still answers on the same connection. */
  async function stillServing(): Promise<void> {
    const r = await rawCall(session, CAPS, [frame(encode(`${V2}.GetCapabilitiesRequest`, { instance_name: '' }))]);
    assert.equal(statusOf(r), grpc.status.OK);
  }

  test('a deadline that runs out mid-Write ends it DEADLINE_EXCEEDED; the blob is not visible and the upload stays resumable', async () => {
    const blob = Buffer.alloc(2 * 1024 * 1024, 9);
    const digest = digestOf(blob);
    const name = `uploads/6f9619ff-8b86-4011-b42d-00c04fc964ff/blobs/${digest.hash}/${digest.sizeBytes}`;
    const first = frame(encode('google.bytestream.WriteRequest', { resource_name: name, write_offset: 0, data: blob.subarray(0, 1024 * 1024), finish_write: false }));
    // The first half, then silence with the stream open: only the server's deadline can end the call.
    const r = await rawCall(session, WRITE, [first], { 'grpc-timeout': '300m' }, false);
    assert.equal(statusOf(r), grpc.status.DEADLINE_EXCEEDED, messageOf(r));
    assert.equal(await h.ts.server.blobs.has(digest), false);
    const status = await call(h.clients.bytestream, h.clients.bytestream.queryWriteStatus, { resource_name: name });
    assert.deepEqual(status, { committed_size: 1024 * 1024, complete: false });
    assert.ok(done.some((d) => d.method === WRITE && d.code === 'DEADLINE_EXCEEDED'));
    await stillServing();
  });

  test('a client that cancels mid-Write leaves no blob; one that cancels mid-Read ends the call on the server', async () => {
    const blob = Buffer.alloc(4 * 1024 * 1024, 3);
    const digest = digestOf(blob);
    const resource = `uploads/0e4a7b36-52f4-4e0f-9a3f-4b4f5d6c7e8f/blobs/${digest.hash}/${digest.sizeBytes}`;
    const writesBefore = done.filter((d) => d.method === WRITE).length;
    const write = h.clients.bytestream.write(() => undefined);
    write.on('error', () => undefined);
    write.write({ resource_name: resource, write_offset: 0, data: blob.subarray(0, 1024 * 1024), finish_write: false });
    await new Promise((resolve) => setTimeout(resolve, 100));
    write.cancel();
    // grpc-js half-closes before it resets, so the server sees either a cancel or a Write that stopped
    // short of finish_write: both end the call with the upload parked, never a blob.
    await waitFor(() => done.filter((d) => d.method === WRITE).length > writesBefore);
    assert.equal(await h.ts.server.blobs.has(digest), false);
    const parked = await call(h.clients.bytestream, h.clients.bytestream.queryWriteStatus, { resource_name: resource });
    assert.equal(parked.complete, false);
    assert.ok(Number(parked.committed_size) <= 1024 * 1024);

    // Larger than the windows in flight, so the server is still sending when the client goes.
    const large = Buffer.alloc(32 * 1024 * 1024, 5);
    const stored = digestOf(large);
    await h.ts.server.blobs.put(stored, large);
    const read = h.clients.bytestream.read({ resource_name: `blobs/${stored.hash}/${stored.sizeBytes}`, read_offset: 0, read_limit: 0 });
    read.on('error', () => undefined);
    await new Promise<void>((resolve) => read.once('data', (_: ReadResponseOut) => resolve()));
    read.cancel();
    await waitFor(() => done.some((d) => d.method === '/google.bytestream.ByteStream/Read' && d.code === 'CANCELLED'));
    await stillServing();
  });

  test('a message over the size limit is RESOURCE_EXHAUSTED from its prefix, before it is buffered', async () => {
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(maxMessageBytes(DEFAULT_MAX_BATCH_BYTES) + 1, 1);
    const r = await rawCall(session, WRITE, [prefix, Buffer.alloc(1024)]);
    assert.equal(statusOf(r), grpc.status.RESOURCE_EXHAUSTED);
    assert.match(messageOf(r), /larger than the \d+ allowed/);
    // And from a grpc-js client, a batch past the limit.
    const big = Buffer.alloc(maxMessageBytes(DEFAULT_MAX_BATCH_BYTES), 1);
    await expectCode(call(h.clients.cas, h.clients.cas.batchUpdateBlobs, { instance_name: '', requests: [{ digest: { hash: digestOf(big).hash, size_bytes: big.byteLength }, data: big }] }), grpc.status.RESOURCE_EXHAUSTED);
    await stillServing();
  });

  test('malformed frames get a clear status and the server keeps serving', async () => {
    const caps = encode(`${V2}.GetCapabilitiesRequest`, { instance_name: '' });
    const badFlag = await rawCall(session, CAPS, [frame(caps, 7)]);
    assert.equal(statusOf(badFlag), grpc.status.INTERNAL);
    assert.match(messageOf(badFlag), /flag byte 7/);
    const compressed = await rawCall(session, CAPS, [frame(caps, 1)]);
    assert.equal(statusOf(compressed), grpc.status.UNIMPLEMENTED);
    const cut = await rawCall(session, CAPS, [frame(caps).subarray(0, 3)]);
    assert.equal(statusOf(cut), grpc.status.INVALID_ARGUMENT);
    const twoMessages = await rawCall(session, CAPS, [frame(caps), frame(caps)]);
    assert.equal(statusOf(twoMessages), grpc.status.INVALID_ARGUMENT);
    const garbage = await rawCall(session, CAPS, [frame(Buffer.from([0xff, 0xff, 0xff]))]);
    assert.equal(statusOf(garbage), grpc.status.INVALID_ARGUMENT);
    assert.match(messageOf(garbage), /malformed GetCapabilitiesRequest/);
    const unknown = await rawCall(session, '/no.Such/Method', [frame(caps)]);
    assert.equal(statusOf(unknown), grpc.status.UNIMPLEMENTED);
    const gzip = await rawCall(session, CAPS, [frame(caps, 1)], { 'grpc-encoding': 'gzip' });
    assert.equal(statusOf(gzip), grpc.status.UNIMPLEMENTED);
    await stillServing();
  });
});

describe('the node:http2 gRPC door with tokens and TLS', () => {
  let h: GrpcHarness;
  const pki = makeTestPki();
  const TOKEN = 'h2-door-client-token-0123456789abcdef';

  before(async () => {
    h = await startGrpcHarness({ door: 'h2', auth: Authenticator.fromTokens({ client: [TOKEN] }), tls: { cert: readFileSync(pki.certFile), key: readFileSync(pki.keyFile) } }, { workerSlots: 0 });
  });
  after(async () => {
    await h.close();
    pki.cleanup();
  });

  test('a grpc-js client over TLS is refused without a token, served with one; health stays open', async () => {
    const loaded = grpc.loadPackageDefinition(reapiProtos().packageDefinition) as unknown as {
      build: { bazel: { remote: { execution: { v2: { Capabilities: grpc.ServiceClientConstructor } } } } };
      google: { bytestream: { ByteStream: grpc.ServiceClientConstructor } };
      grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
    };
    const address = `127.0.0.1:${h.grpc.port}`;
    const tls = grpc.credentials.createSsl(pki.caPem);
    const withToken = grpc.credentials.combineChannelCredentials(
      tls,
      grpc.credentials.createFromMetadataGenerator((_, cb) => {
        const md = new grpc.Metadata();
        md.set('authorization', `Bearer ${TOKEN}`);
        cb(null, md);
      }),
    );
    const anonymous = new loaded.build.bazel.remote.execution.v2.Capabilities(address, tls);
    const health = new loaded.grpc.health.v1.Health(address, tls);
    const client = new loaded.google.bytestream.ByteStream(address, withToken);
    try {
      const getCaps = (anonymous as unknown as { getCapabilities: (r: unknown, cb: (e: grpc.ServiceError | null, r?: unknown) => void) => void }).getCapabilities;
      await expectCode(call(anonymous, getCaps as never, { instance_name: '' }), grpc.status.UNAUTHENTICATED);
      const check = (health as unknown as { check: (r: unknown, cb: (e: grpc.ServiceError | null, r?: unknown) => void) => void }).check;
      assert.deepEqual(await call(health, check as never, { service: '' }), { status: 'SERVING' });
      // A Write and a Read of 3 MiB through TLS with the token.
      const blob = Buffer.alloc(3 * 1024 * 1024, 11);
      const d = digestOf(blob);
      const res = await new Promise<WriteResponseOut>((resolve, reject) => {
        const w = (client as unknown as { write: (cb: (e: grpc.ServiceError | null, r?: WriteResponseOut) => void) => grpc.ClientWritableStream<unknown> }).write((e, r) => (e ? reject(e) : resolve(r as WriteResponseOut)));
        w.write({ resource_name: `uploads/1b4e28ba-2fa1-11d2-883f-0016d3cca427/blobs/${d.hash}/${d.sizeBytes}`, write_offset: 0, data: blob, finish_write: true });
        w.end();
      });
      assert.equal(Number(res.committed_size), blob.byteLength);
      const stream = (client as unknown as { read: (r: unknown) => grpc.ClientReadableStream<ReadResponseOut> }).read({ resource_name: `blobs/${d.hash}/${d.sizeBytes}`, read_offset: 0, read_limit: 0 });
      const parts: Buffer[] = [];
      for await (const m of stream as AsyncIterable<ReadResponseOut>) parts.push(Buffer.from(m.data));
      assert.ok(Buffer.concat(parts).equals(blob));
    } finally {
      anonymous.close();
      health.close();
      client.close();
    }
  });
});

async function waitFor(cond: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
