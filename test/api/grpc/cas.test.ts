/**
 * The REAPI CAS, ByteStream, Capabilities and health services through a real gRPC client against a real
 * server (no workers needed): happy paths and every error path a client can provoke.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import type { WriteRequest } from '../../../src/api/grpc/messages.js';
import { encodeDirectory } from '../../../src/cas/directory-codec.js';
import type { Digest } from '../../../src/core/digest.js';
import { digestOf, EMPTY_DIGEST } from '../../../src/core/digest.js';
import type { GrpcHarness } from './harness.js';
import { call, collect, encode, expectCode, msg, rawUnary, startGrpcHarness, upload, uploadTree, V2 } from './harness.js';

let h: GrpcHarness;

function writeStream(requests: WriteRequest[], opts: { cancelAfter?: number } = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const stream = h.clients.bytestream.write((err, res) => (err ? reject(err) : resolve(Number(res?.committed_size))));
    void (async () => {
      let sent = 0;
      for (const [i, req] of requests.entries()) {
        if (opts.cancelAfter === i) {
          // Once the server holds what was sent, drop the call as a broken connection would.
          await waitForCommitted(requests[0]?.resource_name ?? '', sent);
          stream.cancel();
          return;
        }
        sent += req.data?.length ?? 0;
        if (!stream.write(req)) await new Promise((r) => stream.once('drain', r));
      }
      stream.end();
    })();
  });
}

async function waitForCommitted(resource: string, size: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const state = await call(h.clients.bytestream, h.clients.bytestream.queryWriteStatus, { resource_name: resource });
    if (Number(state.committed_size) >= size) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the server never committed ${size} bytes of ${resource}`);
}

async function read(resource: string, offset = 0, limit = 0): Promise<Buffer> {
  const chunks = await collect(h.clients.bytestream.read({ resource_name: resource, read_offset: offset, read_limit: limit }));
  return Buffer.concat(chunks.map((c) => c.data));
}

describe('REAPI CAS over gRPC', () => {
  before(async () => {
    h = await startGrpcHarness({ maxBatchBytes: 64 * 1024, uploadIdleMs: 5_000 }, { workerSlots: 0 });
  });
  after(async () => {
    await h?.close();
  });

  test('capabilities: API 2.0 to 2.3, SHA256 everywhere Bazel looks, execution and cache updates, limits', async () => {
    const caps = await call(h.clients.caps, h.clients.caps.getCapabilities, { instance_name: '' });
    assert.deepEqual(caps.low_api_version, { major: 2, minor: 0, patch: 0, prerelease: '' });
    assert.deepEqual(caps.high_api_version, { major: 2, minor: 3, patch: 0, prerelease: '' });
    assert.equal(caps.execution_capabilities?.digest_function, 'SHA256');
    assert.deepEqual(caps.execution_capabilities?.digest_functions, ['SHA256']);
    assert.equal(caps.execution_capabilities?.exec_enabled, true);
    assert.deepEqual(caps.execution_capabilities?.execution_priority_capabilities?.priorities, [{ min_priority: -1000, max_priority: 1000 }]);
    assert.deepEqual(caps.cache_capabilities?.digest_functions, ['SHA256']);
    assert.equal(caps.cache_capabilities?.action_cache_update_capabilities?.update_enabled, true);
    assert.equal(caps.cache_capabilities?.max_batch_total_size_bytes, 64 * 1024);
    assert.equal(caps.cache_capabilities?.symlink_absolute_path_strategy, 'DISALLOWED');
  });

  test('health: SERVING for the server and each service; NOT_FOUND for others', async () => {
    assert.equal((await call(h.clients.health, h.clients.health.check, { service: '' })).status, 'SERVING');
    assert.equal((await call(h.clients.health, h.clients.health.check, { service: `${V2}.Execution` })).status, 'SERVING');
    await expectCode(call(h.clients.health, h.clients.health.check, { service: 'no.Such' }), status.NOT_FOUND);
  });

  test('FindMissingBlobs: names what is absent, never the empty blob; malformed digests are INVALID_ARGUMENT', async () => {
    const [present] = await upload(h, Buffer.from('present'));
    const absent = digestOf('absent');
    const res = await call(h.clients.cas, h.clients.cas.findMissingBlobs, { blob_digests: [msg(present as Digest), msg(absent), msg(EMPTY_DIGEST), msg(absent)] });
    assert.deepEqual(res.missing_blob_digests, [msg(absent)]);
    await expectCode(call(h.clients.cas, h.clients.cas.findMissingBlobs, { blob_digests: [{ hash: 'NOTHEX', size_bytes: 1 }] }), status.INVALID_ARGUMENT);
    await expectCode(call(h.clients.cas, h.clients.cas.findMissingBlobs, { blob_digests: [{ hash: absent.hash, size_bytes: -1 }] }), status.INVALID_ARGUMENT);
    await expectCode(call(h.clients.cas, h.clients.cas.findMissingBlobs, { blob_digests: [], digest_function: 'MD5' }), status.INVALID_ARGUMENT);
  });

  test('BatchUpdateBlobs: per-blob status, INVALID_ARGUMENT for a wrong digest; a batch over the limit is refused whole', async () => {
    const good = Buffer.from('good bytes');
    const res = await call(h.clients.cas, h.clients.cas.batchUpdateBlobs, {
      requests: [
        { digest: msg(digestOf(good)), data: good },
        { digest: msg(digestOf('other bytes')), data: Buffer.from('not the other bytes') },
        { digest: { hash: digestOf(good).hash, size_bytes: good.length + 1 }, data: good },
      ],
    });
    assert.deepEqual(
      res.responses.map((r) => r.status?.code),
      [status.OK, status.INVALID_ARGUMENT, status.INVALID_ARGUMENT],
    );
    const missing = await call(h.clients.cas, h.clients.cas.findMissingBlobs, { blob_digests: [msg(digestOf(good)), msg(digestOf('other bytes'))] });
    assert.deepEqual(missing.missing_blob_digests, [msg(digestOf('other bytes'))]);

    const big = Buffer.alloc(40 * 1024, 1);
    const big2 = Buffer.alloc(40 * 1024, 2);
    const err = await expectCode(
      call(h.clients.cas, h.clients.cas.batchUpdateBlobs, { requests: [big, big2].map((data) => ({ digest: msg(digestOf(data)), data })) }),
      status.INVALID_ARGUMENT,
    );
    assert.match(err.details, /limit/);
  });

  test('BatchReadBlobs: data per blob, NOT_FOUND per missing blob, the empty blob always; over the limit refused whole', async () => {
    const [a] = await upload(h, Buffer.from('aaa'));
    const absent = digestOf('never stored');
    const res = await call(h.clients.cas, h.clients.cas.batchReadBlobs, { digests: [msg(a as Digest), msg(absent), msg(EMPTY_DIGEST)] });
    assert.deepEqual(
      res.responses.map((r) => [r.status?.code, r.data.toString()]),
      [
        [status.OK, 'aaa'],
        [status.NOT_FOUND, ''],
        [status.OK, ''],
      ],
    );
    await expectCode(call(h.clients.cas, h.clients.cas.batchReadBlobs, { digests: [{ hash: absent.hash, size_bytes: 1024 * 1024 }] }), status.INVALID_ARGUMENT);
  });

  test('GetTree: every Directory, paged with resumable tokens; a missing root is NOT_FOUND', async () => {
    const files: Record<string, { data: Buffer }> = {};
    for (let i = 0; i < 5; i++) files[`d${i}/sub/f`] = { data: Buffer.from(`file ${i}`) };
    const root = await uploadTree(h, files);
    const all = await collect(h.clients.cas.getTree({ root_digest: msg(root), page_size: 0 }));
    assert.equal(all.length, 1);
    assert.equal(all[0]?.directories.length, 11, 'root, 5 d<i>, 5 sub');
    assert.equal(all[0]?.next_page_token, '');

    const pages = await collect(h.clients.cas.getTree({ root_digest: msg(root), page_size: 4 }));
    assert.deepEqual(
      pages.map((p) => p.directories.length),
      [4, 4, 3],
    );
    assert.equal(pages[2]?.next_page_token, '');
    const resumed = await collect(h.clients.cas.getTree({ root_digest: msg(root), page_size: 4, page_token: pages[0]?.next_page_token ?? '' }));
    assert.deepEqual(
      resumed.flatMap((p) => p.directories),
      pages.slice(1).flatMap((p) => p.directories),
    );
    const rootDir = all[0]?.directories[0];
    assert.deepEqual(
      rootDir?.directories.map((d) => d.name),
      ['d0', 'd1', 'd2', 'd3', 'd4'],
    );

    await expectCode(collect(h.clients.cas.getTree({ root_digest: msg(digestOf(encodeDirectory({ files: [{ name: 'x', digest: EMPTY_DIGEST, isExecutable: true }], directories: [], symlinks: [] }))) })), status.NOT_FOUND);
    const other = await uploadTree(h, { z: { data: Buffer.from('z') } });
    await expectCode(collect(h.clients.cas.getTree({ root_digest: msg(other), page_token: pages[0]?.next_page_token ?? '' })), status.INVALID_ARGUMENT);
  });

  test('ByteStream Read: whole, ranges (read_limit 0 = no limit), the empty blob; errors for offsets, missing blobs, bad names', async () => {
    const data = Buffer.from('0123456789'.repeat(100_000));
    const d = digestOf(data);
    const uploadId = randomUUID();
    assert.equal(await writeStream([{ resource_name: `uploads/${uploadId}/blobs/${d.hash}/${d.sizeBytes}`, data, finish_write: true }]), d.sizeBytes);
    const name = `blobs/${d.hash}/${d.sizeBytes}`;
    assert.deepEqual(await read(name), data);
    assert.deepEqual(await read(name, 999_990), Buffer.from('0123456789'));
    assert.deepEqual(await read(name, 5, 3), Buffer.from('567'));
    assert.deepEqual(await read(`sha256/${d.hash}/${d.sizeBytes}`.replace(/^/, 'blobs/')), data);
    assert.equal((await read(`blobs/${EMPTY_DIGEST.hash}/0`)).length, 0);
    assert.deepEqual(await read(`some/instance/${name}`), data);

    await expectCode(read(name, d.sizeBytes + 1), status.OUT_OF_RANGE);
    await expectCode(read(name, -1), status.OUT_OF_RANGE);
    await expectCode(read(`blobs/${digestOf('nope').hash}/4`), status.NOT_FOUND);
    await expectCode(read(`blobs/${d.hash}`), status.INVALID_ARGUMENT);
    await expectCode(read(`blobs/${d.hash}/ten`), status.INVALID_ARGUMENT);
    await expectCode(read(`blobs/NOTAHASH/10`), status.INVALID_ARGUMENT);
    await expectCode(read(`nothing-here/${d.hash}/10`), status.INVALID_ARGUMENT);
    await expectCode(read(`blobs/blake3/${d.hash}/10`), status.INVALID_ARGUMENT);
    await expectCode(read(`compressed-blobs/lzma/${d.hash}/${d.sizeBytes}`), status.INVALID_ARGUMENT);
  });

  test('ByteStream Write: chunked, verified; wrong bytes are INVALID_ARGUMENT and nothing is stored', async () => {
    const data = Buffer.alloc(300 * 1024, 7);
    const d = digestOf(data);
    const resource = `uploads/${randomUUID()}/blobs/${d.hash}/${d.sizeBytes}/trailing/metadata`;
    const chunks: WriteRequest[] = [];
    for (let at = 0; at < data.length; at += 64 * 1024) {
      chunks.push({ resource_name: at === 0 ? resource : '', write_offset: at, data: data.subarray(at, at + 64 * 1024), finish_write: at + 64 * 1024 >= data.length });
    }
    assert.equal(await writeStream(chunks), d.sizeBytes);
    assert.deepEqual(await read(`blobs/${d.hash}/${d.sizeBytes}`), data);

    const wrong = digestOf('expected');
    await expectCode(writeStream([{ resource_name: `uploads/${randomUUID()}/blobs/${wrong.hash}/${wrong.sizeBytes}`, data: Buffer.from('unexpect'), finish_write: true }]), status.INVALID_ARGUMENT);
    await expectCode(writeStream([{ resource_name: `uploads/${randomUUID()}/blobs/${wrong.hash}/${wrong.sizeBytes}`, data: Buffer.from('much too long'), finish_write: true }]), status.INVALID_ARGUMENT);
    const missing = await call(h.clients.cas, h.clients.cas.findMissingBlobs, { blob_digests: [msg(wrong)] });
    assert.equal(missing.missing_blob_digests.length, 1);

    await expectCode(writeStream([{ resource_name: `blobs/${wrong.hash}/8`, data: Buffer.from('expected'), finish_write: true }]), status.INVALID_ARGUMENT);
    await expectCode(writeStream([{ resource_name: `uploads/${randomUUID()}/blobs/${wrong.hash}/8`, write_offset: 3, data: Buffer.from('expected'), finish_write: true }]), status.INVALID_ARGUMENT);
    await expectCode(writeStream([{ resource_name: `uploads/${randomUUID()}/compressed-blobs/deflate/${wrong.hash}/8`, data: Buffer.from('x'), finish_write: true }]), status.INVALID_ARGUMENT);
  });

  test('ByteStream Write of a blob already present finishes at once with its full size', async () => {
    const data = Buffer.from('already here');
    const [d] = (await upload(h, data)) as [Digest];
    const resource = `uploads/${randomUUID()}/blobs/${d.hash}/${d.sizeBytes}`;
    assert.equal(await writeStream([{ resource_name: resource, data: data.subarray(0, 3) }]), d.sizeBytes);
    assert.deepEqual(await call(h.clients.bytestream, h.clients.bytestream.queryWriteStatus, { resource_name: resource }), { committed_size: d.sizeBytes, complete: true });
    assert.equal(await writeStream([{ resource_name: `uploads/${randomUUID()}/blobs/${EMPTY_DIGEST.hash}/0`, finish_write: true }]), 0);

    // A large one streamed in many messages, more than the HTTP/2 windows hold: answered at once, the rest
    // the client sends is drained, and the channel goes on serving.
    const big = Buffer.alloc(16 * 1024 * 1024, 3);
    const bigDigest = digestOf(big);
    const bigWrite = (): WriteRequest[] => {
      const resourceName = `uploads/${randomUUID()}/blobs/${bigDigest.hash}/${bigDigest.sizeBytes}`;
      const requests: WriteRequest[] = [];
      for (let at = 0; at < big.length; at += 64 * 1024) {
        requests.push({ resource_name: at === 0 ? resourceName : '', write_offset: at, data: big.subarray(at, at + 64 * 1024), finish_write: at + 64 * 1024 >= big.length });
      }
      return requests;
    };
    assert.equal(await writeStream(bigWrite()), bigDigest.sizeBytes);
    assert.equal(await writeStream(bigWrite()), bigDigest.sizeBytes);
    assert.deepEqual(await read(`blobs/${d.hash}/${d.sizeBytes}`), data);
  });

  test('ByteStream Write resumes after a broken connection: QueryWriteStatus reports the committed size', async () => {
    const data = Buffer.alloc(200 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31) % 251;
    const d = digestOf(data);
    const resource = `uploads/${randomUUID()}/blobs/${d.hash}/${d.sizeBytes}`;
    const half = 100 * 1024;
    assert.deepEqual(await call(h.clients.bytestream, h.clients.bytestream.queryWriteStatus, { resource_name: resource }), { committed_size: 0, complete: false });

    await expectCode(writeStream([{ resource_name: resource, write_offset: 0, data: data.subarray(0, half) }, { resource_name: resource, write_offset: half, data: data.subarray(half) }], { cancelAfter: 1 }), status.CANCELLED);
    const state = await call(h.clients.bytestream, h.clients.bytestream.queryWriteStatus, { resource_name: resource });
    assert.deepEqual(state, { committed_size: half, complete: false });

    // Resuming anywhere but the committed size is refused (and does not lose the upload)…
    await expectCode(writeStream([{ resource_name: resource, write_offset: half + 1, data: data.subarray(half + 1), finish_write: true }]), status.INVALID_ARGUMENT);
    assert.equal((await call(h.clients.bytestream, h.clients.bytestream.queryWriteStatus, { resource_name: resource })).committed_size, half);
    // …at the committed size it completes.
    assert.equal(await writeStream([{ resource_name: resource, write_offset: half, data: data.subarray(half), finish_write: true }]), d.sizeBytes);
    assert.deepEqual(await call(h.clients.bytestream, h.clients.bytestream.queryWriteStatus, { resource_name: resource }), { committed_size: d.sizeBytes, complete: true });
    assert.deepEqual(await read(`blobs/${d.hash}/${d.sizeBytes}`), data);
  });

  test('a client closing its side without finish_write keeps the upload for a resumed Write', async () => {
    const data = Buffer.from('first half|second half');
    const d = digestOf(data);
    const resource = `uploads/${randomUUID()}/blobs/${d.hash}/${d.sizeBytes}`;
    assert.equal(await writeStream([{ resource_name: resource, data: data.subarray(0, 11) }]), 11);
    assert.equal(await writeStream([{ resource_name: resource, write_offset: 11, data: data.subarray(11), finish_write: true }]), d.sizeBytes);
  });

  test('malformed request bytes are INVALID_ARGUMENT, not INTERNAL', async () => {
    // A sub-message running past the end; an undefined wire type.
    const garbage = [Buffer.from([0x12, 0x05, 0x0a]), Buffer.from([0x0f, 0xff])];
    for (const path of [`/${V2}.ContentAddressableStorage/FindMissingBlobs`, `/${V2}.ActionCache/GetActionResult`, `/${V2}.Capabilities/GetCapabilities`]) {
      for (const bytes of garbage) {
        const err = await expectCode(rawUnary(h.clients.raw, path, bytes), status.INVALID_ARGUMENT);
        assert.match(err.details, /malformed/);
      }
    }
    // Well-formed bytes pass the same path.
    const ok = await rawUnary(h.clients.raw, `/${V2}.Capabilities/GetCapabilities`, encode(`${V2}.GetCapabilitiesRequest`, { instance_name: '' }));
    assert.ok(ok.length > 0);
  });

  test('instance names: malformed ones are INVALID_ARGUMENT', async () => {
    for (const name of ['a//b', 'x/blobs', 'uploads', '/lead']) {
      await expectCode(call(h.clients.cas, h.clients.cas.findMissingBlobs, { instance_name: name, blob_digests: [] }), status.INVALID_ARGUMENT);
    }
    assert.ok(await call(h.clients.cas, h.clients.cas.findMissingBlobs, { instance_name: 'any/name', blob_digests: [] }));
  });
});

describe('REAPI over gRPC with a configured list of instance names', () => {
  let hh: GrpcHarness;
  before(async () => {
    hh = await startGrpcHarness({ instanceNames: ['main', 'ci/arm'] }, { workerSlots: 0 });
  });
  after(async () => {
    await hh?.close();
  });

  test('serves the names listed and refuses others with INVALID_ARGUMENT, on every service', async () => {
    const { cas, caps, ac, bytestream } = hh.clients;
    assert.ok(await call(cas, cas.findMissingBlobs, { instance_name: 'ci/arm', blob_digests: [] }));
    assert.ok(await call(caps, caps.getCapabilities, { instance_name: 'main' }));
    const err = await expectCode(call(cas, cas.findMissingBlobs, { instance_name: 'other', blob_digests: [] }), status.INVALID_ARGUMENT);
    assert.match(err.details, /unknown instance name "other"/);
    await expectCode(call(cas, cas.findMissingBlobs, { instance_name: '', blob_digests: [] }), status.INVALID_ARGUMENT);
    await expectCode(call(caps, caps.getCapabilities, { instance_name: 'other' }), status.INVALID_ARGUMENT);
    await expectCode(call(ac, ac.getActionResult, { instance_name: 'other', action_digest: msg(digestOf('a')) }), status.INVALID_ARGUMENT);
    await expectCode(collect(bytestream.read({ resource_name: `other/blobs/${EMPTY_DIGEST.hash}/0` })), status.INVALID_ARGUMENT);
    assert.equal((await collect(bytestream.read({ resource_name: `ci/arm/blobs/${EMPTY_DIGEST.hash}/0` }))).length, 0);
  });
});
