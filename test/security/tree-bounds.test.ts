/**
 * Directory trees that would expand past the bounds are refused early: a 1 000 000-entry tree made of one
 * Directory blob named 1000 times, and a chain of 10 000 levels, are refused after reading a few blobs,
 * by the gRPC door's walk (walkTree) and by a worker's staging (stageTree), with nothing staged.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MemoryBlobStore } from '../../src/cas/memory/memory-blob-store.js';
import { DEFAULT_TREE_LIMITS, encodeDirectory, stageTree, walkTree } from '../../src/cas/tree.js';
import type { Digest } from '../../src/core/digest.js';
import { digestOf, EMPTY_DIGEST } from '../../src/core/digest.js';
import { InvalidArgumentError, TooLargeError } from '../../src/core/errors.js';
import type { Directory } from '../../src/core/model.js';

/** A real in-memory store that counts the blobs read from it. */
class CountingStore extends MemoryBlobStore {
  reads = 0;
  override async get(d: Digest): Promise<Buffer> {
    this.reads++;
    return super.get(d);
  }
}

async function put(store: MemoryBlobStore, dir: Directory): Promise<Digest> {
  const bytes = encodeDirectory(dir);
  const d = digestOf(bytes);
  await store.put(d, bytes);
  return d;
}

const names = (n: number, prefix: string): string[] => Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(4, '0')}`);

describe('tree bounds', () => {
  let scratch: string;
  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'remex-tree-bounds-'));
  });
  after(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  test('a 1 000 000-entry fan-out of one Directory blob is refused after two reads', async () => {
    assert.ok(DEFAULT_TREE_LIMITS.maxEntries < 1_000_000);
    const store = new CountingStore();
    const leaf = await put(store, { files: names(1000, 'f').map((name) => ({ name, digest: EMPTY_DIGEST, isExecutable: false })), directories: [], symlinks: [] });
    const root = await put(store, { files: [], directories: names(1000, 'd').map((name) => ({ name, digest: leaf })), symlinks: [] });
    await assert.rejects(walkTree(root, store), (err: unknown) => err instanceof TooLargeError && /more than 500000 entries/.test(err.message));
    assert.equal(store.reads, 2, 'the root and the one leaf blob, nothing expanded');

    const into = join(scratch, 'fan-out');
    await assert.rejects(stageTree(root, store, into), TooLargeError);
    assert.deepEqual(await readdir(into).catch(() => []), [], 'nothing staged');
  });

  test('a chain of 10 000 levels is refused once it passes the depth bound', async () => {
    const store = new CountingStore();
    let d = await put(store, { files: [], directories: [], symlinks: [] });
    for (let i = 0; i < 10_000; i++) d = await put(store, { files: [], directories: [{ name: 'a', digest: d }], symlinks: [] });
    await assert.rejects(walkTree(d, store), (err: unknown) => err instanceof InvalidArgumentError && /deeper than 256 levels/.test(err.message));
    assert.ok(store.reads <= DEFAULT_TREE_LIMITS.maxDepth + 1, `read ${store.reads} Directory blobs of 10 001`);

    const into = join(scratch, 'chain');
    await assert.rejects(stageTree(d, store, into), InvalidArgumentError);
    assert.deepEqual(await readdir(into).catch(() => []), [], 'nothing staged');
  });
});
