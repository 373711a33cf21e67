/**
 * The filesystem CAS under a cap (`--cas-max-bytes`): least recently used blobs go first, never one used or
 * reported present within the grace period, nor one a pin source names; the cap holds across a restart;
 * a blob larger than the cap is refused. And a real full filesystem (a tmpfs of a few MiB): the write
 * fails with InsufficientStorageError, nothing partial is visible, eviction runs first, reads go on.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, beforeEach, describe, test } from 'node:test';
import { FsBlobStore } from '../../../src/cas/fs/fs-blob-store.js';
import type { Digest } from '../../../src/core/digest.js';
import { digestOf } from '../../../src/core/digest.js';
import { InsufficientStorageError, isRemexError } from '../../../src/core/errors.js';
import { randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { call, msg, startGrpcHarness } from '../../api/grpc/harness.js';
import { IN_CI } from '../../helpers/tools.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** `n` bytes that differ per `seed` (distinct blobs). */
function blob(seed: number, n: number): Buffer {
  const b = Buffer.alloc(n, seed % 251);
  b.writeUInt32BE(seed, 0);
  return b;
}

describe('FsBlobStore eviction', () => {
  let root: string;
  let store: FsBlobStore;
  let now: number;

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'remex-evict-'));
    now = 1_000_000;
  });
  afterEach(async () => {
    await store?.close();
    rmSync(root, { recursive: true, force: true });
  });

  function open(maxBytes: number, pinned: Set<string> = new Set()): FsBlobStore {
    return new FsBlobStore({ root, maxBlobBytes: 64 * MiB, fsync: false, maxBytes, evictionGraceMs: 60_000, now: () => now, pins: { pinnedHashes: async () => pinned } });
  }

  test('writing 10x the cap keeps the store within it, least recently used first', async () => {
    store = open(2 * MiB);
    const kept: Digest[] = [];
    for (let i = 0; i < 20; i++) {
      const data = blob(i, 200 * KiB + i);
      const d = digestOf(data);
      await store.put(d, data);
      kept.push(d);
      now += 120_000; // each older than the grace by the time the next comes
      // The first blob is read after every put: the most recently used, it is never the one to go.
      await store.get(kept[0] as Digest);
      assert.ok(((await store.usedBytes()) ?? 0) <= 2 * MiB, `over the cap after put ${i}`);
    }
    assert.ok(await store.has(kept[0] as Digest), 'a blob read after every write stays');
    assert.ok(!(await store.has(kept[1] as Digest)), 'the least recently used went');
    assert.ok(await store.has(kept[19] as Digest));
  });

  test('a blob reported present within the grace period, or pinned, is never evicted; both may hold the store over its cap', async () => {
    const pinned = new Set<string>();
    store = open(1 * MiB, pinned);
    const a = blob(1, 400 * KiB);
    const b = blob(2, 400 * KiB);
    const [da, db] = [digestOf(a), digestOf(b)];
    await store.put(da, a);
    await store.put(db, b);
    pinned.add(da.hash);
    now += 120_000;
    // FindMissingBlobs says b is present: the client will use it next.
    assert.deepEqual(await store.findMissing([db]), []);
    const c = blob(3, 400 * KiB);
    await store.put(digestOf(c), c);
    assert.ok(await store.has(da), 'pinned by a job');
    assert.ok(await store.has(db), 'reported present 0 s ago');
    assert.deepEqual(await store.get(db), b);
    assert.equal(await store.usedBytes(), 1200 * KiB);
    // Once the grace has passed and the pin is gone, the next write evicts them.
    now += 120_000;
    pinned.clear();
    const e = blob(4, 400 * KiB);
    await store.put(digestOf(e), e);
    assert.ok(((await store.usedBytes()) ?? 0) <= 1 * MiB, 'back under the cap');
    assert.ok(await store.has(digestOf(e)));
  });

  test('small packed blobs count and are evicted too; a reopened store learns what it holds', async () => {
    store = open(256 * KiB);
    const small: Digest[] = [];
    for (let i = 0; i < 10; i++) {
      const data = blob(100 + i, 30 * KiB);
      small.push(digestOf(data));
      await store.put(digestOf(data), data);
      now += 120_000;
    }
    assert.ok(((await store.usedBytes()) ?? 0) <= 256 * KiB);
    const held = (await store.findMissing(small)).length;
    assert.ok(held > 0 && held < 10);
    await store.close();
    store = open(256 * KiB);
    assert.equal(await store.usedBytes(), (10 - held) * 30 * KiB);
  });

  test('--cas-max-bytes smaller than one blob: that blob is refused as too large, and maxBlobBytes says so', async () => {
    store = open(100 * KiB);
    assert.equal(store.maxBlobBytes, 100 * KiB);
    const big = blob(9, 200 * KiB);
    await assert.rejects(store.put(digestOf(big), big), (err) => isRemexError(err, 'RESOURCE_EXHAUSTED') && /limit/.test(err.message));
    assert.ok(!(await store.has(digestOf(big))));
    assert.throws(() => new FsBlobStore({ root, maxBlobBytes: MiB, maxBytes: 0 }), /positive number of bytes/);
  });
});

