/**
 * The request adapters of handlers.ts, through a real grpc-js server and client: a handler that answers
 * before its client stops sending (ByteStream Write does, at finish_write or for a blob already stored)
 * still answers it, and a call's AbortSignal fires only for a cancellation the handler could still act
 * on, never for the 'cancelled' grpc-js emits at the end of every answered call (checked: without the
 * adapter's settle both quiet-signal tests fail).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import type { CallContext } from '../../../src/api/grpc/handlers.js';
import { clientStreaming, rawRequests, serverStreaming } from '../../../src/api/grpc/handlers.js';
import type { ReadRequestOut, WriteRequestOut, WriteResponse } from '../../../src/api/grpc/messages.js';
import { reapiProtos } from '../../../src/api/grpc/protos.js';
import type { ByteStreamClient } from '../../../src/api/grpc/generated/google/bytestream/ByteStream.js';
import type { ProtoGrpcType as ByteStreamProto } from '../../../src/api/grpc/generated/bytestream.js';
import { eventually } from '../../helpers/processes.js';

const logger = pino({ level: 'silent' });

/** What each handler saw, for the test that made the call. */
interface Seen {
  ctx: CallContext;
  requests: number;
  /** Resolves once the handler has answered. */
  answered: Promise<void>;
}

let server: grpc.Server;
let client: ByteStreamClient;
const seen: Seen[] = [];
/** Read with resource name "hold" waits on `release` after its first message, so a test can cancel it mid-stream. */
const held: { release?: () => void } = {};

function track(ctx: CallContext): { entry: Seen; done(): void } {
  // Made during the call, as a handler that listens for cancellation makes it.
  void ctx.signal;
  let done!: () => void;
  const entry: Seen = { ctx, requests: 0, answered: new Promise((res) => (done = res)) };
  seen.push(entry);
  return { entry, done };
}

describe('gRPC request adapters', () => {
  before(async () => {
    server = new grpc.Server();
    const raw = rawRequests(reapiProtos().service('google.bytestream.ByteStream'), 'google.bytestream.ByteStream');
    server.addService(raw.definition, {
      // Answers after the first request, whatever the client still sends.
      Write: clientStreaming(raw.decoder('Write'), 'WriteRequest', logger, async (requests: AsyncIterable<WriteRequestOut>, ctx): Promise<WriteResponse> => {
        const { entry, done } = track(ctx);
        try {
          for await (const req of requests) {
            entry.requests++;
            return { committed_size: req.data.byteLength };
          }
          return { committed_size: 0 };
        } finally {
          done();
        }
      }),
      // Sends one message; with resource name "hold", waits for the test before a second.
      Read: serverStreaming(raw.decoder('Read'), 'ReadRequest', logger, async (req: ReadRequestOut, sink, ctx) => {
        const { entry, done } = track(ctx);
        try {
          entry.requests++;
          await sink.send({ data: Buffer.from('first') });
          if (req.resource_name === 'hold') {
            await new Promise<void>((res) => (held.release = res));
            await sink.send({ data: Buffer.from('second') });
          }
        } finally {
          done();
        }
      }),
    });
    const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? rej(err) : res(p))));
    const loaded = grpc.loadPackageDefinition(reapiProtos().packageDefinition) as unknown as ByteStreamProto;
    client = new loaded.google.bytestream.ByteStream(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });
  after(() => {
    client.close();
    server.forceShutdown();
  });

  test('a client-streaming handler that answers early: the client gets the answer, the signal stays quiet', async () => {
    seen.length = 0;
    let sendMore!: () => void;
    const response = new Promise<WriteResponse>((res, rej) => {
      const call = client.Write((err, r) => (err ? rej(err) : res(r as WriteResponse)));
      call.write({ resource_name: 'uploads/x/blobs/0/0', data: Buffer.from('abc') });
      // More messages after the handler has answered, then a half-close: grpc-js drains them.
      sendMore = () => {
        call.write({ data: Buffer.alloc(64 * 1024, 1) });
        call.write({ data: Buffer.alloc(64 * 1024, 2) });
        call.end();
      };
    });
    const entry = await eventually(async () => seen[0], 10_000, 'the Write handler to start');
    await entry.answered;
    sendMore();
    assert.equal(Number((await response).committed_size), 3);
    assert.equal(entry.requests, 1);
    // grpc-js emits 'cancelled' at the end of the call; the handler, having answered, hears nothing.
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(entry.ctx.signal.aborted, false);
  });

  test('a server-streaming call that ends normally leaves its signal quiet', async () => {
    seen.length = 0;
    const messages: unknown[] = [];
    await new Promise<void>((res, rej) => {
      const call = client.Read({ resource_name: 'once' });
      call.on('data', (m: unknown) => messages.push(m));
      call.on('error', rej);
      call.on('end', () => res());
    });
    assert.equal(messages.length, 1);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal((seen[0] as Seen).ctx.signal.aborted, false);
  });

  test('a server-streaming call the client cancels mid-stream aborts its signal', async () => {
    seen.length = 0;
    delete held.release;
    const call = client.Read({ resource_name: 'hold' });
    const ended = new Promise<grpc.ServiceError | undefined>((res) => {
      call.on('data', () => undefined);
      call.on('error', (err: grpc.ServiceError) => res(err));
      call.on('end', () => res(undefined));
    });
    const release = await eventually(async () => held.release, 10_000, 'Read to hold after its first message');
    const entry = seen[0] as Seen;
    const aborted = new Promise<void>((res) => entry.ctx.signal.addEventListener('abort', () => res(), { once: true }));
    call.cancel();
    assert.equal((await ended)?.code, grpc.status.CANCELLED);
    await aborted;
    assert.equal(entry.ctx.signal.aborted, true);
    release();
    await entry.answered;
  });
});
