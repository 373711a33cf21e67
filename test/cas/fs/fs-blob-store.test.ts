import Database from 'better-sqlite3';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { FsBlobStore } from '../../../src/cas/fs/fs-blob-store.js';
import type { FsBlobStoreOptions } from '../../../src/cas/fs/fs-blob-store.js';
import { PACK_FILE, PACKED_MAX_BYTES } from '../../../src/cas/fs/small-blob-pack.js';
import { digestOf } from '../../../src/core/digest.js';
import type { Digest } from '../../../src/core/digest.js';
import { DigestMismatchError, InvalidArgumentError, NotFoundError } from '../../../src/core/errors.js';
import type { BlobStoreHandle } from '../blob-store-conformance.js';
import { blobStoreConformance, chunked, collect, failingAfter, flipped, isCode, LARGE, MAX_BLOB_BYTES, pausedAfter } from '../blob-store-conformance.js';

/** The rows of a store's small-blob database, read from outside the store (its own connection). */
function packedRows(root: string): Map<string, Buffer> {
  const path = join(root, PACK_FILE);
  if (!existsSync(path)) return new Map();
  const db = new Database(path, { readonly: true });
  try {
    const rows = db.prepare('SELECT hash, data FROM blobs').all() as { hash: string; data: Buffer }[];
    return new Map(rows.map((r) => [r.hash, r.data]));
  } finally {
    db.close();
  }
}

/** Replaces a packed blob's bytes from outside the store, as a stray writer of the database would. */
function overwritePacked(root: string, hash: string, bytes: Buffer): boolean {
  const db = new Database(join(root, PACK_FILE));
  try {
    return db.prepare('UPDATE blobs SET data = ? WHERE hash = ?').run(bytes, hash).changes === 1;
  } finally {
    db.close();
  }
}

/** Rewrites a stored blob's bytes in place, in the pack or its file, as disk corruption or a stray writer would. */
async function corruptIn(store: FsBlobStore, root: string, hash: string, bytes: Buffer): Promise<void> {
  if (existsSync(join(root, PACK_FILE)) && overwritePacked(root, hash, bytes)) return;
  const path = store.pathOf(hash);
  await chmod(path, 0o644);
  await writeFile(path, bytes);
}

/** An fs store in a fresh directory, with the conformance suite's hook into its files and rows. */
async function fsHandle(opts: Omit<FsBlobStoreOptions, 'root'>): Promise<BlobStoreHandle> {
  const root = await mkdtemp(join(tmpdir(), 'remex-fs-cas-'));
  const store = new FsBlobStore({ root, ...opts });
  return {
    store,
    cleanup: async () => {
      await store.close();
      await rm(root, { recursive: true, force: true });
    },
    tamper: {
      overwrite: (hash, bytes) => corruptIn(store, root, hash, bytes),
      kept: async () => {
        const blobDir = join(root, 'sha256');
        const entries = await readdir(blobDir, { recursive: true, withFileTypes: true }).catch(() => []);
        const files = entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
        return [...files, ...[...packedRows(root).keys()].map((hash) => `${PACK_FILE}:${hash}`)];
      },
    },
  };
}

blobStoreConformance('fs', ({ maxBlobBytes }) => fsHandle({ maxBlobBytes }), { tamperable: true });
blobStoreConformance('fs without fsync', ({ maxBlobBytes }) => fsHandle({ maxBlobBytes, fsync: false, verifiedMemoEntries: 0 }), { tamperable: true });
blobStoreConformance('fs with a cap', ({ maxBlobBytes }) => fsHandle({ maxBlobBytes, maxBytes: 1024 ** 4 }), { tamperable: true });

