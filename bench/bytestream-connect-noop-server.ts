/**
 * For bench/bytestream-doors, run as its own process: a ByteStream server that stores and hashes nothing,
 * on @connectrpc/connect-node (the gRPC protocol over node:http2) with @bufbuild/protobuf messages, the
 * descriptor of google/bytestream/bytestream.proto built here by hand (six messages, one service). HTTP/2
 * settings as bytestream-h2-noop-server.ts's. Read answers in 256 KiB messages. Prints the port.
 */
import { createServer } from 'node:http2';
import { create, createFileRegistry } from '@bufbuild/protobuf';
import type { DescMessage, DescService, MessageShape } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import type { ConnectRouter } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { H2_CONNECTION_WINDOW_BYTES, H2_MAX_FRAME_BYTES, H2_STREAM_WINDOW_BYTES } from '../src/api/grpc/h2-door.js';
import { DEFAULT_MAX_BATCH_BYTES, maxMessageBytes, READ_CHUNK_BYTES } from '../src/api/grpc/limits.js';
import { parseReadResource } from '../src/api/grpc/resource-names.js';
import { intEnv } from './lib.js';

const [STRING, INT64, BOOL, BYTES] = [9, 3, 8, 12];
const field = (name: string, number: number, type: number) => ({ name, number, type, label: 1, jsonName: name.replace(/_(\w)/g, (_, c: string) => c.toUpperCase()) });
const file = create(FileDescriptorProtoSchema, {
  name: 'google/bytestream/bytestream.proto',
  package: 'google.bytestream',
  syntax: 'proto3',
  messageType: [
    { name: 'ReadRequest', field: [field('resource_name', 1, STRING), field('read_offset', 2, INT64), field('read_limit', 3, INT64)] },
    { name: 'ReadResponse', field: [field('data', 10, BYTES)] },
    { name: 'WriteRequest', field: [field('resource_name', 1, STRING), field('write_offset', 2, INT64), field('finish_write', 3, BOOL), field('data', 10, BYTES)] },
    { name: 'WriteResponse', field: [field('committed_size', 1, INT64)] },
    { name: 'QueryWriteStatusRequest', field: [field('resource_name', 1, STRING)] },
    { name: 'QueryWriteStatusResponse', field: [field('committed_size', 1, INT64), field('complete', 2, BOOL)] },
  ],
  service: [
    {
      name: 'ByteStream',
      method: [
        { name: 'Read', inputType: '.google.bytestream.ReadRequest', outputType: '.google.bytestream.ReadResponse', serverStreaming: true },
        { name: 'Write', inputType: '.google.bytestream.WriteRequest', outputType: '.google.bytestream.WriteResponse', clientStreaming: true },
        { name: 'QueryWriteStatus', inputType: '.google.bytestream.QueryWriteStatusRequest', outputType: '.google.bytestream.QueryWriteStatusResponse' },
      ],
    },
  ],
});
const registry = createFileRegistry(file, () => undefined);
const byteStream = registry.getService('google.bytestream.ByteStream') as DescService;
const writeResponse = registry.getMessage('google.bytestream.WriteResponse') as DescMessage;
const readResponse = registry.getMessage('google.bytestream.ReadResponse') as DescMessage;
const block = new Uint8Array(READ_CHUNK_BYTES).fill(7);
const messageBytes = maxMessageBytes(DEFAULT_MAX_BATCH_BYTES);

interface WriteReq { data: Uint8Array; finishWrite: boolean }
interface ReadReq { resourceName: string }

const routes = (router: ConnectRouter): void => {
  router.service(byteStream, {
    async write(requests: AsyncIterable<WriteReq>) {
      let committed = 0;
      for await (const req of requests) {
        committed += req.data.byteLength;
        if (req.finishWrite) break;
      }
      return create(writeResponse, { committedSize: BigInt(committed) } as never) as MessageShape<DescMessage>;
    },
    async *read(req: ReadReq) {
      const { digest } = parseReadResource(req.resourceName);
      for (let left = digest.sizeBytes; left > 0; left -= READ_CHUNK_BYTES) {
        yield create(readResponse, { data: block.subarray(0, Math.min(READ_CHUNK_BYTES, left)) } as never);
      }
    },
  } as never);
};

const server = createServer(
  { settings: { initialWindowSize: intEnv('BENCH_H2_STREAM_WINDOW', H2_STREAM_WINDOW_BYTES), maxFrameSize: intEnv('BENCH_H2_FRAME', H2_MAX_FRAME_BYTES) }, maxSessionMemory: 64 },
  connectNodeAdapter({ routes, grpc: true, connect: false, grpcWeb: false, readMaxBytes: messageBytes, writeMaxBytes: messageBytes }),
);
server.on('session', (session) => session.setLocalWindowSize(intEnv('BENCH_H2_CONNECTION_WINDOW', H2_CONNECTION_WINDOW_BYTES)));
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  console.log(`listening on 127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`);
});
process.on('SIGTERM', () => process.exit(0));
