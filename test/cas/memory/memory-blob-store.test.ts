import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryBlobStore } from '../../../src/cas/memory/memory-blob-store.js';
import { digestOf } from '../../../src/core/digest.js';
import { InvalidArgumentError } from '../../../src/core/errors.js';
import { blobStoreConformance } from '../blob-store-conformance.js';

blobStoreConformance('memory', async ({ maxBlobBytes }) => {
  const store = new MemoryBlobStore({ maxBlobBytes });
  return { store, cleanup: () => store.close() };
});

test('MemoryBlobStore counts what it holds and refuses a bad limit', async () => {
  const store = new MemoryBlobStore();
  assert.equal(store.size, 0);
  await store.put(digestOf('x'), Buffer.from('x'));
  await store.put(digestOf('x'), Buffer.from('x'));
  assert.equal(store.size, 1);
  assert.throws(() => new MemoryBlobStore({ maxBlobBytes: -1 }), InvalidArgumentError);
});
