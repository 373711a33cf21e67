import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { S3_MAX_BLOB_BYTES, S3BlobStore } from '../../../src/cas/s3/s3-blob-store.js';
import { parseS3Url } from '../../../src/cas/s3/s3-url.js';
import type { Digest } from '../../../src/core/digest.js';
import { digestOf, EMPTY_DIGEST } from '../../../src/core/digest.js';
import { DigestMismatchError, InvalidArgumentError, isRemexError } from '../../../src/core/errors.js';
import type { TestS3 } from '../../helpers/s3.js';
import { startS3 } from '../../helpers/s3.js';
import { blobStoreConformance, chunked, collect, failingAfter, flipped, LARGE, MAX_BLOB_BYTES, pausedAfter } from '../blob-store-conformance.js';

let s3: TestS3;
before(async () => {
  s3 = await startS3();
});
after(async () => {
  await s3.stop();
});

function conformance(name: string, extra: { bufferedPutMaxBytes?: number; verifiedMemoEntries?: number }): void {
  blobStoreConformance(name, async ({ maxBlobBytes }) => {
    const opts = s3.storeOptions(maxBlobBytes);
    const store = new S3BlobStore({ ...opts, ...extra });
    return {
      store,
      cleanup: async () => {
        await store.close();
        await s3.deletePrefix(opts.prefix);
      },
      tamper: {
        // Through the SDK, past the store: as a stray writer to the bucket would.
        overwrite: async (hash, bytes) => {
          await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: store.keyOf(hash), Body: bytes }));
        },
        kept: () => s3.listKeys(opts.prefix),
      },
    };
  }, { tamperable: true });
}

conformance('s3', {});
// Every stream through the temporary key and CopyObject, and no memory of verified blobs.
conformance('s3, streams through a temporary object', { bufferedPutMaxBytes: 0, verifiedMemoEntries: 0 });

