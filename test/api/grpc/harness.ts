/**
 * A real remex server (SQLite, filesystem CAS, bubblewrap workers unless `workerSlots: 0`) with the REAPI
 * gRPC door on a free port, and real @grpc/grpc-js clients made from the same protos, as a REAPI client
 * would use them. Helpers upload blobs, build input trees and actions the way a client does.
 */
import Database from 'better-sqlite3';
import { unlinkSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import type { GrpcServerOptions, RunningGrpcServer } from '../../../src/api/grpc/grpc-server.js';
import { startGrpcServer } from '../../../src/api/grpc/grpc-server.js';
import type { ProtoGrpcType as ByteStreamProto } from '../../../src/api/grpc/generated/bytestream.js';
import type { ProtoGrpcType as HealthProto } from '../../../src/api/grpc/generated/health.js';
import type { ProtoGrpcType as ReapiProto } from '../../../src/api/grpc/generated/remote_execution.js';
import type { ActionCacheClient } from '../../../src/api/grpc/generated/build/bazel/remote/execution/v2/ActionCache.js';
import type { CapabilitiesClient } from '../../../src/api/grpc/generated/build/bazel/remote/execution/v2/Capabilities.js';
import type { ContentAddressableStorageClient } from '../../../src/api/grpc/generated/build/bazel/remote/execution/v2/ContentAddressableStorage.js';
import type { ExecutionClient } from '../../../src/api/grpc/generated/build/bazel/remote/execution/v2/Execution.js';
import type { ByteStreamClient } from '../../../src/api/grpc/generated/google/bytestream/ByteStream.js';
import type { HealthClient } from '../../../src/api/grpc/generated/grpc/health/v1/Health.js';
import type {
  Action,
  ActionResultOut,
  AnyOut,
  Command,
  Digest as DigestMsg,
  ExecuteOperationMetadataOut,
  ExecuteResponseOut,
  OperationOut,
  PreconditionFailureOut,
  StatusOut,
} from '../../../src/api/grpc/messages.js';
import { reapiProtos } from '../../../src/api/grpc/protos.js';
import { PACK_FILE } from '../../../src/cas/fs/small-blob-pack.js';
import { DEFAULT_POLICY } from '../../../src/server/server.js';
import type { ServeOptions } from '../../../src/server/server.js';
import { encodeDirectory } from '../../../src/cas/directory-codec.js';
import type { Digest } from '../../../src/core/digest.js';
import { digestOf } from '../../../src/core/digest.js';
import type { Directory } from '../../../src/core/model.js';
import { startTestServer } from '../../helpers/server.js';
import type { TestServer } from '../../helpers/server.js';

export const V2 = 'build.bazel.remote.execution.v2';

export interface ReapiClients {
  cas: ContentAddressableStorageClient;
  ac: ActionCacheClient;
  exec: ExecutionClient;
  caps: CapabilitiesClient;
  bytestream: ByteStreamClient;
  health: HealthClient;
  /** A bare client for calls with hand-made bytes. */
  raw: grpc.Client;
}

export interface GrpcHarness {
  ts: TestServer;
  grpc: RunningGrpcServer;
  address: string;
  clients: ReapiClients;
  close(): Promise<void>;
}

export async function startGrpcHarness(grpcOpts: Partial<GrpcServerOptions> = {}, serve: Partial<ServeOptions> = {}): Promise<GrpcHarness> {
  const ts = await startTestServer(serve);
  const server = await startGrpcServer({
    scheduler: ts.server.scheduler,
    blobs: ts.server.blobs,
    actionCache: ts.server.actionCache,
    policy: DEFAULT_POLICY,
    logger: pino({ level: process.env.REMEX_TEST_LOG ?? 'silent' }),
    host: '127.0.0.1',
    port: 0,
    ...grpcOpts,
  });
  const address = `127.0.0.1:${server.port}`;
  const loaded = grpc.loadPackageDefinition(reapiProtos().packageDefinition) as unknown as ReapiProto & ByteStreamProto & HealthProto;
  const v2 = loaded.build.bazel.remote.execution.v2;
  const credentials = grpc.credentials.createInsecure();
  const clientOptions = { 'grpc.max_receive_message_length': 64 * 1024 * 1024, 'grpc.max_send_message_length': 64 * 1024 * 1024 };
  const clients: ReapiClients = {
    cas: new v2.ContentAddressableStorage(address, credentials, clientOptions),
    ac: new v2.ActionCache(address, credentials, clientOptions),
    exec: new v2.Execution(address, credentials, clientOptions),
    caps: new v2.Capabilities(address, credentials, clientOptions),
    bytestream: new loaded.google.bytestream.ByteStream(address, credentials, clientOptions),
    health: new loaded.grpc.health.v1.Health(address, credentials, clientOptions),
    raw: new grpc.Client(address, credentials, clientOptions),
  };
  return {
    ts,
    grpc: server,
    address,
    clients,
    close: async () => {
      for (const client of Object.values(clients)) client.close();
      await server.close();
      await ts.close();
    },
  };
}

// ---- calls ---------------------------------------------------------------------------------------------

type UnaryMethod<Req, Res> = (req: Req, callback: (err: grpc.ServiceError | null, res?: Res) => void) => unknown;

/** Calls a unary method; rejects with the ServiceError. */
export function call<Req, Res>(client: grpc.Client, method: UnaryMethod<Req, Res>, req: Req): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(client, req, (err, res) => (err ? reject(err) : resolve(res as Res)));
  });
}

