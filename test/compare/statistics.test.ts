/** The statistics of remex compare against data sets whose answers are known (textbook tables, hand counts). */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { mannWhitneyLaw, medianInterval, mosesRank, normalQuantile, ratioOf, summarize, verdictOf } from '../../src/compare/statistics.js';

const close = (a: number, b: number, eps = 1e-9) => assert.ok(Math.abs(a - b) <= eps, `${a} is not ${b} (±${eps})`);

describe('summary', () => {
  test('n, min, median, mean and sample standard deviation of a known set', () => {
    // 2,4,4,4,5,5,7,9: mean 5, sample variance 32/7.
    const s = summarize([9, 4, 2, 4, 5, 4, 7, 5])!;
    assert.equal(s.n, 8);
    assert.equal(s.min, 2);
    assert.equal(s.max, 9);
    assert.equal(s.median, 4.5);
    assert.equal(s.mean, 5);
    close(s.sd, Math.sqrt(32 / 7));
  });

  test('an odd count has its middle value as median; one value has sd 0 and no interval', () => {
    assert.equal(summarize([3, 1, 2])!.median, 2);
    const one = summarize([7])!;
    assert.equal(one.sd, 0);
    assert.equal(one.medianInterval, null);
    assert.equal(summarize([]), null);
  });
});

describe('median interval (order statistics, binomial ½)', () => {
  test('n = 10: ranks 2 and 9, coverage 1 − 22/1024', () => {
    const xs = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    const i = medianInterval(xs)!;
    assert.equal(i.low, 2);
    assert.equal(i.high, 9);
    close(i.level, 1 - 22 / 1024);
  });

  test('n = 20: ranks 6 and 15 (the sign-test table), coverage 1 − 2·P(B ≤ 5) = 0.9586', () => {
    const xs = Array.from({ length: 20 }, (_, k) => k + 1);
    const i = medianInterval(xs)!;
    assert.equal(i.low, 6);
    assert.equal(i.high, 15);
    close(i.level, 1 - (2 * (1 + 20 + 190 + 1140 + 4845 + 15504)) / 2 ** 20);
  });

  test('n = 5 cannot reach 95%: [min, max] with the 93.75% it has', () => {
    const i = medianInterval([5, 1, 4, 2, 3].sort((a, b) => a - b))!;
    assert.deepEqual([i.low, i.high], [1, 5]);
    close(i.level, 0.9375);
  });
});

describe('Mann–Whitney U law and Moses rank', () => {
  test('m = n = 2: U takes 0..4 with 1,1,2,1,1 of 6 arrangements', () => {
    const law = mannWhitneyLaw(2, 2);
    [1, 1, 2, 1, 1].forEach((c, u) => close(law[u]!, c / 6));
  });

  test('the law sums to 1 and is symmetric', () => {
    const law = mannWhitneyLaw(7, 5);
    close(law.reduce((a, b) => a + b, 0), 1);
    for (let u = 0; u < law.length; u++) close(law[u]!, law[law.length - 1 - u]!);
  });

  test('m = n = 10: the two-sided 5% critical U is 23 (tables), so k = 24', () => {
    const { k, level } = mosesRank(10, 10);
    assert.equal(k, 24);
    assert.ok(level >= 0.95 && level < 0.96, `level ${level}`);
  });

  test('m = n = 4: k = 1, coverage 1 − 2/70; m = n = 3 cannot reach 95%', () => {
    const four = mosesRank(4, 4);
    assert.equal(four.k, 1);
    close(four.level, 1 - 2 / 70);
    const three = mosesRank(3, 3);
    assert.equal(three.k, 0);
    close(three.level, 0.9);
  });

  test('large samples use the normal law: 1.959964 at 97.5%', () => {
    close(normalQuantile(0.975), 1.959963985, 1e-6);
    close(normalQuantile(0.5), 0, 1e-12);
    const { k } = mosesRank(60, 60);
    assert.equal(k, Math.floor(1800 - 1.959963985 * Math.sqrt((3600 * 121) / 12)));
  });
});

describe('ratio (Hodges–Lehmann on logs, Moses interval)', () => {
  test('exactly twice as long: estimate 2, and the interval holds 2', () => {
    const b = [10, 11, 12, 13, 14, 15, 16];
    const a = b.map((x) => 2 * x);
    const r = ratioOf(a, b)!;
    close(r.estimate, 2);
    assert.ok(r.interval!.low <= 2 && r.interval!.high >= 2);
    assert.equal(verdictOf(r), 'higher');
  });

  test('a sample against itself: estimate 1, no clear difference', () => {
    const xs = [5, 7, 6, 9, 8, 6];
    const r = ratioOf(xs, xs)!;
    close(r.estimate, 1);
    assert.equal(verdictOf(r), 'no clear difference');
  });

  test('the estimate is the median of the pairwise ratios (hand count)', () => {
    // a/b pairs: 2/1, 2/2, 4/1, 4/2 → 2, 1, 4, 2: median 2.
    const r = ratioOf([2, 4], [1, 2])!;
    close(r.estimate, 2);
    // Two values a side cannot reach 95%: the widest interval, with the coverage it has (1 − 2/6).
    close(r.interval!.low, 1);
    close(r.interval!.high, 4);
    close(r.interval!.level, 2 / 3);
  });

  test('m = n = 4: the interval is the smallest and largest pairwise ratio', () => {
    const a = [10, 20, 30, 40];
    const b = [5, 10, 15, 20];
    const r = ratioOf(a, b)!;
    close(r.interval!.low, 10 / 20);
    close(r.interval!.high, 40 / 5);
    close(r.interval!.level, 1 - 2 / 70);
  });

  test('zeros (a run faster than the clock) stay finite', () => {
    const r = ratioOf([0, 1, 1, 2], [1, 1, 2, 2])!;
    assert.ok(Number.isFinite(r.estimate) && Number.isFinite(r.interval!.low));
  });
});