describe('S3BlobStore', () => {
  let store: S3BlobStore;
  let prefix: string;
  let scratch: string;

  beforeEach(async () => {
    const opts = s3.storeOptions(MAX_BLOB_BYTES);
    prefix = opts.prefix;
    store = new S3BlobStore({ ...opts, bufferedPutMaxBytes: 64 * 1024 });
    scratch = await mkdtemp(join(tmpdir(), 'remex-s3-test-'));
  });

  afterEach(async () => {
    await store.close();
    await s3.deletePrefix(prefix);
    await rm(scratch, { recursive: true, force: true });
  });

  /** Overwrites a stored blob's object directly, as a stray writer or a bug elsewhere would. */
  test('lays blobs out as <prefix>sha256/<hash>; the empty blob is never written', async () => {
    const d = digestOf('layout');
    await store.put(d, Buffer.from('layout'));
    await store.put(EMPTY_DIGEST, new Uint8Array(0));
    assert.equal(store.keyOf(d.hash), `${prefix}sha256/${d.hash}`);
    assert.deepEqual(await s3.listKeys(prefix), [`${prefix}sha256/${d.hash}`]);
    const head = await s3.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: store.keyOf(d.hash) }));
    assert.equal(head.ContentLength, 6);
    assert.throws(() => store.keyOf('../../etc/passwd'), InvalidArgumentError);
  });

  test('failed and aborted uploads leave nothing: no object at the final key, no temporary object', async () => {
    const big = digestOf(LARGE); // over bufferedPutMaxBytes: through a temporary object
    const small = digestOf('small blob'); // buffered, one PUT
    const failures: Array<[Digest, () => Promise<void>]> = [
      [big, () => store.putStream(big, failingAfter(LARGE.subarray(0, 200_000), new Error('client went away')))],
      [big, () => store.putStream(big, chunked(flipped(LARGE, LARGE.length - 1)))],
      [big, () => store.putStream(big, chunked(LARGE.subarray(1)))],
      [big, () => store.putStream(big, chunked(Buffer.concat([LARGE, LARGE])))],
      [small, () => store.putStream(small, failingAfter(Buffer.from('small'), new Error('reset')))],
      [small, () => store.put(small, Buffer.from('small blob!'))],
    ];
    for (const [d, fail] of failures) {
      await assert.rejects(fail());
      assert.equal(await store.has(d), false);
    }
    const path = join(scratch, 'big');
    await writeFile(path, Buffer.alloc(MAX_BLOB_BYTES + 1));
    await assert.rejects(store.putFile(path));
    assert.deepEqual(await s3.listKeys(prefix), []);
    // And a good upload through the temporary object leaves only the blob.
    await store.putStream(big, chunked(LARGE));
    assert.deepEqual(await s3.listKeys(prefix), [store.keyOf(big.hash)]);
    assert.deepEqual(await store.get(big), LARGE);
  });

  test('a streamed blob is not at its key until verified (the conformance suite checks the calls)', async () => {
    const d = digestOf(LARGE);
    const upload = pausedAfter(LARGE, 400_000);
    const put = store.putStream(d, upload.source);
    await upload.reachedPause;
    assert.ok(!(await s3.listKeys(prefix)).includes(store.keyOf(d.hash)));
    upload.release();
    await put;
    assert.deepEqual(await s3.listKeys(prefix), [store.keyOf(d.hash)]);
  });

  test('two stores on one bucket and prefix (two controllers) share blobs; ranged reads verify once', async () => {
    const d = digestOf(LARGE);
    await store.putStream(d, chunked(LARGE));
    const other = new S3BlobStore({ ...s3.storeOptions(MAX_BLOB_BYTES), prefix });
    try {
      assert.deepEqual(await other.findMissing([d, digestOf('absent')]), [digestOf('absent')]);
      for (const [offset, limit] of [
        [10, 10],
        [700_000, 100],
      ] as const) {
        assert.deepEqual(await collect(await other.getStream(d, { offset, limit })), LARGE.subarray(offset, offset + limit));
      }
      const dest = join(scratch, 'shared');
      await other.materialize(d, dest, 0o600);
      assert.equal((await stat(dest)).mode & 0o777, 0o600);
    } finally {
      await other.close();
    }
  });

  test('findMissing over many digests runs HEADs concurrently and keeps order', async () => {
    const present = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const data = Buffer.from(`blob ${i}`);
        await store.put(digestOf(data), data);
        return digestOf(data);
      }),
    );
    const absent = Array.from({ length: 80 }, (_, i) => digestOf(`absent ${i}`));
    const mixed = absent.flatMap((d, i) => (i % 4 === 0 ? [present[i / 4] as Digest, d] : [d]));
    assert.deepEqual(await store.findMissing(mixed), absent);
  });

  test('putFile of a large file goes through a temporary object and leaves only the blob', async () => {
    const path = join(scratch, 'file');
    await writeFile(path, LARGE);
    const d = await store.putFile(path);
    assert.deepEqual(d, digestOf(LARGE));
    assert.deepEqual(await s3.listKeys(prefix), [store.keyOf(d.hash)]);
    assert.deepEqual(await store.putFile(path), d, 'a second putFile finds it present');
  });

  test('credentials never appear in errors', async () => {
    const accessKeyId = 'AKIAREMEXTESTKEY0001';
    const secretAccessKey = 'remex-test-secret-never-print-me';
    const bad = new S3BlobStore({ ...s3.storeOptions(MAX_BLOB_BYTES), credentials: { accessKeyId, secretAccessKey }, bufferedPutMaxBytes: 0 });
    const d = digestOf(LARGE);
    const errors: unknown[] = [];
    const attempts: Array<() => Promise<unknown>> = [
      () => bad.has(d),
      () => bad.put(digestOf('x'), Buffer.from('x')),
      () => bad.putStream(d, chunked(LARGE)),
      () => bad.sizeOf(d.hash),
      () => bad.findMissing([d]),
      () => bad.get(d),
      () => bad.getStream(d, { offset: 1, limit: 2 }),
      () => bad.materialize(d, join(scratch, 'never'), 0o644),
    ];
    try {
      for (const attempt of attempts) {
        const err = await attempt().then(
          () => assert.fail('an unknown access key must be refused'),
          (e: unknown) => e,
        );
        errors.push(err);
      }
    } finally {
      await bad.close();
    }
    for (const err of errors) {
      assert.ok(isRemexError(err), `a RemexError, got ${inspect(err)}`);
      assert.notEqual(err.code, 'NOT_FOUND');
      const shown = `${String(err)} ${JSON.stringify(err)} ${inspect(err, { depth: Infinity, showHidden: true })}`;
      assert.ok(!shown.includes(secretAccessKey), shown);
      assert.ok(!shown.includes(accessKeyId), shown);
      assert.match(err.message, /access denied|InvalidAccessKeyId/, err.message);
    }
    // Nor does a URL with credentials pasted into it echo them.
    const err = (() => {
      try {
        parseS3Url(`s3://${accessKeyId}:${secretAccessKey}@bucket/prefix`);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    assert.ok(err instanceof InvalidArgumentError);
    assert.ok(!err.message.includes(secretAccessKey) && !err.message.includes(accessKeyId), err.message);
  });

  test('checkAccess passes on a usable bucket and fails on a missing one', async () => {
    await store.checkAccess();
    const missing = new S3BlobStore({ ...s3.storeOptions(MAX_BLOB_BYTES), bucket: 'remex-no-such-bucket' });
    try {
      await assert.rejects(missing.checkAccess(), (err) => isRemexError(err) && err.code !== 'NOT_FOUND' && /remex-no-such-bucket/.test(err.message));
    } finally {
      await missing.close();
    }
  });

  test('refuses limits S3 cannot honour, and bad options', () => {
    const opts = s3.storeOptions(MAX_BLOB_BYTES);
    assert.throws(() => new S3BlobStore({ ...opts, maxBlobBytes: S3_MAX_BLOB_BYTES + 1 }), InvalidArgumentError);
    assert.throws(() => new S3BlobStore({ ...opts, maxBlobBytes: Number.NaN }), InvalidArgumentError);
    assert.throws(() => new S3BlobStore({ ...opts, bucket: '' }), InvalidArgumentError);
    assert.throws(() => new S3BlobStore({ ...opts, endpoint: 'ftp://x' }), InvalidArgumentError);
    assert.throws(() => new S3BlobStore({ ...opts, prefix: 'a/../b' }), InvalidArgumentError);
    assert.throws(() => new S3BlobStore({ ...opts, bufferedPutMaxBytes: -1 }), InvalidArgumentError);
  });

  test('a put that loses to DigestMismatchError names both digests', async () => {
    const d = digestOf('x');
    const err = await store.putStream(d, chunked(Buffer.from('y'))).catch((e: unknown) => e);
    assert.ok(err instanceof DigestMismatchError);
    assert.deepEqual(err.actual, digestOf('y'));
  });
});

describe('parseS3Url', () => {
  test('the full form', () => {
    assert.deepEqual(parseS3Url('s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1&forcePathStyle=true'), {
      bucket: 'bucket',
      prefix: 'prefix/',
      endpoint: 'http://127.0.0.1:9000',
      region: 'us-east-1',
      forcePathStyle: true,
    });
  });

  test('a bare bucket, nested prefixes, encoded endpoints', () => {
    assert.deepEqual(parseS3Url('s3://my-bucket'), { bucket: 'my-bucket' });
    assert.deepEqual(parseS3Url('s3://my-bucket/'), { bucket: 'my-bucket' });
    assert.deepEqual(parseS3Url('s3://b/a/b/c/'), { bucket: 'b', prefix: 'a/b/c/' });
    assert.deepEqual(parseS3Url('s3://b?endpoint=https%3A%2F%2Fs3.example.test&forcePathStyle=0'), {
      bucket: 'b',
      endpoint: 'https://s3.example.test',
      forcePathStyle: false,
    });
  });

  test('refuses what it does not understand', () => {
    for (const bad of [
      'http://bucket/prefix',
      's3://',
      's3://bucket:9000/x',
      's3://bucket/x?secretAccessKey=abc',
      's3://bucket/x?endpoint=ftp://host',
      's3://bucket/x?endpoint=http://h/path',
      's3://bucket/x?forcePathStyle=maybe',
      's3://bucket/x?region=us-east-1&region=eu-west-1',
      's3://bucket/a//b',
      'not a url',
    ]) {
      assert.throws(() => parseS3Url(bad), InvalidArgumentError, bad);
    }
  });

  test('S3BlobStore.fromUrl builds a working store', async () => {
    const prefix = `url-${Date.now()}`;
    const store = S3BlobStore.fromUrl(s3.url(prefix), { maxBlobBytes: 1024, ...(s3.credentials ? { credentials: s3.credentials } : {}) });
    try {
      assert.equal(store.prefix.endsWith(`${prefix}/`), true);
      const d = digestOf('via url');
      await store.put(d, Buffer.from('via url'));
      assert.equal((await store.get(d)).toString(), 'via url');
      assert.equal(store.maxBlobBytes, 1024);
    } finally {
      await store.close();
      await s3.deletePrefix(store.prefix);
    }
  });
});
