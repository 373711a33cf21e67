/**
 * RemoteBlobStore, a worker's filesystem cache in front of a real remex server's CAS over HTTP (the real
 * RemexClient, as `remex worker` has them): the port's conformance suite, each test on a fresh server
 * and cache, then what only a remote store does — blobs the server holds and the cache does not.
 *
 * Not run: the suite's corrupted-blob tests (`tamperable`). They reach past a store to the bytes it keeps
 * and expect that store to find the damage; this store keeps none of its own. Its bytes sit in the cache
 * and on the server, each an FsBlobStore whose own suite runs those tests (fs-blob-store.test.ts): a
 * damaged cached copy is found and removed by the cache, and the next read fetches the server's again.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { FsBlobStore } from '../../../src/cas/fs/fs-blob-store.js';
import { MemoryBlobStore } from '../../../src/cas/memory/memory-blob-store.js';
import { RemoteBlobStore } from '../../../src/cas/remote/remote-blob-store.js';
import type { Digest } from '../../../src/core/digest.js';
import { digestOf } from '../../../src/core/digest.js';
import { InternalError, NotFoundError } from '../../../src/core/errors.js';
import { startTestServer } from '../../helpers/server.js';
import type { TestServer } from '../../helpers/server.js';
import type { BlobStoreHandle } from '../blob-store-conformance.js';
import { blobStoreConformance, collect, LARGE, MAX_BLOB_BYTES } from '../blob-store-conformance.js';

/** A server with no local workers and its own empty CAS, and a remote store in front of it with an empty cache. */
async function remoteHandle(maxBlobBytes: number): Promise<BlobStoreHandle & { ts: TestServer; cache: FsBlobStore; cacheRoot: string }> {
  const ts = await startTestServer({ workerSlots: 0, maxBlobBytes });
  const cacheRoot = await mkdtemp(join(tmpdir(), 'remex-remote-cache-'));
  const cache = new FsBlobStore({ root: cacheRoot, maxBlobBytes, fsync: false });
  const store = new RemoteBlobStore(ts.client, cache);
  return {
    store,
    ts,
    cache,
    cacheRoot,
    cleanup: async () => {
      await store.close();
      ts.client.close();
      await ts.close();
      await rm(cacheRoot, { recursive: true, force: true });
    },
  };
}

blobStoreConformance('remote (a filesystem cache in front of a remex server)', ({ maxBlobBytes }) => remoteHandle(maxBlobBytes));

describe('RemoteBlobStore', () => {
  let h: Awaited<ReturnType<typeof remoteHandle>>;
  let scratch: string;

  beforeEach(async () => {
    h = await remoteHandle(MAX_BLOB_BYTES);
    scratch = await mkdtemp(join(tmpdir(), 'remex-remote-scratch-'));
  });

  afterEach(async () => {
    await h.cleanup();
    await rm(scratch, { recursive: true, force: true });
  });

  test('a blob only the server holds: present, sized, read and materialized, and cached by the first read', async () => {
    const d = digestOf(LARGE);
    await h.ts.client.putBlob(d, LARGE);
    assert.equal(await h.cache.sizeOf(d.hash), undefined);
    assert.equal(await h.store.has(d), true);
    assert.deepEqual(await h.store.findMissing([d]), []);
    // The port promises the size of any blob present; before the fix, the remote store asked only its cache.
    assert.equal(await h.store.sizeOf(d.hash), LARGE.length);
    assert.deepEqual(await collect(await h.store.getStream(d, { offset: 10, limit: 5 })), LARGE.subarray(10, 15));
    assert.equal(await h.cache.has(d), true);
    const dest = join(scratch, 'out');
    await h.store.materialize(d, dest, 0o644);
    assert.deepEqual(await readFile(dest), LARGE);
  });

  test('a blob on neither side: absent from sizeOf, has and findMissing, NotFoundError from reads', async () => {
    const d = digestOf('nowhere');
    assert.equal(await h.store.sizeOf(d.hash), undefined);
    assert.equal(await h.store.has(d), false);
    assert.deepEqual(await h.store.findMissing([d]), [d]);
    await assert.rejects(h.store.get(d), (err) => err instanceof NotFoundError && err.message.includes(d.hash));
  });

  test('writes reach the server before they return: put, putStream and putFile', async () => {
    const a = Buffer.from('put bytes');
    const b = Buffer.from('streamed bytes');
    const da = digestOf(a);
    const db = digestOf(b);
    await h.store.put(da, a);
    await h.store.putStream(db, Readable.from([b]));
    const path = join(scratch, 'file');
    await writeFile(path, LARGE);
    const dc = await h.store.putFile(path);
    assert.deepEqual(await h.ts.client.findMissing([da, db, dc]), []);
    assert.deepEqual(await h.ts.client.getBlob(dc), LARGE);
  });

  test('bytes the server sends for a blob that do not match it are INTERNAL, not the caller\'s mismatch, and are not cached', async () => {
    const good = Buffer.from('the real bytes');
    const d = digestOf(good);
    const lying = {
      findMissing: async () => [],
      putBlob: async () => undefined,
      blobSize: async () => good.length,
      blobStream: async () => Readable.from([Buffer.from('other bytes!!!')]),
    };
    const cache = new MemoryBlobStore();
    const store = new RemoteBlobStore(lying, cache);
    await assert.rejects(store.get(d), InternalError);
    assert.equal(await cache.has(d), false);
  });

  test('an upload can be sent again: each body the client asks for is the whole blob', async () => {
    const d = digestOf(LARGE);
    const sent: Buffer[] = [];
    const resending = {
      findMissing: async (digests: readonly Digest[]) => [...digests],
      // As the client does when a connection breaks mid-request or a controller dies: the body again.
      putBlob: async (_: Digest, data: Uint8Array | (() => Readable)) => {
        assert.equal(typeof data, 'function');
        const body = data as () => Readable;
        const first = body();
        for await (const chunk of first) {
          sent.push(Buffer.from(chunk as Buffer));
          break;
        }
        first.destroy();
        sent.push(await collect(body()));
      },
      blobSize: async () => undefined,
      blobStream: async () => Readable.from([]),
    };
    await new RemoteBlobStore(resending, new MemoryBlobStore()).putStream(d, Readable.from([LARGE]));
    assert.deepEqual(sent.at(-1), LARGE);
  });

  test('close closes the cache it was given', async () => {
    let closed = 0;
    const cache = new MemoryBlobStore();
    cache.close = async () => {
      closed++;
    };
    await new RemoteBlobStore(h.ts.client, cache).close();
    assert.equal(closed, 1);
  });
});