describe('a full filesystem', () => {
  let mnt: string | undefined;
  const stores: FsBlobStore[] = [];

  after(async () => {
    for (const s of stores) await s.close();
    if (mnt) {
      execFileSync('umount', [mnt]);
      rmSync(mnt, { recursive: true, force: true });
    }
  });

  /** A 4 MiB tmpfs: a real filesystem that fills. Needs root (mount). */
  function smallFilesystem(t: { skip(reason: string): void }): string | undefined {
    if (process.getuid?.() !== 0) {
      if (IN_CI) throw new Error('the full-disk test mounts a tmpfs: run as root');
      t.skip('not root: cannot mount a tmpfs');
      return undefined;
    }
    mnt ??= mkdtempSync(join(tmpdir(), 'remex-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt]);
    return mnt;
  }

  test('ENOSPC: the upload fails with InsufficientStorageError, nothing partial is visible, reads go on; with a cap, eviction makes room first', async (t) => {
    const dir = smallFilesystem(t);
    if (!dir) return;
    // No cap: nothing to evict.
    const plain = new FsBlobStore({ root: join(dir, 'plain'), maxBlobBytes: 64 * MiB, fsync: false });
    stores.push(plain);
    const first = blob(1, 1536 * KiB);
    await plain.put(digestOf(first), first);
    const second = blob(2, 1536 * KiB);
    await plain.put(digestOf(second), second);
    const third = blob(3, 1536 * KiB);
    await assert.rejects(plain.put(digestOf(third), third), (err) => err instanceof InsufficientStorageError && err.code === 'RESOURCE_EXHAUSTED');
    await assert.rejects(plain.putStream(digestOf(third), (async function* () {
      yield third.subarray(0, MiB);
      yield third.subarray(MiB);
    })()), InsufficientStorageError);
    assert.ok(!(await plain.has(digestOf(third))), 'nothing of the failed blob is visible');
    assert.deepEqual(readdirSync(join(dir, 'plain', 'tmp')), [], 'no temporary file left behind');
    assert.deepEqual(await plain.get(digestOf(first)), first, 'reads go on');
    // Small blobs: the pack's database refuses too (or the disk does), and the error is the same.
    let packedFull: unknown;
    for (let i = 0; i < 200 && !packedFull; i++) {
      const small = blob(1000 + i, 60 * KiB);
      await plain.put(digestOf(small), small).catch((err: unknown) => (packedFull = err));
    }
    assert.ok(packedFull instanceof InsufficientStorageError, `the pack's failure: ${String(packedFull)}`);
    assert.deepEqual(await plain.get(digestOf(second)), second, 'reads go on');
    await plain.close();
    stores.length = 0;
    rmSync(join(dir, 'plain'), { recursive: true, force: true });

    // A cap larger than the disk: the disk fills first, and eviction makes room for the write.
    let now = 0;
    const capped = new FsBlobStore({ root: join(dir, 'capped'), maxBlobBytes: 64 * MiB, fsync: false, maxBytes: 64 * MiB, evictionGraceMs: 1000, now: () => now });
    stores.push(capped);
    const written: Digest[] = [];
    for (let i = 0; i < 6; i++) {
      const data = blob(10 + i, 1024 * KiB);
      now += 5000;
      await capped.put(digestOf(data), data);
      written.push(digestOf(data));
    }
    assert.ok(await capped.has(written[5] as Digest), 'the last write went through after eviction');
    assert.ok(!(await capped.has(written[0] as Digest)), 'the oldest blob made room');
    await capped.close();
    stores.length = 0;
    rmSync(join(dir, 'capped'), { recursive: true, force: true });

    // Through a real server: HTTP 507, gRPC RESOURCE_EXHAUSTED, and the server serves reads after them.
    const h = await startGrpcHarness({}, { workerSlots: 0, blobsUrl: join(dir, 'server') });
    const ts = h.ts;
    try {
      const kept = blob(20, 2 * MiB);
      const keptUrl = `${ts.server.url}/v1/blobs/sha256/${digestOf(kept).hash}`;
      assert.equal((await fetch(keptUrl, { method: 'PUT', body: kept, headers: { 'content-type': 'application/octet-stream' } })).status, 201);
      const tooMuch = blob(21, 3 * MiB);
      const res = await fetch(`${ts.server.url}/v1/blobs/sha256/${digestOf(tooMuch).hash}`, { method: 'PUT', body: tooMuch, headers: { 'content-type': 'application/octet-stream' } });
      assert.equal(res.status, 507);
      assert.equal(((await res.json()) as { code: string }).code, 'RESOURCE_EXHAUSTED');
      assert.equal((await fetch(`${ts.server.url}/v1/blobs/sha256/${digestOf(tooMuch).hash}`, { method: 'HEAD' })).status, 404);
      assert.deepEqual(Buffer.from(await (await fetch(keptUrl)).arrayBuffer()), kept);
      const grpcTooMuch = blob(22, 3 * MiB);
      const gd = digestOf(grpcTooMuch);
      const failed = await call(h.clients.cas, h.clients.cas.batchUpdateBlobs, { requests: [{ digest: msg(gd), data: grpcTooMuch }] });
      assert.equal(failed.responses[0]?.status?.code, status.RESOURCE_EXHAUSTED);
      const written = new Promise<unknown>((resolve) => {
        const stream = h.clients.bytestream.write((err) => resolve(err));
        stream.write({ resource_name: `uploads/${randomUUID()}/blobs/${gd.hash}/${gd.sizeBytes}`, write_offset: 0, data: grpcTooMuch, finish_write: true });
        stream.end();
      });
      assert.equal(((await written) as { code?: number } | null)?.code, status.RESOURCE_EXHAUSTED);
      const missing = await call(h.clients.cas, h.clients.cas.findMissingBlobs, { blob_digests: [msg(gd)] });
      assert.equal(missing.missing_blob_digests.length, 1, 'nothing of it is visible');
      assert.deepEqual(Buffer.from(await (await fetch(keptUrl)).arrayBuffer()), kept);
    } finally {
      await h.close();
    }
  });
});