/** Every message of a server stream; rejects with the ServiceError (the messages so far in `received`). */
export function collect<T>(stream: grpc.ClientReadableStream<T>): Promise<T[]> {
  const received: T[] = [];
  return new Promise((resolve, reject) => {
    stream.on('data', (m: T) => received.push(m));
    stream.on('error', (err: grpc.ServiceError) => reject(Object.assign(err, { received })));
    stream.on('end', () => resolve(received));
  });
}

/** Calls `method` with hand-made request bytes, bypassing the client's serializer. */
export function rawUnary(client: grpc.Client, path: string, bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      path,
      (b: Buffer) => b,
      (b: Buffer) => b,
      bytes,
      (err, res) => (err ? reject(err) : resolve(res as Buffer)),
    );
  });
}

/** Asserts a call failed with `code`; returns the error. */
export async function expectCode(promise: Promise<unknown>, code: grpc.status): Promise<grpc.ServiceError> {
  try {
    await promise;
  } catch (err) {
    const e = err as grpc.ServiceError;
    if (e.code !== code) throw new Error(`expected ${grpc.status[code]}, got ${grpc.status[e.code]}: ${e.details}`);
    return e;
  }
  throw new Error(`expected ${grpc.status[code]}, but the call succeeded`);
}

// ---- messages ------------------------------------------------------------------------------------------

export function decode<T>(typeName: string, bytes: Uint8Array): T {
  return reapiProtos().codec<unknown, T>(typeName).decode(bytes);
}

export function encode<T>(typeName: string, message: T): Buffer {
  return reapiProtos().codec<T, unknown>(typeName).encode(message);
}

export function unpack<T>(any: AnyOut | null, typeName: string): T {
  if (!any) throw new Error(`no ${typeName}`);
  if (any.type_url !== `type.googleapis.com/${typeName}`) throw new Error(`expected ${typeName}, got ${any.type_url}`);
  return decode<T>(typeName, any.value);
}

export function stageOf(op: OperationOut): string {
  return unpack<ExecuteOperationMetadataOut>(op.metadata, `${V2}.ExecuteOperationMetadata`).stage;
}

export function responseOf(op: OperationOut): ExecuteResponseOut {
  return unpack<ExecuteResponseOut>(op.response ?? null, `${V2}.ExecuteResponse`);
}

/** The MISSING subjects of the PreconditionFailure in an error's grpc-status-details-bin. */
export function missingSubjects(err: grpc.ServiceError): string[] {
  const raw = err.metadata.get('grpc-status-details-bin')[0];
  if (!Buffer.isBuffer(raw)) throw new Error('no grpc-status-details-bin in the error');
  const status = decode<StatusOut>('google.rpc.Status', raw);
  if (status.code !== err.code) throw new Error('rich status code differs from the call status');
  return status.details.flatMap((d) =>
    unpack<PreconditionFailureOut>(d, 'google.rpc.PreconditionFailure')
      .violations.filter((v) => v.type === 'MISSING')
      .map((v) => v.subject),
  );
}

export function subject(d: Digest): string {
  return `blobs/${d.hash}/${d.sizeBytes}`;
}

export function msg(d: Digest): DigestMsg {
  return { hash: d.hash, size_bytes: d.sizeBytes };
}

// ---- uploads -------------------------------------------------------------------------------------------

export async function upload(h: GrpcHarness, ...blobs: Buffer[]): Promise<Digest[]> {
  const digests = blobs.map((b) => digestOf(b));
  const res = await call(h.clients.cas, h.clients.cas.batchUpdateBlobs, { requests: blobs.map((data, i) => ({ digest: msg(digests[i] as Digest), data })) });
  for (const r of res.responses) if (r.status?.code !== 0) throw new Error(`upload failed: ${r.status?.message}`);
  return digests;
}

export interface InputFile {
  data: Buffer;
  executable?: boolean;
}

/** Uploads files at paths (and the Directory blobs above them) the way a client does; returns the root digest. */
export async function uploadTree(h: GrpcHarness, files: Record<string, InputFile>, emptyDirs: string[] = []): Promise<Digest> {
  interface Draft {
    files: Map<string, InputFile>;
    dirs: Map<string, Draft>;
  }
  const root: Draft = { files: new Map(), dirs: new Map() };
  const dirAt = (segments: string[]): Draft => {
    let d = root;
    for (const s of segments) {
      let next = d.dirs.get(s);
      if (!next) d.dirs.set(s, (next = { files: new Map(), dirs: new Map() }));
      d = next;
    }
    return d;
  };
  for (const [path, file] of Object.entries(files)) {
    const segments = path.split('/');
    const name = segments.pop() as string;
    dirAt(segments).files.set(name, file);
  }
  for (const path of emptyDirs) dirAt(path.split('/'));
  const blobs: Buffer[] = [];
  const store = (d: Draft): Digest => {
    const dir: Directory = {
      files: [...d.files].map(([name, f]) => {
        blobs.push(f.data);
        return { name, digest: digestOf(f.data), isExecutable: f.executable ?? false };
      }),
      directories: [...d.dirs].map(([name, sub]) => ({ name, digest: store(sub) })),
      symlinks: [],
    };
    const bytes = encodeDirectory(dir);
    blobs.push(bytes);
    return digestOf(bytes);
  };
  const digest = store(root);
  await upload(h, ...blobs);
  return digest;
}

