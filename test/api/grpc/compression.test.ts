/**
 * REAPI compressed blobs through a real gRPC client: ByteStream `compressed-blobs/zstd/…` and batch
 * `compressor`, with the bytes compressed and checked by the zstd command-line tool (the reference
 * implementation, independent of the server's binding). A blob stored one way is served the other; every
 * bad compressed upload is refused with nothing stored.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import type { WriteRequest } from '../../../src/api/grpc/messages.js';
import type { Digest } from '../../../src/core/digest.js';
import { digestOf } from '../../../src/core/digest.js';
import { requireTools } from '../../helpers/tools.js';
import type { GrpcHarness } from './harness.js';
import { call, collect, expectCode, msg, startGrpcHarness, upload } from './harness.js';

let h: GrpcHarness;

/** `zstd` the tool: what a client's library would send. */
function zstdCli(data: Buffer, ...args: string[]): Buffer {
  return execFileSync('zstd', ['-q', '-c', ...args], { input: data, maxBuffer: 1 << 30 });
}

/** Source-like text: compressible, as a build's inputs are. */
function sourceText(bytes: number): Buffer {
  const lines: string[] = [];
  for (let i = 0; lines.join('\n').length < bytes; i++) lines.push(`static int f${i}(int x) { return x * ${i % 97} + ${i}; } // line ${i}`);
  return Buffer.from(lines.join('\n').slice(0, bytes));
}

function write(requests: WriteRequest[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const stream = h.clients.bytestream.write((err, res) => (err ? reject(err) : resolve(Number(res?.committed_size))));
    for (const req of requests) stream.write(req);
    stream.end();
  });
}

/** One Write of `bytes` in chunks of `chunk`, from `offset`, finishing unless told not to. */
function chunked(resource: string, bytes: Buffer, chunk = 16 * 1024, offset = 0, finish = true): WriteRequest[] {
  const reqs: WriteRequest[] = [];
  for (let at = offset; at < bytes.length; at += chunk) {
    reqs.push({ resource_name: at === offset ? resource : '', write_offset: at, data: bytes.subarray(at, at + chunk), finish_write: finish && at + chunk >= bytes.length });
  }
  return reqs;
}

async function read(resource: string, offset = 0, limit = 0): Promise<Buffer> {
  const chunks = await collect(h.clients.bytestream.read({ resource_name: resource, read_offset: offset, read_limit: limit }));
  return Buffer.concat(chunks.map((c) => c.data));
}

async function isMissing(d: Digest): Promise<boolean> {
  const res = await call(h.clients.cas, h.clients.cas.findMissingBlobs, { blob_digests: [msg(d)] });
  return res.missing_blob_digests.length === 1;
}

