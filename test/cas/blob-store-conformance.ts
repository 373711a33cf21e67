/**
 * The behavioural suite of the BlobStore port. Every adapter runs it unchanged:
 * `blobStoreConformance('fs', factory)` is all a new backend's test file needs.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, mkdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, test } from 'node:test';
import type { BlobStore } from '../../src/cas/blob-store.js';
import type { Digest } from '../../src/core/digest.js';
import { digestOf, EMPTY_DIGEST } from '../../src/core/digest.js';
import { DigestMismatchError, InvalidArgumentError, isRemexError, NotFoundError, TooLargeError } from '../../src/core/errors.js';

export interface BlobStoreHandle {
  store: BlobStore;
  /** Deletes whatever the store kept. */
  cleanup(): Promise<void>;
  /**
   * Reaches past the store to its storage, as disk corruption or a stray writer would; backends that keep
   * blobs where a test can reach them give it, and then run the corrupted-blob tests.
   */
  tamper?: {
    /** Replaces the bytes kept under a blob's name. */
    overwrite(hash: string, bytes: Buffer): Promise<void>;
    /** Everything the backend keeps now (files, objects), by name. */
    kept(): Promise<string[]>;
  };
}

/** Builds a fresh, empty store accepting blobs of at most `maxBlobBytes`. */
export type BlobStoreFactory = (opts: { maxBlobBytes: number }) => Promise<BlobStoreHandle>;

export const MAX_BLOB_BYTES = 4 * 1024 * 1024;

/** A blob bigger than the adapters' read chunk, so ranges and streams cross chunk boundaries. */
export const LARGE = randomBytes(700 * 1024 + 13);

