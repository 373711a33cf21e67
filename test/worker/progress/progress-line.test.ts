/** parseProgressLine: what a program may write to $REMEX_PROGRESS, and that nothing makes it throw. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { MAX_PROGRESS_MESSAGE_CHARS, MAX_PROGRESS_METRICS, checkEvent } from '../../../src/events/bus-events.js';
import { MAX_PROGRESS_LINE_CHARS, formatProgressLine, parseProgressLine } from '../../../src/worker/progress/progress-line.js';
import type { ProgressUpdate } from '../../../src/worker/progress/progress-line.js';

function ok(line: string): ProgressUpdate {
  const r = parseProgressLine(line);
  assert.ok(r.ok, `expected ${JSON.stringify(line)} to parse, got ${r.ok ? '' : r.reason}`);
  return r.update;
}

function refused(line: string, reason: RegExp): void {
  const r = parseProgressLine(line);
  assert.equal(r.ok, false, `expected ${JSON.stringify(line.slice(0, 80))} to be refused`);
  if (!r.ok) assert.match(r.reason, reason);
}

describe('parseProgressLine: the percentage form', () => {
  test('a percent, with or without a fraction, a % sign and a message', () => {
    assert.deepEqual(ok('42'), { percent: 42 });
    assert.deepEqual(ok('99.5'), { percent: 99.5 });
    assert.deepEqual(ok('0'), { percent: 0 });
    assert.deepEqual(ok('100'), { percent: 100 });
    assert.deepEqual(ok('100.000'), { percent: 100 });
    assert.deepEqual(ok('007'), { percent: 7 });
    assert.deepEqual(ok('42%'), { percent: 42 });
    assert.deepEqual(ok('42 compiling stage 3'), { percent: 42, message: 'compiling stage 3' });
    assert.deepEqual(ok('42%\tcompiling'), { percent: 42, message: 'compiling' });
    assert.deepEqual(ok('  12.25   two  spaces kept inside  \r'), { percent: 12.25, message: 'two  spaces kept inside' });
    assert.deepEqual(ok('5 ünïcödé ✓ 日本'), { percent: 5, message: 'ünïcödé ✓ 日本' });
    assert.deepEqual(ok('50 '), { percent: 50 });
    assert.deepEqual(ok('\uFEFF50 after a byte-order mark'), { percent: 50, message: 'after a byte-order mark' });
    assert.deepEqual(ok('\uFEFF {"percent":50}'), { percent: 50 });
    assert.deepEqual(ok('50 a\tb'), { percent: 50, message: 'a\tb' });
  });

  test('anything else is refused with a reason', () => {
    refused('', /empty line/);
    refused('   \r', /empty line/);
    refused('100.01', /not between 0 and 100/);
    refused('101 too far', /not between 0 and 100/);
    refused('-1', /expected a percentage/);
    refused('+5', /expected a percentage/);
    refused('NaN', /expected a percentage/);
    refused('Infinity', /expected a percentage/);
    refused('1e2', /expected a percentage/);
    refused('.5', /expected a percentage/);
    refused('5.', /expected a percentage/);
    refused('0x10', /expected a percentage/);
    refused('42compiling', /expected a percentage/);
    refused('compiling 42', /got "compiling"/);
    refused(`1${'0'.repeat(400)}`, /finite|between/);
    refused('42 \u001b[31mred', /control characters/);
    refused('42 a\u0000b', /control characters/);
    refused('42 a\u0085b', /control characters/);
    refused('42 line\nbreak', /control characters/);
    refused(`42 ${'m'.repeat(MAX_PROGRESS_MESSAGE_CHARS + 1)}`, new RegExp(`longer than ${MAX_PROGRESS_MESSAGE_CHARS}`));
    assert.deepEqual(ok(`42 ${'m'.repeat(MAX_PROGRESS_MESSAGE_CHARS)}`).message?.length, MAX_PROGRESS_MESSAGE_CHARS);
  });
});

describe('parseProgressLine: the JSON form', () => {
  test('percent, message and metrics, each optional but not all absent', () => {
    assert.deepEqual(ok('{"percent":42,"message":"triad","metrics":{"triad_mbps":48532.5}}'), {
      percent: 42,
      message: 'triad',
      metrics: { triad_mbps: 48532.5 },
    });
    assert.deepEqual(ok('{"percent":0}'), { percent: 0 });
    assert.deepEqual(ok('{"percent":-0}'), { percent: 0 });
    assert.ok(Object.is(ok('{"percent":-0}').percent, 0));
    assert.deepEqual(ok('{"metrics":{"copy":1,"scale.ns":-2.5e3,"a:b-c":0}}'), { metrics: { copy: 1, 'scale.ns': -2500, 'a:b-c': 0 } });
    assert.deepEqual(ok('{"message":"warming up"}'), { message: 'warming up' });
    assert.deepEqual(ok(' {"percent": 7, "message": ""}  '), { percent: 7 });
    assert.deepEqual(ok('{"percent":7,"metrics":{}}'), { percent: 7 });
    assert.deepEqual(ok('{"percent":1,"message":"a {[ nested-looking ]} \\"string\\""}'), { percent: 1, message: 'a {[ nested-looking ]} "string"' });
    const sixteen = Object.fromEntries(Array.from({ length: MAX_PROGRESS_METRICS }, (_, i) => [`m${i}`, i]));
    assert.deepEqual(ok(JSON.stringify({ metrics: sixteen })), { metrics: sixteen });
  });

  test('bad shapes, types, names and numbers are refused with a reason', () => {
    refused('{}', /nothing to report/);
    refused('{"message":""}', /nothing to report/);
    refused('{"metrics":{}}', /nothing to report/);
    refused('{"percent":42', /invalid JSON/);
    refused('{percent:42}', /invalid JSON/);
    refused('[42]', /must be an object/);
    refused('"42"', /must be an object/);
    refused('null', /expected a percentage/);
    refused('{"percent":"42"}', /percent must be a number/);
    refused('{"percent":null}', /percent must be a number/);
    refused('{"percent":100.5}', /not between 0 and 100/);
    refused('{"percent":-3}', /not between 0 and 100/);
    refused('{"percent":1e400}', /finite/);
    refused('{"precent":42}', /unknown key "precent"/);
    refused('{"__proto__":{"percent":1},"percent":2}', /unknown key "__proto__"/);
    refused('{"percent":1,"constructor":1}', /unknown key "constructor"/);
    refused('{"message":42}', /message must be a string/);
    refused('{"message":"a\\u0007b"}', /control characters/);
    refused(JSON.stringify({ message: 'x'.repeat(MAX_PROGRESS_MESSAGE_CHARS + 1) }), /longer than/);
    refused('{"metrics":[1,2]}', /metrics must be an object/);
    refused('{"metrics":5}', /metrics must be an object/);
    refused('{"metrics":{"__proto__":1}}', /metric name "__proto__"/);
    refused('{"metrics":{"_x":1}}', /metric name "_x"/);
    refused('{"metrics":{"9lives":1}}', /metric name/);
    refused('{"metrics":{"has space":1}}', /metric name/);
    refused(JSON.stringify({ metrics: { ['a'.repeat(65)]: 1 } }), /metric name/);
    refused('{"metrics":{"x":"1"}}', /metric x must be a finite number/);
    refused('{"metrics":{"x":1e999}}', /metric x must be a finite number/);
    refused('{"metrics":{"x":null}}', /metric x must be a finite number/);
    const seventeen = Object.fromEntries(Array.from({ length: MAX_PROGRESS_METRICS + 1 }, (_, i) => [`m${i}`, i]));
    refused(JSON.stringify({ metrics: seventeen }), new RegExp(`at most ${MAX_PROGRESS_METRICS} metrics`));
    refused('{"metrics":{"x":{"y":1}}}', /nested deeper than 2/);
    refused(`${'{"a":'.repeat(500)}1${'}'.repeat(500)}`, /nested deeper/);
    refused(`{"percent":${'['.repeat(2000)}`, /nested deeper/);
  });

  test('an over-long line is refused before any parsing', () => {
    refused(`42 ${'x'.repeat(MAX_PROGRESS_LINE_CHARS)}`, /line longer than/);
    refused(`{"message":"${'x'.repeat(MAX_PROGRESS_LINE_CHARS)}"}`, /line longer than/);
  });

  test('the largest valid update fits in a line', () => {
    const metrics = Object.fromEntries(Array.from({ length: MAX_PROGRESS_METRICS }, (_, i) => [`${'m'.repeat(62)}${String(i).padStart(2, '0')}`, -1.2345678901234e-300]));
    const update = { percent: 33.333333333333336, message: '\u0600'.repeat(MAX_PROGRESS_MESSAGE_CHARS), metrics };
    const line = formatProgressLine(update);
    assert.ok(line.length <= MAX_PROGRESS_LINE_CHARS, `${line.length} characters`);
    assert.deepEqual(ok(line), update);
  });

  test('every accepted update passes the event bus check', () => {
    for (const line of ['42 x', '{"percent":3,"metrics":{"a":1}}', '{"percent":100,"message":"done"}']) {
      const update = ok(line);
      checkEvent({ kind: 'progress', jobId: 'j', attempt: 1, percent: update.percent ?? 0, ...update, atMs: 1 });
    }
  });
});

describe('parseProgressLine: properties', () => {
  test('never throws, and answers either an update or a non-empty reason', () => {
    const line = fc.oneof(
      fc.string({ maxLength: 300 }),
      fc.string({ unit: 'binary', maxLength: 300 }),
      fc.json({ maxDepth: 4 }),
      fc.string({ unit: fc.constantFrom('{', '}', '[', ']', '"', '\\', ':', ',', '1', '.', 'e', '-', ' ', '%'), maxLength: 200 }),
    );
    fc.assert(
      fc.property(line, (s) => {
        const r = parseProgressLine(s);
        if (r.ok) assert.ok(r.update.percent !== undefined || r.update.message !== undefined || r.update.metrics !== undefined);
        else assert.ok(r.reason.length > 0 && r.reason.length < 400);
      }),
      { numRuns: 3000 },
    );
  });

  test('also for values that are not strings at all', () => {
    for (const v of [undefined, null, 42, {}, [], Symbol('s')]) {
      const r = parseProgressLine(v as unknown as string);
      assert.equal(r.ok, false);
    }
  });

  const percent = fc.double({ min: 0, max: 100, noNaN: true }).map((n) => (Object.is(n, -0) ? 0 : n));
  const message = fc
    .string({ minLength: 1, maxLength: MAX_PROGRESS_MESSAGE_CHARS, unit: 'grapheme' })
    // eslint-disable-next-line no-control-regex
    .filter((s) => s.length <= MAX_PROGRESS_MESSAGE_CHARS && !/[\u0000-\u0008\u000a-\u001f\u007f-\u009f]/.test(s));
  const metricName = fc.stringMatching(/^[A-Za-z][A-Za-z0-9_.:-]{0,63}$/);
  const metrics = fc.dictionary(metricName, fc.double({ noNaN: true, noDefaultInfinity: true }).map((n) => (Object.is(n, -0) ? 0 : n)), {
    minKeys: 1,
    maxKeys: MAX_PROGRESS_METRICS,
  });

  test('a valid update written as JSON reads back the same', () => {
    const update = fc
      .record({ percent, message, metrics }, { requiredKeys: [] })
      .filter((u) => u.percent !== undefined || u.message !== undefined || u.metrics !== undefined);
    fc.assert(
      fc.property(update, (u) => {
        // fast-check builds objects without a prototype; the parser's have Object's.
        const expected = { ...u, ...(u.metrics === undefined ? {} : { metrics: { ...u.metrics } }) };
        assert.deepEqual(ok(formatProgressLine(u)), expected);
      }),
      { numRuns: 2000 },
    );
  });

  test('a valid percentage line reads back its percent and its trimmed message', () => {
    const decimal = fc
      .tuple(fc.integer({ min: 0, max: 100 }), fc.option(fc.stringMatching(/^[0-9]{1,6}$/), { nil: undefined }))
      .map(([whole, frac]) => (whole === 100 || frac === undefined ? String(whole) : `${whole}.${frac}`));
    fc.assert(
      fc.property(decimal, fc.option(message, { nil: undefined }), fc.constantFrom(' ', '\t', '  '), (p, m, gap) => {
        const line = m === undefined ? p : `${p}${gap}${m}`;
        const expected: { percent: number; message?: string } = { percent: Number(p) };
        const trimmed = m?.replace(/^[ \t]+|[ \t\r]+$/g, '');
        if (trimmed) expected.message = trimmed;
        assert.deepEqual(ok(line), expected);
      }),
      { numRuns: 2000 },
    );
  });
});
