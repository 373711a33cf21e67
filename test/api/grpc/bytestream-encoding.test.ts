/**
 * ByteStream Read's hand-encoded ReadResponse must be the bytes protobuf itself writes, for every length
 * class of the varint in front of the data.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeReadResponse } from '../../../src/api/grpc/bytestream-service.js';
import type { ReadResponse, ReadResponseOut } from '../../../src/api/grpc/messages.js';
import { reapiProtos } from '../../../src/api/grpc/protos.js';

test('encodeReadResponse writes what protobuf writes and decodes back to the same data', () => {
  const codec = reapiProtos().codec<ReadResponse, ReadResponseOut>('google.bytestream.ReadResponse');
  for (const size of [0, 1, 127, 128, 300, 16_383, 16_384, 262_144, 2_097_155]) {
    const data = Buffer.alloc(size);
    for (let i = 0; i < size; i++) data[i] = (i * 31 + size) & 0xff;
    const bytes = encodeReadResponse(data.subarray(0)).bytes;
    assert.deepEqual(bytes, codec.encode({ data }), `size ${size}`);
    assert.deepEqual(Buffer.from(codec.decode(bytes).data), data, `size ${size}`);
  }
});