export interface ActionSpec {
  args: string[];
  inputRoot: Digest;
  env?: Record<string, string>;
  outputPaths?: string[];
  outputFiles?: string[];
  outputDirectories?: string[];
  workingDirectory?: string;
  platform?: Array<[string, string]>;
  /** On the Command (deprecated place) instead of the Action. */
  commandPlatform?: Array<[string, string]>;
  timeoutMs?: number;
  doNotCache?: boolean;
  /** Makes otherwise identical actions distinct (REAPI's salt). */
  salt?: string;
}

/** Uploads the Command and Action (unless `skipUpload`) and returns their digests. */
export async function makeAction(h: GrpcHarness, spec: ActionSpec, skipUpload: Array<'action' | 'command'> = []): Promise<{ action: Digest; command: Digest }> {
  const props = (p: Array<[string, string]> | undefined) => (p ? { properties: p.map(([name, value]) => ({ name, value })) } : null);
  const command: Command = {
    arguments: spec.args,
    environment_variables: Object.entries(spec.env ?? {})
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([name, value]) => ({ name, value })),
    output_paths: spec.outputPaths ?? [],
    output_files: spec.outputFiles ?? [],
    output_directories: spec.outputDirectories ?? [],
    working_directory: spec.workingDirectory ?? '',
    platform: props(spec.commandPlatform),
  };
  const commandBytes = encode(`${V2}.Command`, command);
  const commandDigest = digestOf(commandBytes);
  const action: Action = {
    command_digest: msg(commandDigest),
    input_root_digest: msg(spec.inputRoot),
    do_not_cache: spec.doNotCache ?? false,
    platform: props(spec.platform),
    ...(spec.timeoutMs !== undefined ? { timeout: { seconds: Math.floor(spec.timeoutMs / 1000), nanos: (spec.timeoutMs % 1000) * 1e6 } } : {}),
    ...(spec.salt !== undefined ? { salt: Buffer.from(spec.salt) } : {}),
  };
  const actionBytes = encode(`${V2}.Action`, action);
  const toUpload = [...(skipUpload.includes('command') ? [] : [commandBytes]), ...(skipUpload.includes('action') ? [] : [actionBytes])];
  if (toUpload.length > 0) await upload(h, ...toUpload);
  return { action: digestOf(actionBytes), command: commandDigest };
}

export interface Executed {
  operations: OperationOut[];
  response: ExecuteResponseOut;
  result: ActionResultOut;
}

/** Execute, to the end of the stream. */
export async function execute(
  h: GrpcHarness,
  action: Digest,
  opts: { skipCacheLookup?: boolean; priority?: number; instance?: string; inlineStdout?: boolean } = {},
): Promise<Executed> {
  const operations = await collect(
    h.clients.exec.execute({
      instance_name: opts.instance ?? '',
      action_digest: msg(action),
      skip_cache_lookup: opts.skipCacheLookup ?? false,
      execution_policy: { priority: opts.priority ?? 0 },
      inline_stdout: opts.inlineStdout ?? false,
    }),
  );
  const last = operations[operations.length - 1];
  if (!last?.done) throw new Error('the stream ended before the operation was done');
  const response = responseOf(last);
  if (!response.result) throw new Error(`no result: ${JSON.stringify(response.status)}`);
  return { operations, response, result: response.result };
}

/** The bytes of a blob, read back through BatchReadBlobs. */
export async function readBlob(h: GrpcHarness, d: DigestMsg | null): Promise<Buffer> {
  if (!d) throw new Error('no digest');
  const res = await call(h.clients.cas, h.clients.cas.batchReadBlobs, { digests: [d] });
  const r = res.responses[0];
  if (!r || r.status?.code !== 0) throw new Error(`read failed: ${r?.status?.message}`);
  return r.data;
}

/**
 * Deletes a blob behind the server's back (what eviction or disk loss would do): its row in the CAS's
 * small-blob database, or its file.
 */
export function loseBlob(h: GrpcHarness, d: Digest): void {
  const root = join(h.ts.dataDir, 'cas');
  const db = new Database(join(root, PACK_FILE));
  try {
    if (db.prepare('DELETE FROM blobs WHERE hash = ?').run(d.hash).changes === 1) return;
  } finally {
    db.close();
  }
  unlinkSync(join(root, 'sha256', d.hash.slice(0, 2), d.hash));
}
