/**
 * StatementBatcher on its own (no database: `run` is a function recording the batches it is given).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { StatementBatcher } from '../../../src/store/postgres/statement-batcher.js';

/** A run that answers each item doubled, after a turn of the event loop, and records its batches. */
function recorder(fail?: (items: readonly number[]) => Error | undefined) {
  const batches: number[][] = [];
  const run = async (items: readonly number[]): Promise<number[]> => {
    batches.push([...items]);
    await new Promise((r) => setImmediate(r));
    const err = fail?.(items);
    if (err) throw err;
    return items.map((i) => i * 2);
  };
  return { batches, run };
}

describe('StatementBatcher', () => {
  test('a lone item goes at once; items arriving meanwhile share the next statement; each caller gets its own answer', async () => {
    const r = recorder();
    const b = new StatementBatcher<number, number>({ run: r.run });
    const answers = await Promise.all([1, 2, 3, 4, 5].map((i) => b.submit(i)));
    assert.deepEqual(answers, [2, 4, 6, 8, 10]);
    assert.deepEqual(r.batches, [[1], [2, 3, 4, 5]]);
  });

  test('maxBatch bounds a statement; maxInFlight lets more run at once', async () => {
    const r = recorder();
    const b = new StatementBatcher<number, number>({ run: r.run, maxBatch: 2, maxInFlight: 2 });
    await Promise.all([1, 2, 3, 4, 5, 6].map((i) => b.submit(i)));
    assert.deepEqual(r.batches, [[1], [2], [3, 4], [5, 6]]);
  });

  test('two items of one key never share a statement, and keep their order', async () => {
    const r = recorder();
    const b = new StatementBatcher<number, number>({ run: r.run, keyOf: (i) => String(i % 2) });
    await Promise.all([1, 3, 5, 2, 4].map((i) => b.submit(i)));
    for (const batch of r.batches) assert.equal(new Set(batch.map((i) => i % 2)).size, batch.length);
    const odd = r.batches.flat().filter((i) => i % 2 === 1);
    assert.deepEqual(odd, [1, 3, 5]);
  });

  test('a failed statement fails its items; with retryAlone, only the item that fails alone', async () => {
    const poison = (items: readonly number[]) => (items.includes(13) ? new Error('refused: 13') : undefined);
    const plain = new StatementBatcher<number, number>({ run: recorder(poison).run });
    const all = await Promise.allSettled([1, 2, 13, 4].map((i) => plain.submit(i)));
    assert.deepEqual(all.map((o) => o.status), ['fulfilled', 'rejected', 'rejected', 'rejected']);

    const r = recorder(poison);
    const isolating = new StatementBatcher<number, number>({ run: r.run, retryAlone: (err) => err instanceof Error && err.message.startsWith('refused') });
    const each = await Promise.allSettled([1, 2, 13, 4].map((i) => isolating.submit(i)));
    assert.deepEqual(each.map((o) => (o.status === 'fulfilled' ? o.value : 'refused')), [2, 4, 'refused', 8]);
    assert.deepEqual(r.batches, [[1], [2, 13, 4], [2], [13], [4]]);
  });

  test('an error retryAlone declines fails the whole batch at once', async () => {
    const r = recorder((items) => (items.length > 1 ? new Error('database unreachable') : undefined));
    const b = new StatementBatcher<number, number>({ run: r.run, retryAlone: () => false });
    const out = await Promise.allSettled([1, 2, 3].map((i) => b.submit(i)));
    assert.deepEqual(out.map((o) => o.status), ['fulfilled', 'rejected', 'rejected']);
    assert.deepEqual(r.batches, [[1], [2, 3]]);
  });

  test('a run answering the wrong number of items fails them', async () => {
    const b = new StatementBatcher<number, number>({ run: async (items) => items.slice(1) });
    await assert.rejects(b.submit(1), /a batch of 1 got 0 answers/);
  });
});
