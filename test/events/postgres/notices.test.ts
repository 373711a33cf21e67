/**
 * The PostgreSQL bus's notices on their own: every payload fits PostgreSQL's limit whatever the event, a
 * log chunk cut to fit keeps its bytes and offsets, a job notice keeps the shape earlier releases read,
 * and what is not a valid notice decodes to nothing.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { MAX_EVENT_ID_CHARS, MAX_LOG_CHUNK_BYTES, MAX_PROGRESS_MESSAGE_CHARS, MAX_PROGRESS_METRICS } from '../../../src/events/bus-events.js';
import type { LogEvent } from '../../../src/events/bus-events.js';
import { decodeNotice, encodeEvent, encodeJobNotice, MAX_PAYLOAD_BYTES } from '../../../src/events/postgres/notices.js';
import { joined, log, progress, worker } from '../event-bus-conformance.js';

const ORIGIN = '6f1c2a52-6c5e-4a38-9d5e-1a1b2c3d4e5f';
const LONG_ID = 'j'.repeat(MAX_EVENT_ID_CHARS);

test('a log chunk of the largest size, with the longest id, is cut into payloads that fit and decode to the same bytes', () => {
  const data = randomBytes(MAX_LOG_CHUNK_BYTES);
  const payloads = encodeEvent(ORIGIN, log(LONG_ID, Number.MAX_SAFE_INTEGER - MAX_LOG_CHUNK_BYTES, data));
  assert.ok(payloads && payloads.length > 1);
  for (const payload of payloads) assert.ok(Buffer.byteLength(payload) <= MAX_PAYLOAD_BYTES, `${Buffer.byteLength(payload)} bytes`);
  const events = payloads.map((payload) => {
    const decoded = decodeNotice(payload);
    assert.equal(decoded?.type, 'event');
    assert.equal(decoded.origin, ORIGIN);
    assert.equal(decoded.event.kind, 'log');
    return decoded.event;
  });
  assert.ok(joined(events as LogEvent[], Number.MAX_SAFE_INTEGER - MAX_LOG_CHUNK_BYTES).equals(data));
});

test('a small log chunk is one payload', () => {
  assert.equal(encodeEvent(ORIGIN, log('j', 0, Buffer.from('hello')))?.length, 1);
});

test('a progress event at its bounds, in the widest characters, fits one payload and decodes unchanged', () => {
  const metrics = Object.fromEntries(Array.from({ length: MAX_PROGRESS_METRICS }, (_, i) => [`m${i}`.padEnd(64, 'x'), -1.25e-300]));
  const event = progress(LONG_ID, 99.999, { message: '\u0001'.repeat(MAX_PROGRESS_MESSAGE_CHARS), metrics, atMs: Number.MAX_SAFE_INTEGER });
  const payloads = encodeEvent(ORIGIN, event);
  assert.equal(payloads?.length, 1);
  const decoded = decodeNotice(payloads[0] as string);
  assert.equal(decoded?.type, 'event');
  assert.deepEqual(decoded.event, event);
});

test('a worker event round-trips', () => {
  const event = worker('worker-1', 'draining');
  const decoded = decodeNotice((encodeEvent(ORIGIN, event) ?? [])[0] ?? '');
  assert.deepEqual(decoded, { type: 'event', origin: ORIGIN, event });
});

test('a job notice keeps the shape earlier releases read', () => {
  const payload = encodeJobNotice({ o: ORIGIN, id: 'job-1', s: 'queued', p: 'x86_64-linux-cpu' });
  assert.deepEqual(JSON.parse(payload ?? ''), { o: ORIGIN, id: 'job-1', s: 'queued', p: 'x86_64-linux-cpu' });
  assert.deepEqual(decodeNotice(payload ?? ''), { type: 'job', origin: ORIGIN, id: 'job-1', state: 'queued', platform: 'x86_64-linux-cpu', sentAtMs: undefined });
  // The publish time (for the bus's lag) is one more field, which earlier releases' readers ignore.
  const timed = encodeJobNotice({ o: ORIGIN, id: 'job-1', s: 'running', t: 1_700_000_000_123 });
  assert.deepEqual(decodeNotice(timed ?? ''), { type: 'job', origin: ORIGIN, id: 'job-1', state: 'running', platform: undefined, sentAtMs: 1_700_000_000_123 });
  assert.equal(encodeJobNotice({ o: ORIGIN, id: 'j'.repeat(MAX_PAYLOAD_BYTES), s: 'queued' }), undefined);
});

test('what is not a remex notice, or of a kind this release does not know, decodes to nothing', () => {
  for (const payload of ['', 'null', '42', '[]', '{"id":"no origin"}', `{"o":"${ORIGIN}"}`, `{"o":"${ORIGIN}","k":"job","id":"j"}`, `{"o":"${ORIGIN}","k":"weather","jobId":"j"}`]) {
    assert.equal(decodeNotice(payload), undefined, payload);
  }
});

test('a notice of a known kind that fails its checks decodes as invalid, with the reason', () => {
  for (const [payload, reason] of [
    [`{"o":"${ORIGIN}","k":"log","jobId":"j","attempt":1,"stream":"stdout","offset":0,"data":42,"atMs":1}`, /base64/],
    [`{"o":"${ORIGIN}","k":"log","jobId":"j","attempt":1,"stream":"stdout","offset":0,"data":"","atMs":1}`, /data must be/],
    [`{"o":"${ORIGIN}","k":"progress","jobId":"j","attempt":1,"percent":500,"atMs":1}`, /percent/],
    [`{"o":"${ORIGIN}","k":"worker","workerId":"w","state":"asleep","atMs":1}`, /state must be/],
  ] as const) {
    const decoded = decodeNotice(payload);
    assert.equal(decoded?.type, 'invalid', payload);
    assert.match(decoded.reason, reason);
  }
});
