/**
 * What the gRPC benches share: a spawned `remex serve` whose gRPC address is known, and real @grpc/grpc-js
 * clients made from the repository's protos, as a REAPI client builds them (see test/api/grpc/harness.ts).
 */
import * as grpc from '@grpc/grpc-js';
import type { ProtoGrpcType as ByteStreamProto } from '../src/api/grpc/generated/bytestream.js';
import type { ProtoGrpcType as HealthProto } from '../src/api/grpc/generated/health.js';
import type { ProtoGrpcType as ReapiProto } from '../src/api/grpc/generated/remote_execution.js';
import type { ActionCacheClient } from '../src/api/grpc/generated/build/bazel/remote/execution/v2/ActionCache.js';
import type { CapabilitiesClient } from '../src/api/grpc/generated/build/bazel/remote/execution/v2/Capabilities.js';
import type { ContentAddressableStorageClient } from '../src/api/grpc/generated/build/bazel/remote/execution/v2/ContentAddressableStorage.js';
import type { ByteStreamClient } from '../src/api/grpc/generated/google/bytestream/ByteStream.js';
import type { HealthClient } from '../src/api/grpc/generated/grpc/health/v1/Health.js';
import type { Digest as DigestMsg } from '../src/api/grpc/messages.js';
import { reapiProtos } from '../src/api/grpc/protos.js';
import type { Digest } from '../src/core/digest.js';
import { digestOf } from '../src/core/digest.js';
import type { ServeProcess } from './lib.js';
import { startServe } from './lib.js';

export const V2 = 'build.bazel.remote.execution.v2';

export interface GrpcServeProcess extends ServeProcess {
  /** host:port of the REAPI door, e.g. `127.0.0.1:40123`. */
  grpcAddress: string;
}

/** startServe, for a server that must run its gRPC door. */
export async function startGrpcServe(args: string[]): Promise<GrpcServeProcess> {
  const serve = await startServe(args);
  const { grpcAddress } = serve;
  if (grpcAddress === undefined) {
    await serve.stop();
    throw new Error('remex serve printed no grpc:// address');
  }
  return { ...serve, grpcAddress };
}

export interface ReapiClients {
  cas: ContentAddressableStorageClient;
  ac: ActionCacheClient;
  caps: CapabilitiesClient;
  bytestream: ByteStreamClient;
  health: HealthClient;
  close(): void;
}

/** Clients sharing one channel (one HTTP/2 connection), as a build tool talking to one server has. */
export function reapiClients(address: string, channelOptions: grpc.ChannelOptions = {}): ReapiClients {
  const loaded = grpc.loadPackageDefinition(reapiProtos().packageDefinition) as unknown as ReapiProto & ByteStreamProto & HealthProto;
  const v2 = loaded.build.bazel.remote.execution.v2;
  const credentials = grpc.credentials.createInsecure();
  const options = { 'grpc.max_receive_message_length': 64 * 1024 * 1024, 'grpc.max_send_message_length': 64 * 1024 * 1024, ...channelOptions };
  const cas = new v2.ContentAddressableStorage(address, credentials, options);
  const channelOverride = cas.getChannel();
  const shared = { ...options, channelOverride };
  const clients = {
    cas,
    ac: new v2.ActionCache(address, credentials, shared),
    caps: new v2.Capabilities(address, credentials, shared),
    bytestream: new loaded.google.bytestream.ByteStream(address, credentials, shared),
    health: new loaded.grpc.health.v1.Health(address, credentials, shared),
  };
  return {
    ...clients,
    close: () => {
      for (const client of Object.values(clients)) client.close();
    },
  };
}

type UnaryMethod<Req, Res> = (req: Req, callback: (err: grpc.ServiceError | null, res?: Res) => void) => unknown;

/** Calls a unary method; rejects with the ServiceError. */
export function call<Req, Res>(client: grpc.Client, method: UnaryMethod<Req, Res>, req: Req): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(client, req, (err, res) => (err ? reject(err) : resolve(res as Res)));
  });
}

export function msg(d: Digest): DigestMsg {
  return { hash: d.hash, size_bytes: d.sizeBytes };
}

export function encode<T>(typeName: string, message: T): Buffer {
  return reapiProtos().codec<T, unknown>(typeName).encode(message);
}

/** Uploads blobs through BatchUpdateBlobs, in batches under the default 4 MiB limit; returns their digests. */
export async function uploadBlobs(cas: ContentAddressableStorageClient, blobs: readonly Buffer[]): Promise<Digest[]> {
  const digests = blobs.map((b) => digestOf(b));
  const limit = 3 * 1024 * 1024;
  for (let i = 0; i < blobs.length; ) {
    const requests: Array<{ digest: DigestMsg; data: Buffer }> = [];
    let bytes = 0;
    while (i < blobs.length && (requests.length === 0 || bytes + (blobs[i] as Buffer).byteLength <= limit)) {
      const data = blobs[i] as Buffer;
      requests.push({ digest: msg(digests[i] as Digest), data });
      bytes += data.byteLength;
      i++;
    }
    const res = await call(cas, cas.batchUpdateBlobs, { requests });
    for (const r of res.responses) if (r.status?.code !== 0) throw new Error(`upload failed: ${r.status?.message}`);
  }
  return digests;
}

export interface LoadFigures {
  /** Round trip of every call, ms. */
  latencies: number[];
  /** Calls answered per second over the whole run. */
  rate: number;
}

/** `total` calls of `run`, `inFlight` at a time: each call's round trip and the overall rate. */
export async function underLoad(run: () => Promise<unknown>, total: number, inFlight: number): Promise<LoadFigures> {
  const latencies: number[] = [];
  let left = total;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (left-- > 0) {
        const t = performance.now();
        await run();
        latencies.push(performance.now() - t);
      }
    }),
  );
  return { latencies, rate: total / ((performance.now() - start) / 1000) };
}

export function mb(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(0)} MiB`;
}

export function mbps(bytes: number, ms: number): string {
  return `${(bytes / (1024 * 1024) / (ms / 1000)).toFixed(0)} MiB/s`;
}
