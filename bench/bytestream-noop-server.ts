/**
 * For bench/grpc-bytestream, run as its own process: a ByteStream service that stores and hashes nothing,
 * set up as `remex serve`'s is (the same request adapters, message limits and HTTP/2 receive windows, Read
 * answered in messages of the same size, encoded the same way). What the bench's client moves through it
 * is what grpc-js itself moves between two processes here: the ceiling for any grpc-js server, remex's
 * included. Write counts the bytes of each call; Read sends the size its resource name gives. Prints the
 * port it listens on.
 */
import { Server, ServerCredentials } from '@grpc/grpc-js';
import pino from 'pino';
import { encodeReadResponse } from '../src/api/grpc/bytestream-service.js';
import { applyReceiveWindows } from '../src/api/grpc/grpc-server.js';
import { clientStreaming, rawRequests, serverStreaming } from '../src/api/grpc/handlers.js';
import type { ResponseSink } from '../src/api/grpc/handlers.js';
import { DEFAULT_MAX_BATCH_BYTES, maxMessageBytes, READ_CHUNK_BYTES } from '../src/api/grpc/limits.js';
import type { ReadRequestOut, WriteRequestOut, WriteResponse } from '../src/api/grpc/messages.js';
import { reapiProtos } from '../src/api/grpc/protos.js';
import { parseReadResource } from '../src/api/grpc/resource-names.js';

const logger = pino({ level: 'silent' });
const messageBytes = maxMessageBytes(DEFAULT_MAX_BATCH_BYTES);
const server = new Server({ 'grpc.enable_channelz': 0, 'grpc.max_receive_message_length': messageBytes, 'grpc.max_send_message_length': messageBytes });
const raw = rawRequests(reapiProtos().service('google.bytestream.ByteStream'), 'google.bytestream.ByteStream');
const block = Buffer.alloc(READ_CHUNK_BYTES, 7);

async function write(requests: AsyncIterable<WriteRequestOut>): Promise<WriteResponse> {
  let committed = 0;
  for await (const req of requests) {
    committed += req.data.byteLength;
    if (req.finish_write) break;
  }
  return { committed_size: committed };
}

async function read(req: ReadRequestOut, sink: ResponseSink<unknown>): Promise<void> {
  const { digest } = parseReadResource(req.resource_name);
  for (let left = digest.sizeBytes; left > 0; left -= READ_CHUNK_BYTES) {
    await sink.send(encodeReadResponse(block.subarray(0, Math.min(READ_CHUNK_BYTES, left))));
  }
}

server.addService(raw.definition, {
  Write: clientStreaming(raw.decoder('Write'), 'WriteRequest', logger, write),
  Read: serverStreaming(raw.decoder('Read'), 'ReadRequest', logger, read),
});
server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  applyReceiveWindows(server, logger);
  console.log(`listening on 127.0.0.1:${port}`);
});
process.on('SIGTERM', () => server.forceShutdown());
