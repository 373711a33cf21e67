/** Raw gRPC calls of any method of the loaded protos, with bytes as they are (security and fuzz tests). */
import * as grpc from '@grpc/grpc-js';
import { reapiProtos } from '../../src/api/grpc/protos.js';

export interface GrpcMethod {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
}

/** Every method of every service in the loaded protos (served or not). */
export function protoMethods(): GrpcMethod[] {
  const methods: GrpcMethod[] = [];
  for (const definition of Object.values(reapiProtos().packageDefinition)) {
    if ('format' in definition) continue; // a message or enum type
    for (const m of Object.values(definition as Record<string, Partial<GrpcMethod>>)) {
      if (typeof m.path === 'string') methods.push({ path: m.path, requestStream: m.requestStream === true, responseStream: m.responseStream === true });
    }
  }
  return methods;
}

/**
 * Calls a method with `request` (empty by default; the one message of a client stream); resolves with its
 * status code, or 'served' when a streaming method answers data (the call is then cancelled).
 */
export function callRaw(client: grpc.Client, m: GrpcMethod, metadata: grpc.Metadata, request: Buffer = Buffer.alloc(0), timeoutMs = 20_000): Promise<grpc.status | 'served'> {
  const id = (b: Buffer): Buffer => b;
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve) => {
    const done = (err: grpc.ServiceError | null): void => resolve(err ? err.code : grpc.status.OK);
    if (!m.requestStream && !m.responseStream) {
      client.makeUnaryRequest(m.path, id, id, request, metadata, { deadline }, done);
    } else if (!m.requestStream) {
      const call = client.makeServerStreamRequest(m.path, id, id, request, metadata, { deadline });
      call.on('data', () => {
        resolve('served');
        call.cancel();
      });
      call.on('error', (err: grpc.ServiceError) => resolve(err.code));
      call.on('end', () => resolve(grpc.status.OK));
    } else if (!m.responseStream) {
      const call = client.makeClientStreamRequest(m.path, id, id, metadata, { deadline }, done);
      call.write(request);
      call.end();
    } else {
      const call = client.makeBidiStreamRequest(m.path, id, id, metadata, { deadline });
      call.on('data', () => {
        resolve('served');
        call.cancel();
      });
      call.on('error', (err: grpc.ServiceError) => resolve(err.code));
      call.on('end', () => resolve(grpc.status.OK));
      call.end();
    }
  });
}

export function bearerMetadata(token?: string): grpc.Metadata {
  const md = new grpc.Metadata();
  if (token !== undefined) md.set('authorization', `Bearer ${token}`);
  return md;
}

