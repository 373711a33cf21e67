/**
 * gRPC's framing by hand (h2-framing.ts): messages cut anywhere across chunks come out whole, one inside a
 * chunk comes out as a view of it — and so does a WriteRequest's data decoded from it (no copy on the
 * upload path) — an oversize prefix is refused before its body arrives, and grpc-timeout's units.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MessageDecoder, parseTimeout } from '../../../src/api/grpc/h2-framing.js';
import { rawRequests } from '../../../src/api/grpc/handlers.js';
import type { WriteRequestOut } from '../../../src/api/grpc/messages.js';
import { reapiProtos } from '../../../src/api/grpc/protos.js';
import { isRemexError } from '../../../src/core/errors.js';

function frame(bytes: Buffer): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(bytes.byteLength, 1);
  return Buffer.concat([prefix, bytes]);
}

describe('gRPC framing on node:http2', () => {
  test('messages split at every byte boundary come out whole and in order', () => {
    const messages = [Buffer.from('a'), Buffer.alloc(0), Buffer.alloc(300, 7), Buffer.from('last')];
    const wire = Buffer.concat(messages.map(frame));
    for (let cut = 1; cut < wire.byteLength; cut++) {
      const decoder = new MessageDecoder(1024);
      const out = [...decoder.push(wire.subarray(0, cut)), ...decoder.push(wire.subarray(cut))];
      assert.deepEqual(out, messages, `cut at ${cut}`);
      assert.equal(decoder.partial, false);
    }
    const decoder = new MessageDecoder(1024);
    decoder.push(wire.subarray(0, 7));
    assert.equal(decoder.partial, true);
  });

  test("a WriteRequest inside one chunk is decoded with its data a view of the chunk's memory", () => {
    const service = reapiProtos().service('google.bytestream.ByteStream');
    const encoded = service.Write?.requestSerialize({ resource_name: 'uploads/u/blobs/x/4', write_offset: 0, data: Buffer.alloc(4096, 3), finish_write: true }) as Buffer;
    const chunk = frame(encoded);
    const [message] = new MessageDecoder(1 << 20).push(chunk);
    const req = rawRequests(service, 'google.bytestream.ByteStream').decoder('Write')(message as Buffer) as WriteRequestOut;
    assert.equal(req.data.byteLength, 4096);
    assert.equal(req.data.buffer, chunk.buffer);
  });

  test('a prefix over the limit is RESOURCE_EXHAUSTED before its body arrives; an unknown flag is INTERNAL', () => {
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(1025, 1);
    assert.throws(() => new MessageDecoder(1024).push(prefix), (err) => isRemexError(err) && err.code === 'RESOURCE_EXHAUSTED');
    assert.throws(() => new MessageDecoder(1024).push(Buffer.from([2, 0, 0, 0, 0])), (err) => isRemexError(err) && err.code === 'INTERNAL');
  });

  test('grpc-timeout in each unit; malformed ones are ignored', () => {
    assert.equal(parseTimeout('2H'), 7_200_000);
    assert.equal(parseTimeout('3M'), 180_000);
    assert.equal(parseTimeout('5S'), 5_000);
    assert.equal(parseTimeout('250m'), 250);
    assert.equal(parseTimeout('1500u'), 1.5);
    assert.equal(parseTimeout('2000000n'), 2);
    for (const bad of [undefined, '', '5', 'S', '123456789S', '-1S', '5x']) assert.equal(parseTimeout(bad), undefined, String(bad));
  });
});
