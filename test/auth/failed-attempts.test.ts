import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FailedAttempts, hostKey, peerAddress, TooManyFailedAttemptsError } from '../../src/auth/failed-attempts.js';
import { Authenticator } from '../../src/auth/tokens.js';

function refusal(fn: () => void): TooManyFailedAttemptsError | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    if (err instanceof TooManyFailedAttemptsError) return err;
    throw err;
  }
}

test('an address is refused from its limit until its window ends; others are not', () => {
  let now = 1_000;
  const f = new FailedAttempts({ maxFailures: 3, windowMs: 10_000, now: () => now });
  f.fail('a');
  f.fail('a');
  f.check('a');
  const reached = refusal(() => f.fail('a'));
  assert.ok(reached?.first, 'the failure that reaches the limit is the first refusal');
  const after = refusal(() => f.check('a'));
  assert.equal(after?.first, false);
  assert.equal(after?.code, 'RESOURCE_EXHAUSTED');
  assert.equal(after?.retryAfterMs, 10_000);
  f.check('b');
  now += 10_000;
  f.check('a');
  f.fail('a');
  f.check('a');
});

test('memory is bounded: the least recently failing address is forgotten first', () => {
  const f = new FailedAttempts({ maxFailures: 2, maxAddresses: 100 });
  f.fail('x');
  assert.ok(refusal(() => f.fail('x')), 'x is over its limit');
  for (let i = 0; i < 10_000; i++) f.fail(`10.0.${i >> 8}.${i & 255}`);
  assert.equal(f.size, 100);
  f.check('x'); // forgotten: 10 000 addresses failed after it
});

test('the authenticator counts unknown tokens per address, not a valid token of the other kind', () => {
  const client = 'c'.repeat(32);
  const worker = 'w'.repeat(32);
  const auth = Authenticator.fromTokens({ client: [client], worker: [worker] }, { maxFailures: 2 });
  for (let i = 0; i < 5; i++) assert.throws(() => auth.authorize(`Bearer ${worker}`, ['client'], '10.0.0.1'), { code: 'PERMISSION_DENIED' });
  auth.authorize(`Bearer ${client}`, ['client'], '10.0.0.1');
  assert.throws(() => auth.authorize(undefined, ['client'], '10.0.0.2'), { code: 'UNAUTHENTICATED' });
  assert.throws(() => auth.authorize(`Bearer ${'x'.repeat(32)}`, ['client'], '10.0.0.2'), { code: 'RESOURCE_EXHAUSTED' });
  assert.throws(() => auth.authorize(`Bearer ${client}`, ['client'], '10.0.0.2'), { code: 'RESOURCE_EXHAUSTED' });
  auth.authorize(`Bearer ${client}`, ['client'], '10.0.0.1');
  // Without an address (in-process callers) nothing is counted.
  for (let i = 0; i < 5; i++) assert.throws(() => auth.authorize(undefined, ['client']), { code: 'UNAUTHENTICATED' });
});

test('peer addresses: gRPC peers and socket addresses name the same host alike', () => {
  assert.equal(peerAddress('127.0.0.1:5000'), '127.0.0.1');
  assert.equal(peerAddress('ipv4:10.1.2.3:80'), '10.1.2.3');
  assert.equal(peerAddress('[::1]:5000'), '::1');
  assert.equal(peerAddress('ipv6:[2001:db8::1]:443'), '2001:db8::1');
  assert.equal(peerAddress('::ffff:127.0.0.1'), '127.0.0.1');
  assert.equal(peerAddress('ipv6:[::ffff:10.0.0.7]:5000'), '10.0.0.7');
  assert.equal(peerAddress('[0:0:0:0:0:0:0:1]:5000'), '::1');
  assert.equal(peerAddress('10.0.0.9'), '10.0.0.9');
  assert.equal(peerAddress(undefined), 'unknown');
});

test('an IPv4 host and its IPv4-mapped IPv6 form share one failure budget', () => {
  assert.equal(hostKey('::ffff:127.0.0.1'), '127.0.0.1');
  assert.equal(hostKey('::FFFF:7f00:1'), '127.0.0.1');
  assert.equal(hostKey('0:0:0:0:0:ffff:c0a8:0101'), '192.168.1.1');
  assert.equal(hostKey('2001:DB8:0:0::1'), '2001:db8::1');
  assert.equal(hostKey('::1'), '::1', 'loopback IPv6 is a host of its own');
  assert.equal(hostKey('127.0.0.1'), '127.0.0.1');
  assert.equal(hostKey('unknown'), 'unknown');

  const auth = Authenticator.fromTokens({ client: ['c'.repeat(32)] }, { maxFailures: 4 });
  const bad = `Bearer ${'x'.repeat(32)}`;
  // A dual-stack HTTP socket reports the IPv4 peer mapped; the gRPC door reports it plain.
  for (const from of ['::ffff:127.0.0.1', '127.0.0.1', peerAddress('ipv6:[::ffff:127.0.0.1]:40000')]) {
    assert.throws(() => auth.authorize(bad, ['client'], from), { code: 'UNAUTHENTICATED' });
  }
  assert.throws(() => auth.authorize(bad, ['client'], '::ffff:7f00:1'), { code: 'RESOURCE_EXHAUSTED' }, 'the fourth failure of one host, whatever its form');
  assert.throws(() => auth.authorize(`Bearer ${'c'.repeat(32)}`, ['client'], '127.0.0.1'), { code: 'RESOURCE_EXHAUSTED' });
  auth.authorize(`Bearer ${'c'.repeat(32)}`, ['client'], '::1');
});
