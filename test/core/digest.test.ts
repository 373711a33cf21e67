import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  DigestBuilder,
  digestEquals,
  digestOf,
  EMPTY_DIGEST,
  formatDigest,
  isValidHash,
  parseDigest,
  validateDigest,
} from '../../src/core/digest.js';
import { InvalidArgumentError } from '../../src/core/errors.js';

const sha256 = (data: string | Uint8Array): string => createHash('sha256').update(data).digest('hex');

function assertInvalid(fn: () => unknown): void {
  assert.throws(fn, (err: unknown) => err instanceof InvalidArgumentError && err.code === 'INVALID_ARGUMENT');
}

describe('digest', () => {
  it('EMPTY_DIGEST is the digest of no bytes, and frozen', () => {
    assert.deepEqual(digestOf(new Uint8Array(0)), EMPTY_DIGEST);
    assert.deepEqual(digestOf(''), EMPTY_DIGEST);
    assert.ok(Object.isFrozen(EMPTY_DIGEST));
  });

  it('digestOf hashes strings as UTF-8 and counts bytes, not characters', () => {
    const d = digestOf('héllo');
    assert.equal(d.sizeBytes, 6);
    assert.equal(d.hash, sha256(Buffer.from('héllo', 'utf8')));
    assert.deepEqual(digestOf(Buffer.from('héllo', 'utf8')), d);
  });

  it('isValidHash accepts exactly 64 lower-case hex characters', () => {
    assert.equal(isValidHash(EMPTY_DIGEST.hash), true);
    assert.equal(isValidHash(EMPTY_DIGEST.hash.toUpperCase()), false);
    assert.equal(isValidHash(EMPTY_DIGEST.hash.slice(1)), false);
    assert.equal(isValidHash(`${EMPTY_DIGEST.hash}0`), false);
    assert.equal(isValidHash(`../${EMPTY_DIGEST.hash.slice(3)}`), false);
    assert.equal(isValidHash(''), false);
  });

  it('validateDigest checks shape and returns a clean copy', () => {
    const extra = { hash: EMPTY_DIGEST.hash, sizeBytes: 0, other: 1 };
    assert.deepEqual(validateDigest(extra), { hash: EMPTY_DIGEST.hash, sizeBytes: 0 });
    assertInvalid(() => validateDigest({ hash: 'abc', sizeBytes: 0 }));
    assertInvalid(() => validateDigest({ hash: EMPTY_DIGEST.hash, sizeBytes: -1 }));
    assertInvalid(() => validateDigest({ hash: EMPTY_DIGEST.hash, sizeBytes: 1.5 }));
    assertInvalid(() => validateDigest({ hash: EMPTY_DIGEST.hash, sizeBytes: '3' }));
    assertInvalid(() => validateDigest({ hash: EMPTY_DIGEST.hash, sizeBytes: 2 ** 60 }));
    assertInvalid(() => validateDigest({ sizeBytes: 0 }));
  });

  it('digestEquals compares hash and size', () => {
    const d = digestOf('x');
    assert.equal(digestEquals(d, { ...d }), true);
    assert.equal(digestEquals(d, { ...d, sizeBytes: 2 }), false);
    assert.equal(digestEquals(d, EMPTY_DIGEST), false);
  });

  it('formatDigest and parseDigest round-trip', () => {
    const d = digestOf('round trip');
    assert.equal(formatDigest(d), `${d.hash}/${d.sizeBytes}`);
    assert.deepEqual(parseDigest(formatDigest(d)), d);
  });

  it('parseDigest refuses malformed text', () => {
    const h = EMPTY_DIGEST.hash;
    for (const text of ['', h, `${h}/`, `${h}/-1`, `${h}/1.0`, `${h}/ 1`, `${h}/12345678901234567`, `${h.toUpperCase()}/0`, `/0`, `${h}/0/0`]) {
      assertInvalid(() => parseDigest(text));
    }
  });

  it('DigestBuilder over chunks equals digestOf over the whole', () => {
    const whole = Buffer.from('the quick brown fox jumps over the lazy dog');
    const b = new DigestBuilder();
    for (let i = 0; i < whole.length; i += 7) b.update(whole.subarray(i, i + 7));
    assert.equal(b.bytesSoFar, whole.length);
    assert.deepEqual(b.digest(), digestOf(whole));
    assert.deepEqual(new DigestBuilder().digest(), EMPTY_DIGEST);
  });
});
