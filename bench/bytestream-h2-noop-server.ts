/**
 * For bench/bytestream-doors, run as its own process: a ByteStream server that stores and hashes nothing,
 * on node:http2 with gRPC's framing by hand (src/api/grpc/h2-framing.ts), requests decoded by the same
 * protobufjs decoders as remex's door, Read answered in messages of the same size and encoding as
 * bytestream-noop-server.ts (grpc-js). Its HTTP/2 windows and frame size come from the environment
 * (BENCH_H2_STREAM_WINDOW, BENCH_H2_CONNECTION_WINDOW, BENCH_H2_FRAME), so the bench can compare settings.
 * Prints the port it listens on.
 */
import { createServer, constants } from 'node:http2';
import type { ServerHttp2Stream } from 'node:http2';
import { encodeReadResponse } from '../src/api/grpc/bytestream-service.js';
import { H2_CONNECTION_WINDOW_BYTES, H2_MAX_FRAME_BYTES, H2_STREAM_WINDOW_BYTES } from '../src/api/grpc/h2-door.js';
import { encodeGrpcMessage, MessageDecoder, writeMessage } from '../src/api/grpc/h2-framing.js';
import { rawRequests } from '../src/api/grpc/handlers.js';
import { DEFAULT_MAX_BATCH_BYTES, maxMessageBytes, READ_CHUNK_BYTES } from '../src/api/grpc/limits.js';
import type { ReadRequestOut, WriteRequestOut } from '../src/api/grpc/messages.js';
import { reapiProtos } from '../src/api/grpc/protos.js';
import { parseReadResource } from '../src/api/grpc/resource-names.js';
import { intEnv } from './lib.js';

const messageBytes = maxMessageBytes(DEFAULT_MAX_BATCH_BYTES);
const service = reapiProtos().service('google.bytestream.ByteStream') as unknown as Record<string, { responseSerialize(v: unknown): Buffer }>;
const raw = rawRequests(reapiProtos().service('google.bytestream.ByteStream'), 'google.bytestream.ByteStream');
const decodeWrite = raw.decoder('Write');
const decodeRead = raw.decoder('Read');
const block = Buffer.alloc(READ_CHUNK_BYTES, 7);
const streamWindow = intEnv('BENCH_H2_STREAM_WINDOW', H2_STREAM_WINDOW_BYTES);
const connectionWindow = intEnv('BENCH_H2_CONNECTION_WINDOW', H2_CONNECTION_WINDOW_BYTES);
const frame = intEnv('BENCH_H2_FRAME', H2_MAX_FRAME_BYTES);

function finish(stream: ServerHttp2Stream, code: number, message: string, reply?: Buffer): void {
  if (stream.destroyed) return;
  if (!stream.headersSent) stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
  stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': String(code), 'grpc-message': encodeGrpcMessage(message) }));
  if (reply) writeMessage(stream, reply);
  stream.end();
}

function write(stream: ServerHttp2Stream): void {
  const decoder = new MessageDecoder(messageBytes);
  let committed = 0;
  let done = false;
  stream.on('data', (chunk: Buffer) => {
    if (done) return;
    for (const bytes of decoder.push(chunk)) {
      const req = decodeWrite(bytes) as WriteRequestOut;
      committed += req.data.byteLength;
      if (req.finish_write) {
        done = true;
        finish(stream, 0, '', service.Write?.responseSerialize({ committed_size: committed }));
        return;
      }
    }
  });
}

function read(stream: ServerHttp2Stream): void {
  const decoder = new MessageDecoder(messageBytes);
  const got: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => got.push(...decoder.push(chunk)));
  stream.once('end', () => {
    const req = decodeRead(got[0] as Buffer) as ReadRequestOut;
    const { digest } = parseReadResource(req.resource_name);
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    let left = digest.sizeBytes;
    const pump = (): void => {
      while (left > 0) {
        const n = Math.min(READ_CHUNK_BYTES, left);
        left -= n;
        if (!writeMessage(stream, encodeReadResponse(block.subarray(0, n)).bytes)) return void stream.once('drain', pump);
      }
      finish(stream, 0, '');
    };
    pump();
  });
}

const server = createServer({ settings: { initialWindowSize: streamWindow, maxFrameSize: frame }, maxSessionMemory: 64 });
server.on('session', (session) => session.setLocalWindowSize(connectionWindow));
server.on('stream', (stream, headers) => {
  const path = headers[constants.HTTP2_HEADER_PATH];
  if (path === '/google.bytestream.ByteStream/Write') write(stream);
  else if (path === '/google.bytestream.ByteStream/Read') read(stream);
  else finish(stream, 12, `no method ${String(path)}`);
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  console.log(`listening on 127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`);
});
process.on('SIGTERM', () => process.exit(0));
