/**
 * RecentActionResults in front of a real (in-memory SQLite) action cache: hits come from memory until
 * they age out, changes through the decorator are seen at once, changes behind it within maxAgeMs, misses
 * are never remembered, and the number of entries is bounded.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { digestOf } from '../../src/core/digest.js';
import { RecentActionResults } from '../../src/store/recent-action-results.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { makeReport } from './fixtures.js';

const T0 = 1_700_000_000_000;
const action = (label: string) => digestOf(Buffer.from(`action ${label}`));

describe('RecentActionResults', () => {
  let store: SqliteStore;
  let nowMs: number;
  let cache: RecentActionResults;

  beforeEach(() => {
    store = new SqliteStore({ path: ':memory:' });
    nowMs = T0;
    cache = new RecentActionResults(store.actionCache, { maxEntries: 3, maxAgeMs: 1_000, now: () => nowMs });
  });
  afterEach(async () => {
    await store.close();
  });

  test('a hit is served from memory until it ages out; then the stored entry is read again', async () => {
    const first = makeReport({ exitCode: 1 });
    await store.actionCache.put('', action('a'), first, T0);
    assert.deepEqual(await cache.get('', action('a')), first);
    // Replaced behind the decorator's back (another controller): the remembered result is still served …
    const second = makeReport({ exitCode: 2 });
    await store.actionCache.put('', action('a'), second, T0);
    nowMs += 999;
    assert.deepEqual(await cache.get('', action('a')), first);
    // … until maxAgeMs has passed.
    nowMs += 1;
    assert.deepEqual(await cache.get('', action('a')), second);
    // Deleted behind its back: gone once the entry ages out.
    await store.actionCache.delete('', action('a'));
    nowMs += 1_000;
    assert.equal(await cache.get('', action('a')), undefined);
  });

  test('puts and deletes through the decorator are seen at once, and reach the store', async () => {
    const report = makeReport({ exitCode: 7 });
    assert.equal(await cache.get('', action('b')), undefined);
    await cache.put('', action('b'), report, T0);
    assert.deepEqual(await cache.get('', action('b')), report, 'a miss was not remembered');
    assert.deepEqual(await store.actionCache.get('', action('b')), report);
    await cache.delete('', action('b'));
    assert.equal(await cache.get('', action('b')), undefined);
    assert.equal(await store.actionCache.get('', action('b')), undefined);
  });

  test('instances are separate entries', async () => {
    await cache.put('one', action('c'), makeReport({ exitCode: 1 }), T0);
    await cache.put('two', action('c'), makeReport({ exitCode: 2 }), T0);
    assert.equal((await cache.get('one', action('c')))?.exitCode, 1);
    assert.equal((await cache.get('two', action('c')))?.exitCode, 2);
    assert.equal(await cache.get('', action('c')), undefined);
  });

  test('at most maxEntries are kept, the least recently used going first', async () => {
    for (const label of ['1', '2', '3']) await cache.put('', action(label), makeReport({ exitCode: Number(label) }), T0);
    await cache.get('', action('1')); // now the most recently used
    await cache.put('', action('4'), makeReport({ exitCode: 4 }), T0); // evicts '2'
    // Change every stored entry behind its back: only the evicted one shows the change.
    for (const label of ['1', '2', '3', '4']) await store.actionCache.put('', action(label), makeReport({ exitCode: 100 }), T0);
    assert.equal((await cache.get('', action('1')))?.exitCode, 1);
    assert.equal((await cache.get('', action('2')))?.exitCode, 100, 'evicted: read from the store');
    assert.equal((await cache.get('', action('4')))?.exitCode, 4);
  });
});