export async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) {
    assert.ok(Buffer.isBuffer(chunk), 'streams yield Buffers');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Yields `data` in uneven chunks, optionally waiting between them. */
export async function* chunked(data: Uint8Array, sizes: number[] = [1, 7, 4096, 65_537]): AsyncGenerator<Uint8Array> {
  let at = 0;
  for (let i = 0; at < data.byteLength; i++) {
    const size = sizes[i % sizes.length] as number;
    yield data.subarray(at, at + size);
    at += size;
  }
}

/** A source that yields `good` bytes, then throws `error`. */
export async function* failingAfter(good: Uint8Array, error: Error): AsyncGenerator<Uint8Array> {
  yield good;
  await new Promise((r) => setImmediate(r));
  throw error;
}

/**
 * A source of `data` that stops after its first `at` bytes (two chunks, so that a store holding back its
 * last chunk has passed one on) until released: for looking at a store while an upload is under way.
 */
export function pausedAfter(data: Uint8Array, at: number): { source: AsyncGenerator<Uint8Array>; reachedPause: Promise<void>; release(): void } {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let paused!: () => void;
  const reachedPause = new Promise<void>((r) => (paused = r));
  async function* source(): AsyncGenerator<Uint8Array> {
    yield data.subarray(0, Math.floor(at / 2));
    yield data.subarray(Math.floor(at / 2), at);
    paused();
    await released;
    yield data.subarray(at);
  }
  return { source: source(), reachedPause, release };
}

/** A copy of `data` with the byte at `at` changed. */
export function flipped(data: Buffer, at: number): Buffer {
  const copy = Buffer.from(data);
  copy.writeUInt8(copy.readUInt8(at) ^ 0xff, at);
  return copy;
}

export function isCode(code: string): (err: unknown) => boolean {
  return (err) => isRemexError(err) && err.code === code;
}

export function blobStoreConformance(name: string, factory: BlobStoreFactory, opts: { tamperable?: boolean } = {}): void {
  describe(`BlobStore conformance: ${name}`, () => {
    let handle: BlobStoreHandle;
    let store: BlobStore;
    let scratch: string;

    beforeEach(async () => {
      handle = await factory({ maxBlobBytes: MAX_BLOB_BYTES });
      store = handle.store;
      scratch = await mkdtemp(join(tmpdir(), 'remex-cas-conf-'));
    });

    afterEach(async () => {
      await handle.cleanup();
      await rm(scratch, { recursive: true, force: true });
    });

    async function putBytes(data: Uint8Array): Promise<Digest> {
      const d = digestOf(data);
      await store.put(d, data);
      return d;
    }

    describe('round trips', () => {
      test('put, has, sizeOf, get', async () => {
        const data = Buffer.from('hello, blob');
        const d = digestOf(data);
        assert.equal(await store.has(d), false);
        assert.equal(await store.sizeOf(d.hash), undefined);
        await store.put(d, data);
        assert.equal(await store.has(d), true);
        assert.equal(await store.sizeOf(d.hash), data.length);
        assert.deepEqual(await store.get(d), data);
        assert.equal(store.maxBlobBytes, MAX_BLOB_BYTES);
      });

      test('putStream of uneven chunks, then getStream of the whole', async () => {
        const d = digestOf(LARGE);
        await store.putStream(d, chunked(LARGE));
        assert.deepEqual(await collect(await store.getStream(d)), LARGE);
        assert.deepEqual(await store.get(d), LARGE);
      });

      test('putStream accepts a Node Readable', async () => {
        const d = digestOf(LARGE);
        await store.putStream(d, Readable.from(chunked(LARGE), { objectMode: false }));
        assert.deepEqual(await store.get(d), LARGE);
      });

      test('put is idempotent, and by content: a blob put twice is one blob', async () => {
        const data = Buffer.from('twice');
        const d = await putBytes(data);
        await store.put(d, data);
        await store.putStream(d, chunked(data));
        assert.deepEqual(await store.get(d), data);
      });

      test('the store keeps its own copy: callers may reuse their buffers', async () => {
        const data = Buffer.from('mutable');
        const d = await putBytes(data);
        data.fill(0);
        const got = await store.get(d);
        assert.equal(got.toString(), 'mutable');
        got.fill(0);
        assert.equal((await store.get(d)).toString(), 'mutable');
      });

      test('putFile streams a host file in and returns its digest', async () => {
        const path = join(scratch, 'file.bin');
        await writeFile(path, LARGE);
        const d = await store.putFile(path);
        assert.deepEqual(d, digestOf(LARGE));
        assert.deepEqual(await store.get(d), LARGE);
      });

      test('putFile of an empty file is the empty digest', async () => {
        const path = join(scratch, 'empty');
        await writeFile(path, '');
        assert.deepEqual(await store.putFile(path), EMPTY_DIGEST);
      });

      test('putFile refuses a directory and a missing file', async () => {
        await assert.rejects(store.putFile(scratch), InvalidArgumentError);
        await assert.rejects(store.putFile(join(scratch, 'absent')), NotFoundError);
      });
    });

    describe('the empty blob', () => {
      test('is always present, without being stored', async () => {
        assert.equal(await store.has(EMPTY_DIGEST), true);
        assert.equal(await store.sizeOf(EMPTY_DIGEST.hash), 0);
        assert.deepEqual(await store.findMissing([EMPTY_DIGEST]), []);
        assert.equal((await store.get(EMPTY_DIGEST)).length, 0);
        assert.equal((await collect(await store.getStream(EMPTY_DIGEST))).length, 0);
      });

      test('materializes as an empty file with the mode asked for', async () => {
        const dest = join(scratch, 'empty');
        await store.materialize(EMPTY_DIGEST, dest, 0o755);
        const st = await stat(dest);
        assert.equal(st.size, 0);
        assert.equal(st.mode & 0o777, 0o755);
      });

      test('may be put, but only with no bytes', async () => {
        await store.put(EMPTY_DIGEST, new Uint8Array(0));
        await store.putStream(EMPTY_DIGEST, chunked(new Uint8Array(0)));
        await assert.rejects(store.put(EMPTY_DIGEST, Buffer.from('x')), DigestMismatchError);
        await assert.rejects(store.putStream(EMPTY_DIGEST, chunked(Buffer.from('x'))), DigestMismatchError);
      });
    });

    describe('findMissing', () => {
      test('keeps order, collapses duplicates, never reports the empty blob', async () => {
        const present = await putBytes(Buffer.from('present'));
        const a = digestOf('a');
        const b = digestOf('b');
        const missing = await store.findMissing([a, present, EMPTY_DIGEST, b, a, { ...b }, present]);
        assert.deepEqual(missing, [a, b]);
        assert.deepEqual(await store.findMissing([]), []);
      });

      test('a right hash with the wrong size is missing', async () => {
        const d = await putBytes(Buffer.from('sized'));
        const wrong = { hash: d.hash, sizeBytes: d.sizeBytes + 1 };
        assert.deepEqual(await store.findMissing([wrong]), [wrong]);
        assert.equal(await store.has(wrong), false);
        await assert.rejects(store.get(wrong), NotFoundError);
      });

      test('refuses malformed digests', async () => {
        await assert.rejects(store.findMissing([{ hash: '../../etc/passwd', sizeBytes: 1 }]), InvalidArgumentError);
        await assert.rejects(store.has({ hash: 'A'.repeat(64), sizeBytes: 1 }), InvalidArgumentError);
        await assert.rejects(store.get({ hash: EMPTY_DIGEST.hash, sizeBytes: -1 }), InvalidArgumentError);
        await assert.rejects(store.sizeOf('../x'), InvalidArgumentError);
      });
    });

    describe('verification', () => {
      test('put with the wrong hash stores nothing', async () => {
        const data = Buffer.from('real bytes');
        const claimed = digestOf('other bytes!');
        const err = await store.put({ hash: claimed.hash, sizeBytes: data.length }, data).then(
          () => undefined,
          (e: unknown) => e,
        );
        assert.ok(err instanceof DigestMismatchError);
        assert.equal(err.code, 'INVALID_ARGUMENT');
        assert.deepEqual(err.actual, digestOf(data));
        assert.equal(await store.has(digestOf(data)), false);
        assert.equal(await store.sizeOf(claimed.hash), undefined);
      });

      test('put with the wrong size stores nothing', async () => {
        const data = Buffer.from('sized bytes');
        const d = digestOf(data);
        for (const sizeBytes of [d.sizeBytes - 1, d.sizeBytes + 1, 0]) {
          await assert.rejects(store.put({ hash: d.hash, sizeBytes }, data), DigestMismatchError);
        }
        assert.equal(await store.sizeOf(d.hash), undefined);
      });

      test('putStream with the wrong hash, or too few or too many bytes, leaves nothing visible', async () => {
        const d = digestOf(LARGE);
        const corrupted = flipped(LARGE, LARGE.length - 1);
        await assert.rejects(store.putStream(d, chunked(corrupted)), DigestMismatchError);
        await assert.rejects(store.putStream(d, chunked(LARGE.subarray(0, LARGE.length - 1))), DigestMismatchError);
        await assert.rejects(store.putStream(d, chunked(Buffer.concat([LARGE, Buffer.from('x')]))), DigestMismatchError);
        assert.equal(await store.has(d), false);
        assert.equal(await store.sizeOf(d.hash), undefined);
      });

      test('a blob being streamed in is absent to every call until its stream has been verified', async () => {
        const d = digestOf(LARGE);
        const upload = pausedAfter(LARGE, 400_000);
        const put = store.putStream(d, upload.source);
        await upload.reachedPause;
        assert.equal(await store.has(d), false);
        assert.equal(await store.sizeOf(d.hash), undefined);
        assert.deepEqual(await store.findMissing([d]), [d]);
        await assert.rejects(store.get(d), NotFoundError);
        await assert.rejects(store.getStream(d, { offset: 0, limit: 1 }), NotFoundError);
        upload.release();
        await put;
        assert.equal(await store.sizeOf(d.hash), LARGE.length);
        assert.deepEqual(await store.get(d), LARGE);
      });

      test('putStream stops reading a source that runs past the claimed size', async () => {
        const d = digestOf('short');
        let pulled = 0;
        async function* endless(): AsyncGenerator<Uint8Array> {
          for (;;) {
            pulled++;
            yield Buffer.from('more bytes than claimed');
          }
        }
        await assert.rejects(store.putStream(d, endless()), DigestMismatchError);
        assert.equal(pulled, 1);
      });

      test('putStream whose source throws midway leaves nothing visible and passes the error on', async () => {
        const d = digestOf(LARGE);
        const boom = new Error('connection reset');
        await assert.rejects(store.putStream(d, failingAfter(LARGE.subarray(0, 1000), boom)), (err) => err === boom);
        assert.equal(await store.has(d), false);
        // The store is still usable for the same blob afterwards.
        await store.putStream(d, chunked(LARGE));
        assert.deepEqual(await store.get(d), LARGE);
      });

      test('putStream refuses chunks that are not bytes', async () => {
        const d = digestOf('text');
        async function* strings(): AsyncGenerator<Uint8Array> {
          yield 'text' as unknown as Uint8Array;
        }
        await assert.rejects(store.putStream(d, strings()), InvalidArgumentError);
        assert.equal(await store.has(d), false);
      });
    });

    describe('size limit', () => {
      const over = { hash: 'ab'.repeat(32), sizeBytes: MAX_BLOB_BYTES + 1 };

      test('put, putStream and putFile refuse blobs over maxBlobBytes', async () => {
        await assert.rejects(store.put(over, new Uint8Array(0)), TooLargeError);
        let pulled = false;
        async function* source(): AsyncGenerator<Uint8Array> {
          pulled = true;
          yield new Uint8Array(1);
        }
        await assert.rejects(store.putStream(over, source()), (err) => err instanceof TooLargeError && err.code === 'RESOURCE_EXHAUSTED');
        assert.equal(pulled, false, 'an oversize putStream is refused before reading');
        const path = join(scratch, 'big');
        await writeFile(path, Buffer.alloc(MAX_BLOB_BYTES + 1));
        await assert.rejects(store.putFile(path), TooLargeError);
      });

      test('a blob of exactly maxBlobBytes is accepted', async () => {
        const data = Buffer.alloc(MAX_BLOB_BYTES, 7);
        const d = digestOf(data);
        await store.putStream(d, chunked(data, [1 << 20]));
        assert.equal(await store.sizeOf(d.hash), MAX_BLOB_BYTES);
      });
    });

    describe('concurrency', () => {
      test('concurrent puts of the same blob all succeed and store it once, intact', async () => {
        const d = digestOf(LARGE);
        await Promise.all(
          Array.from({ length: 12 }, (_, i) => (i % 2 === 0 ? store.putStream(d, chunked(LARGE, [i * 1000 + 1000])) : store.put(d, LARGE))),
        );
        assert.deepEqual(await store.get(d), LARGE);
      });

      test('a failing put does not disturb a concurrent good one', async () => {
        const d = digestOf(LARGE);
        const results = await Promise.allSettled([
          store.putStream(d, failingAfter(LARGE.subarray(0, 5000), new Error('client went away'))),
          store.putStream(d, chunked(LARGE)),
          store.putStream(d, chunked(Buffer.concat([LARGE, Buffer.from('!')]))),
        ]);
        assert.deepEqual(
          results.map((r) => r.status),
          ['rejected', 'fulfilled', 'rejected'],
        );
        assert.deepEqual(await store.get(d), LARGE);
      });

      test('readers during concurrent writes see the whole blob or nothing', async () => {
        const d = digestOf(LARGE);
        const writes = Promise.all(Array.from({ length: 4 }, () => store.putStream(d, chunked(LARGE))));
        for (let i = 0; i < 20; i++) {
          const got = await store.get(d).catch((err: unknown) => {
            assert.ok(err instanceof NotFoundError);
            return undefined;
          });
          if (got) assert.deepEqual(got, LARGE);
          await new Promise((r) => setImmediate(r));
        }
        await writes;
      });
    });

    describe('ranges', () => {
      test('getStream returns the requested range, across chunk boundaries', async () => {
        const d = await putBytes(LARGE);
        const size = LARGE.length;
        const cases: Array<[number | undefined, number | undefined]> = [
          [undefined, undefined],
          [0, 4096],
          [1, 1],
          [262_143, 3],
          [300_000, 400_000],
          [size - 10, undefined],
          [size - 10, 1_000_000],
          [size, undefined],
          [5, 0],
        ];
        for (const [offset, limit] of cases) {
          const range = { ...(offset !== undefined ? { offset } : {}), ...(limit !== undefined ? { limit } : {}) };
          const start = offset ?? 0;
          const end = limit === undefined ? size : Math.min(size, start + limit);
          assert.deepEqual(await collect(await store.getStream(d, range)), LARGE.subarray(start, end), JSON.stringify(range));
        }
      });

      test('an offset past the end is OUT_OF_RANGE; negative or fractional values are invalid', async () => {
        const d = await putBytes(Buffer.from('0123456789'));
        await assert.rejects(store.getStream(d, { offset: 11 }), isCode('OUT_OF_RANGE'));
        await assert.rejects(store.getStream(d, { offset: -1 }), InvalidArgumentError);
        await assert.rejects(store.getStream(d, { limit: -1 }), InvalidArgumentError);
        await assert.rejects(store.getStream(d, { offset: 1.5 }), InvalidArgumentError);
      });

      test('getStream returns a Node Readable (the HTTP layer sends it as is)', async () => {
        const d = await putBytes(Buffer.from('readable'));
        const stream = await store.getStream(d);
        assert.ok(stream instanceof Readable);
        assert.equal((await collect(stream)).toString(), 'readable');
      });
    });

    describe('absent blobs', () => {
      test('get, getStream and materialize throw NotFoundError, getStream from the call itself', async () => {
        const d = digestOf('never stored');
        await assert.rejects(store.get(d), (err) => err instanceof NotFoundError && err.code === 'NOT_FOUND');
        // The rejection comes from the call, before any iteration.
        await assert.rejects(store.getStream(d), NotFoundError);
        await assert.rejects(store.getStream(d, { offset: 0, limit: 1 }), NotFoundError);
        await assert.rejects(store.getStream(d, { offset: d.sizeBytes }), NotFoundError);
        const dest = join(scratch, 'absent');
        await assert.rejects(store.materialize(d, dest, 0o644), NotFoundError);
        await assert.rejects(stat(dest), { code: 'ENOENT' });
      });
    });

    describe('materialize', () => {
      test('writes the bytes with exactly the mode asked for, whatever the umask', async () => {
        const d = await putBytes(LARGE);
        const previous = process.umask(0o077);
        try {
          for (const mode of [0o755, 0o644, 0o600, 0o555]) {
            const dest = join(scratch, `m-${mode.toString(8)}`);
            await store.materialize(d, dest, mode);
            assert.equal((await stat(dest)).mode & 0o7777, mode);
            assert.deepEqual(await readFile(dest), LARGE);
          }
        } finally {
          process.umask(previous);
        }
      });

      test('materialized files are independent copies', async () => {
        const d = await putBytes(Buffer.from('original'));
        const dest = join(scratch, 'copy');
        await store.materialize(d, dest, 0o644);
        await writeFile(dest, 'changed by the program');
        assert.equal((await store.get(d)).toString(), 'original');
      });

      test('never replaces an existing file nor writes through a symlink', async () => {
        const d = await putBytes(Buffer.from('payload'));
        const existing = join(scratch, 'existing');
        await writeFile(existing, 'keep me');
        await assert.rejects(store.materialize(d, existing, 0o644), isCode('ALREADY_EXISTS'));
        assert.equal(await readFile(existing, 'utf8'), 'keep me');
        const victim = join(scratch, 'victim');
        await writeFile(victim, 'victim');
        const link = join(scratch, 'link');
        await symlink(victim, link);
        await assert.rejects(store.materialize(d, link, 0o644), isCode('ALREADY_EXISTS'));
        assert.equal(await readFile(victim, 'utf8'), 'victim');
        const dangling = join(scratch, 'dangling');
        await symlink(join(scratch, 'nowhere'), dangling);
        await assert.rejects(store.materialize(d, dangling, 0o644), isCode('ALREADY_EXISTS'));
        await assert.rejects(stat(join(scratch, 'nowhere')), { code: 'ENOENT' });
      });

      test('asked to share the stored file: the same bytes; executables are still exact, independent copies', async () => {
        const d = await putBytes(LARGE);
        const shared = join(scratch, 'shared');
        await store.materialize(d, shared, 0o644, { shareStoredFile: true });
        assert.deepEqual(await readFile(shared), LARGE);
        const exe = join(scratch, 'shared-exe');
        await store.materialize(d, exe, 0o755, { shareStoredFile: true });
        assert.equal((await stat(exe)).mode & 0o7777, 0o755);
        await writeFile(exe, 'changed');
        assert.deepEqual(await store.get(d), LARGE);
        await assert.rejects(store.materialize(d, shared, 0o644, { shareStoredFile: true }), isCode('ALREADY_EXISTS'));
      });

      test('into a subdirectory that exists', async () => {
        const d = await putBytes(Buffer.from('nested'));
        await mkdir(join(scratch, 'a', 'b'), { recursive: true });
        await store.materialize(d, join(scratch, 'a', 'b', 'f'), 0o644);
        assert.equal(await readFile(join(scratch, 'a', 'b', 'f'), 'utf8'), 'nested');
      });
    });

    if (opts.tamperable) {
      describe('a blob changed behind the store\'s back is not served', () => {
        const overwrite = (hash: string, bytes: Buffer): Promise<void> => {
          assert.ok(handle.tamper, `${name} was declared tamperable but gave no tamper hook`);
          return handle.tamper.overwrite(hash, bytes);
        };

        test('get: NotFoundError, and the bad blob is removed', async () => {
          const d = await putBytes(Buffer.from('good bytes'));
          await overwrite(d.hash, Buffer.from('evil bytes'));
          await assert.rejects(store.get(d), (err) => err instanceof NotFoundError && err.details?.corrupt === true);
          assert.equal(await store.has(d), false);
          assert.deepEqual(await handle.tamper?.kept(), []);
        });

        test('a whole-blob stream errors instead of ending cleanly', async () => {
          const d = await putBytes(LARGE);
          await overwrite(d.hash, flipped(LARGE, LARGE.length - 1));
          const stream = await store.getStream(d);
          await assert.rejects(collect(stream), isCode('INTERNAL'));
          assert.equal(await store.has(d), false);
        });

        test('a ranged read checks the whole blob first, even one it verified before the change', async () => {
          const d = await putBytes(LARGE);
          assert.deepEqual(await collect(await store.getStream(d, { offset: 0, limit: 4 })), LARGE.subarray(0, 4));
          await overwrite(d.hash, flipped(LARGE, 500_000));
          await assert.rejects(store.getStream(d, { offset: 0, limit: 4 }), NotFoundError);
          assert.equal(await store.has(d), false);
        });

        test('materialize, copying or sharing the stored file: NotFoundError and no file left at the destination', async () => {
          for (const [label, mode, share] of [
            ['copy', 0o755, false],
            ['share', 0o644, true],
          ] as const) {
            const d = await putBytes(Buffer.from(`materialize ${label}`));
            await overwrite(d.hash, Buffer.from(`materialize ${label.replace(/.$/, '!')}`));
            const dest = join(scratch, `out-${label}`);
            await assert.rejects(store.materialize(d, dest, mode, { shareStoredFile: share }), NotFoundError);
            await assert.rejects(stat(dest), { code: 'ENOENT' });
            assert.equal(await store.has(d), false);
          }
        });

        test('a blob of the wrong size counts as absent, and a new upload heals it', async () => {
          const d = await putBytes(LARGE);
          await overwrite(d.hash, LARGE.subarray(0, 1000));
          assert.deepEqual(await store.findMissing([d]), [d]);
          await assert.rejects(store.get(d), NotFoundError);
          await assert.rejects(store.getStream(d, { offset: 1, limit: 1 }), NotFoundError);
          await store.putStream(d, chunked(LARGE));
          assert.deepEqual(await store.get(d), LARGE);
        });
      });
    }
  });
}