describe('FsBlobStore', () => {
  let root: string;
  let store: FsBlobStore;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'remex-fs-cas-'));
    store = new FsBlobStore({ root, maxBlobBytes: MAX_BLOB_BYTES });
  });

  afterEach(async () => {
    await store.close();
    await rm(root, { recursive: true, force: true });
  });

  async function tempFiles(): Promise<string[]> {
    return readdir(join(root, 'tmp')).catch(() => []);
  }

  /** Rewrites a stored blob's bytes in place, as disk corruption or a stray writer would. */
  async function corrupt(hash: string, bytes: Buffer): Promise<void> {
    await corruptIn(store, root, hash, bytes);
  }

  test('lays blobs over 64 KiB out as <root>/sha256/<2 hex>/<hash>, read-only', async () => {
    const d = digestOf(LARGE);
    await store.put(d, LARGE);
    const path = store.pathOf(d.hash);
    assert.equal(path, join(root, 'sha256', d.hash.slice(0, 2), d.hash));
    assert.equal((await stat(path)).mode & 0o777, 0o444);
    assert.throws(() => store.pathOf('../../etc/passwd'), InvalidArgumentError);
  });

  test('materialize may share the stored file: a hard link, read-only, verified once', async () => {
    const d = digestOf(LARGE);
    await store.put(d, LARGE);
    const stored = await stat(store.pathOf(d.hash));
    const a = join(root, 'a');
    const b = join(root, 'b');
    await store.materialize(d, a, 0o644, { shareStoredFile: true });
    await store.materialize(d, b, 0o644, { shareStoredFile: true });
    for (const path of [a, b]) {
      const st = await stat(path);
      assert.equal(st.ino, stored.ino, 'the stored file itself, not a copy');
      assert.equal(st.mode & 0o777, 0o444, 'read-only, as stored');
    }
    assert.equal((await stat(store.pathOf(d.hash))).nlink, 3);
    // Removing a shared use leaves the blob whole.
    await rm(a);
    assert.deepEqual(await store.get(d), LARGE);
    // Without the option, and for executables, a copy.
    const copy = join(root, 'copy');
    await store.materialize(d, copy, 0o644);
    assert.notEqual((await stat(copy)).ino, stored.ino);
    const exe = join(root, 'exe');
    await store.materialize(d, exe, 0o755, { shareStoredFile: true });
    assert.notEqual((await stat(exe)).ino, stored.ino);
  });

  test('the empty blob is never written to disk', async () => {
    await store.put(digestOf(''), new Uint8Array(0));
    await assert.rejects(stat(join(root, 'sha256')), { code: 'ENOENT' });
  });

  test('blobs of up to 64 KiB are rows of one database, not files, whichever way they come in and go out', async () => {
    const sized = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff));
    const cases = [
      { how: 'put', bytes: sized(1, 1) },
      { how: 'putStream', bytes: sized(PACKED_MAX_BYTES, 2) },
      { how: 'putFile', bytes: sized(300, 3) },
      { how: 'put', bytes: sized(PACKED_MAX_BYTES + 1, 4) },
      { how: 'putStream', bytes: sized(PACKED_MAX_BYTES + 1, 5) },
    ] as const;
    const digests: Digest[] = [];
    for (const [i, { how, bytes }] of cases.entries()) {
      const d = digestOf(bytes);
      if (how === 'put') await store.put(d, bytes);
      else if (how === 'putStream') await store.putStream(d, chunked(bytes, [1000]));
      else {
        const source = join(root, `source-${i}`);
        await writeFile(source, bytes);
        assert.deepEqual(await store.putFile(source), d);
      }
      digests.push(d);
    }
    const rows = packedRows(root);
    for (const [i, { how, bytes }] of cases.entries()) {
      const d = digests[i]!;
      const packed = bytes.length <= PACKED_MAX_BYTES;
      const what = `${bytes.length} bytes by ${how}`;
      assert.equal(rows.has(d.hash), packed, `${what}: in the database`);
      assert.equal(existsSync(store.pathOf(d.hash)), !packed, `${what}: a file`);
      // Read back through a second instance, as after a restart.
      const again = new FsBlobStore({ root, maxBlobBytes: MAX_BLOB_BYTES });
      try {
        assert.deepEqual(await again.findMissing([d]), [], what);
        assert.equal(await again.sizeOf(d.hash), bytes.length, what);
        assert.deepEqual(await again.get(d), bytes, what);
        assert.deepEqual(await collect(await again.getStream(d)), bytes, what);
        assert.deepEqual(await collect(await again.getStream(d, { offset: 1, limit: 3 })), bytes.subarray(1, 4), what);
        const dest = join(root, `out-${i}`);
        await again.materialize(d, dest, 0o640, { shareStoredFile: true });
        assert.deepEqual(await readFile(dest), bytes, what);
        assert.equal((await stat(dest)).mode & 0o777, packed ? 0o640 : 0o444, `${what}: a new file, or the stored one shared`);
      } finally {
        await again.close();
      }
    }
  });

  test('a small blob kept as a file (by a version before the database) is still found and served', async () => {
    // The layout an earlier remex left: small blobs as files, no database yet.
    const legacyRoot = join(root, 'legacy');
    const bytes = Buffer.from('stored as a file by an earlier remex');
    const d = digestOf(bytes);
    await mkdir(join(legacyRoot, 'sha256', d.hash.slice(0, 2)), { recursive: true });
    await writeFile(join(legacyRoot, 'sha256', d.hash.slice(0, 2), d.hash), bytes, { mode: 0o444 });
    const upgraded = new FsBlobStore({ root: legacyRoot, maxBlobBytes: MAX_BLOB_BYTES });
    try {
      const absent = digestOf('never stored');
      assert.equal(await upgraded.has(d), true);
      assert.deepEqual(await upgraded.findMissing([d, absent]), [absent]);
      assert.equal(await upgraded.sizeOf(d.hash), bytes.length);
      assert.deepEqual(await upgraded.get(d), bytes);
      assert.deepEqual(await collect(await upgraded.getStream(d, { offset: 6, limit: 2 })), bytes.subarray(6, 8));
      const dest = join(root, 'legacy-out');
      await upgraded.materialize(d, dest, 0o755);
      assert.deepEqual(await readFile(dest), bytes);
      // Storing it again changes nothing: it is present.
      await upgraded.put(d, bytes);
      assert.equal(packedRows(legacyRoot).has(d.hash), false);
    } finally {
      await upgraded.close();
    }
    // Reopened later, the database remembers that this root may hold such files.
    const reopened = new FsBlobStore({ root: legacyRoot, maxBlobBytes: MAX_BLOB_BYTES });
    try {
      assert.deepEqual(await reopened.findMissing([d]), []);
    } finally {
      await reopened.close();
    }
  });

  test('a packed row whose bytes were changed is removed when read, and an upload heals it', async () => {
    const bytes = Buffer.from('packed, then tampered with');
    const d = digestOf(bytes);
    await store.put(d, bytes);
    assert.ok(overwritePacked(root, d.hash, Buffer.from('packed, then tampered with!')));
    // The wrong length alone makes it absent, and an upload replaces it.
    assert.deepEqual(await store.findMissing([d]), [d]);
    await store.putStream(d, chunked(bytes, [5]));
    assert.deepEqual(await store.findMissing([d]), []);
    assert.deepEqual(await store.get(d), bytes);
    // Bytes of the right length but wrong: found by the read, which removes them.
    assert.ok(overwritePacked(root, d.hash, Buffer.from('PACKED, then tampered with')));
    await assert.rejects(store.get(d), (err) => err instanceof NotFoundError && err.details?.corrupt === true);
    assert.equal(packedRows(root).has(d.hash), false);
    await store.put(d, bytes);
    assert.deepEqual(await store.get(d), bytes);
  });

  test('a packed row deleted by another connection is missing at the next check, though found before', async () => {
    const kept = Buffer.from('stays');
    const gone = Buffer.from('deleted behind the store');
    const [k, g] = [digestOf(kept), digestOf(gone)];
    await store.put(k, kept);
    await store.put(g, gone);
    // Checked once and again: the second answer may come from what the pack remembers.
    for (let i = 0; i < 2; i++) {
      assert.deepEqual(await store.findMissing([k, g]), []);
      assert.equal(await store.has(g), true);
    }
    const db = new Database(join(root, PACK_FILE));
    try {
      assert.equal(db.prepare('DELETE FROM blobs WHERE hash = ?').run(g.hash).changes, 1);
    } finally {
      db.close();
    }
    assert.deepEqual(await store.findMissing([k, g]), [g]);
    assert.equal(await store.has(g), false);
    assert.equal(await store.sizeOf(g.hash), undefined);
    assert.equal(await store.has(k), true);
    // Stored again, it is found again.
    await store.put(g, gone);
    assert.deepEqual(await store.findMissing([k, g]), []);
  });

  test('a second store over the same root sees the blobs', async () => {
    const d = digestOf(LARGE);
    await store.put(d, LARGE);
    const again = new FsBlobStore({ root, maxBlobBytes: MAX_BLOB_BYTES });
    assert.deepEqual(await again.findMissing([d]), []);
    assert.deepEqual(await collect(await again.getStream(d, { offset: 10, limit: 10 })), LARGE.subarray(10, 20));
  });

  test('no temporary files are left behind after failures or successes', async () => {
    const d = digestOf(LARGE);
    await assert.rejects(store.putStream(d, failingAfter(LARGE.subarray(0, 70_000), new Error('boom'))));
    await assert.rejects(store.putStream(d, chunked(LARGE.subarray(1))), DigestMismatchError);
    await assert.rejects(store.putStream(d, chunked(Buffer.concat([LARGE, LARGE]))), DigestMismatchError);
    await assert.rejects(store.put(d, LARGE.subarray(2)), DigestMismatchError);
    const bigFile = join(root, 'big-input');
    await writeFile(bigFile, Buffer.alloc(MAX_BLOB_BYTES + 1));
    await assert.rejects(store.putFile(bigFile));
    assert.deepEqual(await tempFiles(), []);
    await store.putStream(d, chunked(LARGE));
    const inputFile = join(root, 'input');
    await writeFile(inputFile, 'from a file');
    await store.putFile(inputFile);
    await store.putFile(inputFile);
    assert.deepEqual(await tempFiles(), []);
  });

  test('a blob is not at its path until its stream has been verified (the conformance suite checks the calls)', async () => {
    const d = digestOf(LARGE);
    const upload = pausedAfter(LARGE, 300_000);
    const put = store.putStream(d, upload.source);
    await upload.reachedPause;
    await assert.rejects(stat(store.pathOf(d.hash)), { code: 'ENOENT' });
    assert.equal((await tempFiles()).length, 1, 'the bytes so far are in a temporary file');
    upload.release();
    await put;
    assert.equal((await stat(store.pathOf(d.hash))).size, LARGE.length);
    assert.deepEqual(await tempFiles(), []);
  });

  describe('blobs of several read chunks (streamed 1 MiB at a time, one read ahead)', () => {
    // 2.5 MiB and a few bytes: two whole chunks and a short last one, none aligned to 256 KiB pieces.
    const BIG = Buffer.alloc(2.5 * 1024 * 1024 + 7);
    for (let i = 0; i < BIG.length; i += 4) BIG.writeUInt32LE((i * 2654435761) >>> 0, Math.min(i, BIG.length - 4));
    const MiB = 1024 * 1024;

    test('whole streams, ranges across chunk boundaries, materialize, and a fresh instance verifying by rehash', async () => {
      const d = digestOf(BIG);
      await store.putStream(d, chunked(BIG, [300_001, 1_048_577]));
      assert.deepEqual(await collect(await store.getStream(d)), BIG);
      // A second instance has verified nothing: its ranged reads hash the whole file first.
      const fresh = new FsBlobStore({ root, maxBlobBytes: MAX_BLOB_BYTES });
      for (const [offset, limit] of [[MiB - 1, 2], [MiB, MiB], [3, 2 * MiB + 5], [2 * MiB + 1, 1_000_000]] as const) {
        assert.deepEqual(await collect(await fresh.getStream(d, { offset, limit })), BIG.subarray(offset, Math.min(BIG.length, offset + limit)), `${offset}+${limit}`);
      }
      const dest = join(root, 'materialized');
      await fresh.materialize(d, dest, 0o644);
      assert.equal((await stat(dest)).size, BIG.length);
    });

    test('corruption in the first chunk still fails the stream at its end, and in a ranged read up front', async () => {
      const d = digestOf(BIG);
      await store.put(d, BIG);
      await corrupt(d.hash, flipped(BIG, 10));
      await assert.rejects(collect(await store.getStream(d)), isCode('INTERNAL'));
      assert.equal(await store.has(d), false);

      await store.put(d, BIG);
      await corrupt(d.hash, flipped(BIG, 2 * MiB + 3));
      const fresh = new FsBlobStore({ root, maxBlobBytes: MAX_BLOB_BYTES });
      await assert.rejects(fresh.getStream(d, { offset: 0, limit: 10 }), NotFoundError);
    });

    test('a whole read trusts a file this instance verified while it is unchanged; a restarted store hashes it again', async () => {
      const d = digestOf(BIG);
      await store.putStream(d, chunked(BIG, [MiB]));
      const path = store.pathOf(d.hash);
      // An mtime that can be put back exactly (whole seconds): the file changed, so the next read hashes it.
      const mtime = 1_700_000_000;
      await utimes(path, mtime, mtime);
      assert.deepEqual(await collect(await store.getStream(d)), BIG);
      // Bytes changed behind the store's back with that mtime put back (as only the file's owner could):
      // this instance has verified the file as it is, and serves it without hashing it again…
      await chmod(path, 0o644);
      await writeFile(path, flipped(BIG, 5));
      await chmod(path, 0o444);
      await utimes(path, mtime, mtime);
      assert.deepEqual((await collect(await store.getStream(d))).subarray(0, 8), flipped(BIG, 5).subarray(0, 8));
      // …while a store opened afresh (after a crash, say) has verified nothing and refuses it.
      const fresh = new FsBlobStore({ root, maxBlobBytes: MAX_BLOB_BYTES });
      await assert.rejects(collect(await fresh.getStream(d)), isCode('INTERNAL'));
      assert.equal(await fresh.has(d), false);
    });

    test('a reader that stops after the first chunk leaves no file open and no read failing unobserved', async () => {
      const d = digestOf(BIG);
      await store.put(d, BIG);
      const openFds = async () => (await readdir('/proc/self/fd')).length;
      const before = await openFds();
      for (let i = 0; i < 5; i++) {
        const stream = await store.getStream(d);
        for await (const chunk of stream) {
          assert.equal(chunk.length, MiB);
          break;
        }
      }
      // Closing waits for the read that was running ahead; give it a moment.
      for (let i = 0; i < 50 && (await openFds()) > before; i++) await new Promise((r) => setTimeout(r, 10));
      // At most as many: a store an earlier test left unclosed may be collected meanwhile, closing its database.
      assert.ok((await openFds()) <= before, `${await openFds()} descriptors open, ${before} before`);
    });

    test('an upload of several chunks whose bytes are wrong leaves nothing visible', async () => {
      const d = digestOf(BIG);
      await assert.rejects(store.putStream(d, chunked(flipped(BIG, BIG.length - 1), [MiB])), DigestMismatchError);
      await assert.rejects(store.putStream(d, chunked(Buffer.concat([BIG, Buffer.from('x')]), [MiB])), DigestMismatchError);
      assert.equal(await store.has(d), false);
      assert.deepEqual(await tempFiles(), []);
    });
  });

  test('putFile and a first materialize hash files of every size around the read-buffer boundaries', async () => {
    // Hash buffers are sized from the expected size (4 KiB at least, 1 MiB at most): the edges of both, and
    // of the packed size (a file of up to 64 KiB is read whole into the database).
    const MiB = 1024 * 1024;
    for (const size of [1, 4094, 4095, 4096, 4097, PACKED_MAX_BYTES, PACKED_MAX_BYTES + 1, 70_000, MiB - 1, MiB, MiB + 1, 2 * MiB + 7]) {
      const bytes = Buffer.alloc(size);
      for (let i = 0; i < size; i++) bytes[i] = (i * 31 + size) & 0xff;
      const source = join(root, `source-${size}`);
      await writeFile(source, bytes);
      const d = await store.putFile(source);
      assert.deepEqual(d, digestOf(bytes), `putFile of ${size} bytes`);
      // A fresh instance has verified nothing: materialize hashes the copy it made.
      const fresh = new FsBlobStore({ root, maxBlobBytes: MAX_BLOB_BYTES });
      const dest = join(root, `materialized-${size}`);
      await fresh.materialize(d, dest, 0o644);
      assert.equal((await stat(dest)).size, size);
    }
  });

  test('refuses a bad maxBlobBytes', () => {
    assert.throws(() => new FsBlobStore({ root, maxBlobBytes: Number.NaN }), InvalidArgumentError);
  });
});
