import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isRemexError } from '../../src/core/errors.js';
import { formatDuration, parseDuration } from '../../src/core/duration.js';

test('durations as people type them', () => {
  assert.equal(parseDuration('90s'), 90_000);
  assert.equal(parseDuration('45m'), 2_700_000);
  assert.equal(parseDuration('4h'), 14_400_000);
  assert.equal(parseDuration('2d'), 172_800_000);
  assert.equal(parseDuration('1h30m'), 5_400_000);
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('1.5h'), 5_400_000);
  assert.equal(parseDuration(' 10m '), 600_000);
});

test('anything else is refused, naming the flag and the forms', () => {
  for (const bad of ['', '90', 'm', '4x', '-5m', '1h 30m', '0s', 'h4', '400d', 'NaNs', '1e3s']) {
    assert.throws(
      () => parseDuration(bad, '--max-runtime'),
      (err: unknown) => isRemexError(err, 'INVALID_ARGUMENT') && /^--max-runtime ".*": .*\(durations look like 90s, 45m, 4h/.test((err as Error).message),
      bad,
    );
  }
});

test('formatted with the two largest units', () => {
  assert.equal(formatDuration(250), '250ms');
  assert.equal(formatDuration(45_000), '45s');
  assert.equal(formatDuration(5_400_000), '1h30m');
  assert.equal(formatDuration(90_061_000), '1d1h');
});
