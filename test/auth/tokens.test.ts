/** Token files, the token check, loopback detection and log redaction. */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import pino from 'pino';
import { Authenticator, isLoopbackHost, parseTokenList, parseTokens } from '../../src/auth/tokens.js';
import { isRemexError } from '../../src/core/errors.js';
import { REDACT_PATHS } from '../../src/server/logger.js';

const A = 'a'.repeat(32);
const B = 'b'.repeat(32);
const W = 'w'.repeat(32);

function codeOf(fn: () => void): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    assert.ok(isRemexError(err), String(err));
    return err.code;
  }
}

test('token files: one token per line, # comments and blank lines ignored, CRLF and spaces trimmed', () => {
  assert.deepEqual(parseTokens(`# comment\n\n  ${A}  \r\n${B}\n   # indented comment\n`, 'f'), [A, B]);
  assert.deepEqual(parseTokens('', 'f'), []);
  assert.deepEqual(parseTokenList(` ${A}, ${B}\n${W} `, 'ENV'), [A, B, W]);
});

test('a bad token is reported by line, never echoed', () => {
  for (const bad of ['too-short', 'has a space inside it here', `${A}\u00e9`]) {
    try {
      parseTokens(`# x\n${bad}\n`, 'tokens.txt');
      assert.fail('accepted');
    } catch (err) {
      assert.match((err as Error).message, /^tokens\.txt line 2: a token must be/);
      assert.ok(!(err as Error).message.includes(bad));
    }
  }
});

test('open authenticator lets everything through', () => {
  const open = Authenticator.open();
  assert.equal(open.enabled, false);
  assert.equal(codeOf(() => open.authorize(undefined, ['worker'])), undefined);
});

test('tokens: 401 without or with an unknown token, 403 for the wrong kind, both kinds when listed twice', () => {
  const auth = Authenticator.fromTokens({ client: [A, B], worker: [W, B] });
  assert.deepEqual(auth.counts, { client: 2, worker: 2 });
  assert.equal(codeOf(() => auth.authorize(undefined, ['client'])), 'UNAUTHENTICATED');
  assert.equal(codeOf(() => auth.authorize(`Basic ${A}`, ['client'])), 'UNAUTHENTICATED');
  assert.equal(codeOf(() => auth.authorize('Bearer ', ['client'])), 'UNAUTHENTICATED');
  assert.equal(codeOf(() => auth.authorize(`Bearer ${'x'.repeat(32)}`, ['client'])), 'UNAUTHENTICATED');
  assert.equal(codeOf(() => auth.authorize(`Bearer ${A}x`, ['client'])), 'UNAUTHENTICATED');
  assert.equal(codeOf(() => auth.authorize(`Bearer ${A}`, ['client'])), undefined);
  assert.equal(codeOf(() => auth.authorize(`bearer  ${A}`, ['client'])), undefined);
  assert.equal(codeOf(() => auth.authorize([`Bearer ${A}`], ['client'])), undefined);
  assert.equal(codeOf(() => auth.authorize(`Bearer ${A}`, ['worker'])), 'PERMISSION_DENIED');
  assert.equal(codeOf(() => auth.authorize(`Bearer ${W}`, ['client'])), 'PERMISSION_DENIED');
  assert.equal(codeOf(() => auth.authorize(`Bearer ${W}`, ['client', 'worker'])), undefined);
  assert.deepEqual([...auth.scopesOf(B)].sort(), ['client', 'worker']);
  const clientsOnly = Authenticator.fromTokens({ client: [A] });
  assert.equal(codeOf(() => clientsOnly.authorize(`Bearer ${A}`, ['worker'])), 'PERMISSION_DENIED', 'no worker token: no worker');
  assert.throws(() => Authenticator.fromTokens({}), /at least one token/);
});

test('errors never carry the token', () => {
  const auth = Authenticator.fromTokens({ client: [A], worker: [W] });
  for (const header of [`Bearer ${W}`, `Bearer ${B}`, `Token ${A}`]) {
    try {
      auth.authorize(header, ['client']);
      assert.fail('authorized');
    } catch (err) {
      for (const t of [A, B, W]) assert.ok(!(err as Error).message.includes(t));
    }
  }
});

test('loopback hosts', () => {
  for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1', 'LOCALHOST']) assert.ok(isLoopbackHost(h), h);
  for (const h of ['0.0.0.0', '::', '10.0.0.1', '192.168.1.2', 'example.com', '128.0.0.1']) assert.ok(!isLoopbackHost(h), h);
});

test('the logger redacts authorization headers and token fields', () => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  const logger = pino({ redact: REDACT_PATHS }, sink);
  logger.info({ req: { headers: { authorization: `Bearer ${A}` } } }, 'one');
  logger.info({ headers: { authorization: `Bearer ${A}` }, token: A, auth: { token: A, tokens: [A] } }, 'two');
  logger.info({ upgrade: { headers: { authorization: `Bearer ${A}` } }, metadata: { authorization: `Bearer ${A}` } }, 'three');
  assert.equal(lines.length, 3);
  for (const line of lines) {
    assert.ok(!line.includes(A), line);
    assert.match(line, /\[Redacted\]/);
  }
});
