import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isRemexError } from '../../src/core/errors.js';
import { parseLabels } from '../../src/core/labels.js';

test('labels: NAME=VALUE, checked', () => {
  assert.deepEqual(parseLabels(['pool=arm-spot', 'app.kubernetes.io/version=1.4', 'empty=']), { pool: 'arm-spot', 'app.kubernetes.io/version': '1.4', empty: '' });
  for (const [flag, pattern] of [
    ['novalue', /expected NAME=VALUE/],
    ['=x', /expected NAME=VALUE/],
    ['1pool=x', /not a letter followed by/],
    [`long=${'v'.repeat(257)}`, /longer than 256/],
  ] as const) {
    assert.throws(() => parseLabels([flag]), (err: unknown) => isRemexError(err, 'INVALID_ARGUMENT') && pattern.test((err as Error).message), flag);
  }
  assert.throws(() => parseLabels(['a=1', 'a=2']), /given twice/);
});