describe('REAPI compressed blobs (zstd)', () => {
  before(async () => {
    h = await startGrpcHarness({ maxBatchBytes: 1024 * 1024, uploadIdleMs: 5_000 }, { workerSlots: 0 });
  });
  after(async () => {
    await h?.close();
  });

  test('Capabilities advertise zstd for ByteStream and batches', async () => {
    const caps = await call(h.clients.caps, h.clients.caps.getCapabilities, { instance_name: '' });
    assert.deepEqual(caps.cache_capabilities?.supported_compressors, ['ZSTD']);
    assert.deepEqual(caps.cache_capabilities?.supported_batch_update_compressors, ['ZSTD']);
  });

  test('ByteStream: written compressed, read plain and compressed; written plain, read compressed', async (t) => {
    if (!requireTools(t, 'zstd')) return;
    const data = sourceText(700_000);
    const d = digestOf(data);
    const compressed = zstdCli(data, '-3');
    assert.ok(compressed.length * 3 < data.length, 'the fixture compresses');
    const resource = `uploads/${randomUUID()}/compressed-blobs/zstd/${d.hash}/${d.sizeBytes}`;
    assert.equal(await write(chunked(resource, compressed)), compressed.length);
    assert.deepEqual(await read(`blobs/${d.hash}/${d.sizeBytes}`), data);
    const served = await read(`compressed-blobs/zstd/${d.hash}/${d.sizeBytes}`);
    assert.deepEqual(execFileSync('zstd', ['-q', '-d', '-c'], { input: served, maxBuffer: 1 << 30 }), data);
    // Offsets and limits count compressed bytes.
    assert.deepEqual(await read(`compressed-blobs/zstd/${d.hash}/${d.sizeBytes}`, 10, 100), served.subarray(10, 110));
    await expectCode(read(`compressed-blobs/zstd/${d.hash}/${d.sizeBytes}`, served.length + 1), status.OUT_OF_RANGE);
    // Already present: a compressed Write answers -1 at once.
    assert.equal(await write(chunked(`uploads/${randomUUID()}/compressed-blobs/zstd/${d.hash}/${d.sizeBytes}`, compressed)), -1);

    const plain = sourceText(200_000).reverse();
    const [pd] = (await upload(h, plain)) as [Digest];
    const plainServed = await read(`compressed-blobs/zstd/${pd.hash}/${pd.sizeBytes}`);
    assert.deepEqual(execFileSync('zstd', ['-q', '-d', '-c'], { input: plainServed, maxBuffer: 1 << 30 }), plain);
    // Packed small blobs too, and the empty blob.
    const small = Buffer.from('tiny');
    const [sd] = (await upload(h, small)) as [Digest];
    assert.deepEqual(execFileSync('zstd', ['-q', '-d', '-c'], { input: await read(`compressed-blobs/zstd/${sd.hash}/4`) }), small);
    const empty = digestOf(Buffer.alloc(0));
    assert.equal(execFileSync('zstd', ['-q', '-d', '-c'], { input: await read(`compressed-blobs/zstd/${empty.hash}/0`) }).length, 0);
  });

  test('a compressed Write that breaks off resumes at its committed (compressed) offset; a wrong offset is refused', async (t) => {
    if (!requireTools(t, 'zstd')) return;
    const data = sourceText(400_000);
    const d = digestOf(data);
    const compressed = zstdCli(data, '-1');
    const resource = `uploads/${randomUUID()}/compressed-blobs/zstd/${d.hash}/${d.sizeBytes}`;
    const half = Math.floor(compressed.length / 2);
    assert.equal(await write(chunked(resource, compressed.subarray(0, half), 8 * 1024, 0, false)), half);
    assert.deepEqual(await call(h.clients.bytestream, h.clients.bytestream.queryWriteStatus, { resource_name: resource }), { committed_size: half, complete: false });
    await expectCode(write([{ resource_name: resource, write_offset: half + 5, data: compressed.subarray(half + 5), finish_write: true }]), status.INVALID_ARGUMENT);
    assert.ok(await isMissing(d));
    assert.equal(await write(chunked(resource, compressed, 8 * 1024, half)), compressed.length);
    assert.deepEqual(await read(`blobs/${d.hash}/${d.sizeBytes}`), data);
  });

  test('bad compressed uploads: not zstd, a zip bomb, another digest, a truncated frame, an unknown compressor — refused, nothing stored', async (t) => {
    if (!requireTools(t, 'zstd')) return;
    const data = sourceText(100_000);
    const d = digestOf(data);
    const name = (): string => `uploads/${randomUUID()}/compressed-blobs/zstd/${d.hash}/${d.sizeBytes}`;

    const notZstd = await expectCode(write([{ resource_name: name(), data: data.subarray(0, 5000), finish_write: true }]), status.INVALID_ARGUMENT);
    assert.match(notZstd.details, /not a valid zstd stream/);
    // 512 MiB of zeros in a few KiB, offered as the 100 000-byte blob.
    const bomb = zstdCli(Buffer.alloc(512 * 1024 * 1024), '-19');
    assert.ok(bomb.length < 64 * 1024);
    const bombErr = await expectCode(write([{ resource_name: name(), data: bomb, finish_write: true }]), status.INVALID_ARGUMENT);
    assert.match(bombErr.details, /decompresses to more than the 100000 bytes/);
    const other = sourceText(100_000).reverse();
    const mismatch = await expectCode(write(chunked(name(), zstdCli(other))), status.INVALID_ARGUMENT);
    assert.match(mismatch.details, /does not match its digest/);
    const whole = zstdCli(data);
    const truncated = await expectCode(write([{ resource_name: name(), data: whole.subarray(0, whole.length - 10), finish_write: true }]), status.INVALID_ARGUMENT);
    assert.match(truncated.details, /ends in the middle of a zstd frame/);
    const unknown = await expectCode(write([{ resource_name: `uploads/${randomUUID()}/compressed-blobs/brotli/${d.hash}/${d.sizeBytes}`, data, finish_write: true }]), status.INVALID_ARGUMENT);
    assert.match(unknown.details, /compressor "brotli" is not supported/);
    await expectCode(read(`compressed-blobs/brotli/${d.hash}/${d.sizeBytes}`), status.INVALID_ARGUMENT);
    assert.ok(await isMissing(d), 'nothing was stored');
  });

  test('batches: ZSTD updates are decompressed and verified; reads come back compressed when the client accepts zstd', async (t) => {
    if (!requireTools(t, 'zstd')) return;
    const a = sourceText(30_000);
    const b = sourceText(90_000).reverse();
    const [da, db] = [digestOf(a), digestOf(b)];
    const bomb = zstdCli(Buffer.alloc(64 * 1024 * 1024), '-19');
    const bad = digestOf('some bytes');
    const res = await call(h.clients.cas, h.clients.cas.batchUpdateBlobs, {
      requests: [
        { digest: msg(da), data: zstdCli(a), compressor: 'ZSTD' },
        { digest: msg(db), data: b, compressor: 'IDENTITY' },
        { digest: msg(bad), data: bomb, compressor: 'ZSTD' },
        { digest: msg(bad), data: Buffer.from('some bytes'), compressor: 'DEFLATE' },
        { digest: msg(bad), data: Buffer.from('not zstd at all'), compressor: 'ZSTD' },
      ],
    });
    assert.deepEqual(
      res.responses.map((r) => r.status?.code),
      [status.OK, status.OK, status.INVALID_ARGUMENT, status.INVALID_ARGUMENT, status.INVALID_ARGUMENT],
    );
    assert.match(res.responses[2]?.status?.message ?? '', /decompresses to more than/);
    assert.match(res.responses[3]?.status?.message ?? '', /compressor DEFLATE is not supported/);
    assert.ok(await isMissing(bad));

    const zstdRead = await call(h.clients.cas, h.clients.cas.batchReadBlobs, { digests: [msg(da), msg(db)], acceptable_compressors: ['ZSTD'] });
    assert.deepEqual(zstdRead.responses.map((r) => r.compressor), ['ZSTD', 'ZSTD']);
    assert.deepEqual(execFileSync('zstd', ['-q', '-d', '-c'], { input: zstdRead.responses[0]?.data }), a);
    assert.deepEqual(execFileSync('zstd', ['-q', '-d', '-c'], { input: zstdRead.responses[1]?.data }), b);
    const plainRead = await call(h.clients.cas, h.clients.cas.batchReadBlobs, { digests: [msg(da)] });
    assert.equal(plainRead.responses[0]?.compressor, 'IDENTITY');
    assert.deepEqual(plainRead.responses[0]?.data, a);
  });
});
