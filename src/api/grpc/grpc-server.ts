/**
 * The REAPI v2 front door over gRPC: Capabilities, ContentAddressableStorage, ByteStream, ActionCache and
 * Execution, plus grpc.health.v1. It serves the same scheduler, CAS and action cache as the HTTP door, so
 * an action run through either shows in both. See docs/decisions/0005-grpc.md.
 */
import type { Http2Server, ServerHttp2Session } from 'node:http2';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import type { MethodDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { Authenticator } from '../../auth/tokens.js';
import type { BlobStore } from '../../cas/blob-store.js';
import { InvalidArgumentError } from '../../core/errors.js';
import { canonicalPlatform, isaOfNodeArch } from '../../core/platform.js';
import type { Scheduler } from '../../scheduler/scheduler.js';
import type { ActionCache } from '../../store/ports.js';
import type { ExecutionPolicy } from '../execution-request.js';
import { ActionCacheService } from './action-cache-service.js';
import { grpcAuthInterceptor } from './auth.js';
import { callMetricsInterceptor } from './call-metrics.js';
import type { CallRecorder } from './call-metrics.js';
import { ByteStreamService } from './bytestream-service.js';
import { CapabilitiesService } from './capabilities-service.js';
import { CasService } from './cas-service.js';
import { ExecutionService } from './execution-service.js';
import { clientStreaming, rawRequests, serverStreaming, unary } from './handlers.js';
import type { CallContext, ResponseSink } from './handlers.js';
import { startH2Door } from './h2-door.js';
import type { BoundMethod, MethodRoute } from './h2-door.js';
import { HealthService } from './health-service.js';
import { InstanceNames } from './instances.js';
import { DEFAULT_MAX_BATCH_BYTES, maxMessageBytes } from './limits.js';
import { OutputLayouts } from './output-layouts.js';
import { reapiProtos } from './protos.js';
import { DEFAULT_UPLOAD_IDLE_MS, UploadSessions } from './upload-sessions.js';

/** The port REAPI clients are pointed at unless told otherwise (`remex serve --grpc-port`). */
export { DEFAULT_GRPC_PORT } from '../../core/defaults.js';

export interface GrpcServerOptions {
  scheduler: Scheduler;
  blobs: BlobStore;
  /** The action cache the scheduler uses (UpdateActionResult writes to it; broken entries are dropped from it). */
  actionCache: ActionCache;
  /** Default and maximum timeout and the limits applied to REAPI actions, as for the HTTP door. */
  policy: ExecutionPolicy;
  logger: Logger;
  host: string;
  /** 0 picks a free port (see the result's `port`). */
  port: number;
  /** Instance names served; undefined accepts any well-formed name, '' included. */
  instanceNames?: readonly string[];
  /** max_batch_total_size_bytes: the most blob bytes one batch call may carry (default 4 MiB). */
  maxBatchBytes?: number;
  /** Platform of actions that name none (default: this host's, e.g. `x86_64-linux-cpu`). */
  defaultPlatform?: string;
  /** How long an interrupted ByteStream upload waits to be resumed (default 60 s). */
  uploadIdleMs?: number;
  /** Client tokens required on every call but health (default: open). */
  auth?: Authenticator;
  /** Serve over TLS with this certificate chain and key (PEM); default: plaintext. */
  tls?: { cert: Buffer; key: Buffer };
  /** Told of every call that ended: its method path, status code name and latency (the request metrics). */
  onCallDone?: CallRecorder;
  /** The server that carries the door (decision 0040); default: REMEX_GRPC_DOOR, else h2. */
  door?: GrpcDoor;
}

/** `grpc-js`: @grpc/grpc-js's Server; `h2`: the door's own gRPC framing on node:http2 (h2-door.ts). */
export type GrpcDoor = 'grpc-js' | 'h2';

export interface RunningGrpcServer {
  readonly port: number;
  /** Stops accepting calls, ends streams in flight (their clients see UNAVAILABLE) and releases uploads. */
  close(): Promise<void>;
}

const SERVICES = {
  execution: 'build.bazel.remote.execution.v2.Execution',
  actionCache: 'build.bazel.remote.execution.v2.ActionCache',
  cas: 'build.bazel.remote.execution.v2.ContentAddressableStorage',
  capabilities: 'build.bazel.remote.execution.v2.Capabilities',
  byteStream: 'google.bytestream.ByteStream',
  health: 'grpc.health.v1.Health',
} as const;

/** Starts the gRPC server and resolves once it listens. */
export async function startGrpcServer(opts: GrpcServerOptions): Promise<RunningGrpcServer> {
  const logger = opts.logger.child({ component: 'grpc' });
  const maxBatchBytes = opts.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES;
  if (!Number.isSafeInteger(maxBatchBytes) || maxBatchBytes <= 0) throw new InvalidArgumentError('maxBatchBytes must be a positive integer');
  const defaultPlatform = canonicalPlatform(opts.defaultPlatform ?? `${isaOfNodeArch(process.arch) ?? 'x86_64'}-linux-cpu`);
  const instances = new InstanceNames(opts.instanceNames);
  const layouts = new OutputLayouts(opts.blobs);
  const uploads = new UploadSessions(opts.blobs, opts.uploadIdleMs ?? DEFAULT_UPLOAD_IDLE_MS);

  const execution = new ExecutionService({ ...opts, instances, layouts, defaultPlatform, logger });
  const actionCache = new ActionCacheService({ ...opts, instances, layouts });
  const cas = new CasService({ blobs: opts.blobs, instances, maxBatchBytes, logger });
  const capabilities = new CapabilitiesService({ instances, maxBatchBytes, maxBlobBytes: opts.blobs.maxBlobBytes });
  const byteStream = new ByteStreamService({ blobs: opts.blobs, instances, uploads });
  const health = new HealthService(Object.values(SERVICES));

  const routes: Record<string, Record<string, MethodRoute>> = {
    [SERVICES.execution]: {
      Execute: { kind: 'serverStreaming', what: 'ExecuteRequest', run: execution.execute.bind(execution) },
      WaitExecution: { kind: 'serverStreaming', what: 'WaitExecutionRequest', run: execution.waitExecution.bind(execution) },
    },
    [SERVICES.actionCache]: {
      GetActionResult: { kind: 'unary', what: 'GetActionResultRequest', run: actionCache.getActionResult.bind(actionCache) },
      UpdateActionResult: { kind: 'unary', what: 'UpdateActionResultRequest', run: actionCache.updateActionResult.bind(actionCache) },
    },
    [SERVICES.cas]: {
      FindMissingBlobs: { kind: 'unary', what: 'FindMissingBlobsRequest', run: cas.findMissingBlobs.bind(cas) },
      BatchUpdateBlobs: { kind: 'unary', what: 'BatchUpdateBlobsRequest', run: cas.batchUpdateBlobs.bind(cas) },
      BatchReadBlobs: { kind: 'unary', what: 'BatchReadBlobsRequest', run: cas.batchReadBlobs.bind(cas) },
      GetTree: { kind: 'serverStreaming', what: 'GetTreeRequest', run: cas.getTree.bind(cas) },
    },
    [SERVICES.capabilities]: {
      GetCapabilities: { kind: 'unary', what: 'GetCapabilitiesRequest', run: capabilities.getCapabilities.bind(capabilities) },
    },
    [SERVICES.byteStream]: {
      Read: { kind: 'serverStreaming', what: 'ReadRequest', run: byteStream.read.bind(byteStream) },
      Write: { kind: 'clientStreaming', what: 'WriteRequest', run: byteStream.write.bind(byteStream) },
      QueryWriteStatus: { kind: 'unary', what: 'QueryWriteStatusRequest', run: byteStream.queryWriteStatus.bind(byteStream) },
    },
    [SERVICES.health]: {
      Check: { kind: 'unary', what: 'HealthCheckRequest', run: health.check.bind(health) },
      Watch: { kind: 'serverStreaming', what: 'HealthCheckRequest', run: health.watch.bind(health) },
    },
  } as Record<string, Record<string, MethodRoute>>;
  const messageBytes = maxMessageBytes(maxBatchBytes);
  const auth = opts.auth ?? Authenticator.open();
  const door = opts.door ?? defaultDoor();
  const served = door === 'h2' ? await serveOnH2(opts, routes, messageBytes, auth, logger) : await serveOnGrpcJs(opts, routes, messageBytes, auth, logger);
  logger.info({ host: opts.host, port: served.port, door, tls: opts.tls !== undefined, auth: auth.enabled, instances: opts.instanceNames ?? 'any', maxBatchBytes, defaultPlatform }, 'REAPI gRPC serving');

  let closing: Promise<void> | undefined;
  return {
    port: served.port,
    close: () =>
      (closing ??= (async () => {
        health.close();
        uploads.closeAll();
        // Streams such as Execute may wait on long jobs: give calls a moment, then cut them off.
        await served.close(2_000);
      })()),
  };
}

/**
 * Which server carries the door unless the options say: REMEX_GRPC_DOOR (`h2` or `grpc-js`), else h2
 * (decision 0040). grpc-js stays available while the h2 door is new.
 */
export function defaultDoor(): GrpcDoor {
  const env = process.env.REMEX_GRPC_DOOR;
  if (env === undefined || env === '') return 'h2';
  if (env !== 'h2' && env !== 'grpc-js') throw new InvalidArgumentError(`REMEX_GRPC_DOOR must be h2 or grpc-js, not ${JSON.stringify(env)}`);
  return env;
}

interface ServedDoor {
  port: number;
  close(graceMs: number): Promise<void>;
}

/** The routes on the door's own node:http2 server (h2-door.ts). */
async function serveOnH2(opts: GrpcServerOptions, routes: Record<string, Record<string, MethodRoute>>, messageBytes: number, auth: Authenticator, logger: Logger): Promise<ServedDoor> {
  const protos = reapiProtos();
  const bound = new Map<string, BoundMethod>();
  for (const [service, methods] of Object.entries(routes)) {
    const definition = protos.service(service) as unknown as Record<string, MethodDefinition<unknown, unknown>>;
    for (const [name, route] of Object.entries(methods)) {
      const method = definition[name];
      if (!method) throw new InvalidArgumentError(`${service} has no method ${name}`);
      bound.set(method.path, { route, decode: method.requestDeserialize, encode: method.responseSerialize });
    }
  }
  return startH2Door({ host: opts.host, port: opts.port, routes: bound, messageBytes, auth, logger, ...(opts.tls ? { tls: opts.tls } : {}), ...(opts.onCallDone ? { onCallDone: opts.onCallDone } : {}) });
}

/** The routes on a @grpc/grpc-js Server, through the adapters of handlers.ts. */
async function serveOnGrpcJs(opts: GrpcServerOptions, routes: Record<string, Record<string, MethodRoute>>, messageBytes: number, auth: Authenticator, logger: Logger): Promise<ServedDoor> {
  const server = new Server({
    // No channelz service is offered, so its per-call and per-socket bookkeeping would only cost CPU
    // (call counters, timestamps and trackers on every RPC of every build).
    'grpc.enable_channelz': 0,
    'grpc.max_receive_message_length': messageBytes,
    'grpc.max_send_message_length': messageBytes,
    interceptors: [...(opts.onCallDone ? [callMetricsInterceptor(opts.onCallDone)] : []), ...(auth.enabled ? [grpcAuthInterceptor(auth, logger)] : [])],
  });
  const protos = reapiProtos();
  for (const [service, methods] of Object.entries(routes)) {
    const raw = rawRequests(protos.service(service), service);
    const implementation: UntypedServiceImplementation = {};
    for (const [name, route] of Object.entries(methods)) {
      const decode = raw.decoder(name);
      implementation[name] =
        route.kind === 'unary'
          ? unary(decode, route.what, logger, route.run as (req: unknown, ctx: CallContext) => Promise<unknown>)
          : route.kind === 'serverStreaming'
            ? serverStreaming(decode, route.what, logger, route.run as (req: unknown, sink: ResponseSink<unknown>, ctx: CallContext) => Promise<void>)
            : clientStreaming(decode, route.what, logger, route.run as (requests: AsyncIterable<unknown>, ctx: CallContext) => Promise<unknown>);
    }
    server.addService(raw.definition, implementation);
  }

  const port = await new Promise<number>((resolve, reject) => {
    const address = opts.host.includes(':') ? `[${opts.host}]:${opts.port}` : `${opts.host}:${opts.port}`;
    const credentials = opts.tls
      ? ServerCredentials.createSsl(null, [{ cert_chain: opts.tls.cert, private_key: opts.tls.key }], false)
      : ServerCredentials.createInsecure();
    server.bindAsync(address, credentials, (err, bound) => (err ? reject(err) : resolve(bound)));
  });
  applyReceiveWindows(server, logger);
  return {
    port,
    close: (graceMs) =>
      new Promise<void>((resolve) => {
        const force = setTimeout(() => server.forceShutdown(), graceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}

/**
 * HTTP/2 receive windows the server advertises: per stream, what a client may send on one call before the
 * server has consumed it; per connection, the sum over all calls on it. Node's (and grpc-js's) default is
 * the protocol's 64 KiB for both, which caps an upload at one 64 KiB window per round trip however fast
 * the store is: a 1 GiB ByteStream Write ran at ~150-200 MiB/s, waiting on the network most of the time;
 * with these windows the same upload waits on the store instead, and plain grpc-js client streaming
 * here doubles (~500 → ~1000 MiB/s). 1 MiB per stream is grpc-java's default (so Bazel's), and bounds
 * what one upload can park in server memory beyond grpc-js's own message queue; the connection gets
 * room for a few uploads at once, since build tools multiplex them over one connection.
 */
export const STREAM_RECEIVE_WINDOW_BYTES = 1024 * 1024;
export const CONNECTION_RECEIVE_WINDOW_BYTES = 4 * 1024 * 1024;

/**
 * Applies the receive windows to every HTTP/2 session the server accepts. grpc-js 1.14 has a channel
 * option for this on clients ('grpc-node.flow_control_window') but none on servers, and keeps its Node
 * http2 servers in a private field; this reaches into that field, and says so in the log if a later
 * grpc-js has moved it (the server then works as before, only with the default windows; a test checks
 * the advertised window, so an upgrade that breaks this fails it). Exported for bench/grpc-bytestream's
 * no-op server, which must move bytes as this one does.
 */
export function applyReceiveWindows(server: Server, logger: Logger): void {
  const servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(servers instanceof Map)) {
    logger.warn('@grpc/grpc-js internals changed: HTTP/2 receive windows left at the 64 KiB default (slower ByteStream uploads)');
    return;
  }
  for (const h2 of servers.keys() as IterableIterator<Http2Server>) {
    h2.on('session', (session: ServerHttp2Session) => {
      try {
        // A SETTINGS frame raising the window of every stream, current and future (RFC 9113 §6.9.2),
        // and a WINDOW_UPDATE for the connection.
        session.settings({ initialWindowSize: STREAM_RECEIVE_WINDOW_BYTES });
        session.setLocalWindowSize(CONNECTION_RECEIVE_WINDOW_BYTES);
      } catch (err) {
        // The session died as it arrived; grpc-js's own handlers clean it up.
        logger.debug({ err }, 'could not set HTTP/2 receive windows on a new session');
      }
    });
  }
}
