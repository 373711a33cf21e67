/**
 * The REAPI v2 front door over gRPC: Capabilities, ContentAddressableStorage, ByteStream, ActionCache and
 * Execution, plus grpc.health.v1. It serves the same scheduler, CAS and action cache as the HTTP door, so
 * an action run through either shows in both. See docs/decisions/0005-grpc.md.
 */
import type { Http2Server, ServerHttp2Session } from 'node:http2';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
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
}

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

  const messageBytes = maxMessageBytes(maxBatchBytes);
  const auth = opts.auth ?? Authenticator.open();
  const server = new Server({
    // No channelz service is offered, so its per-call and per-socket bookkeeping would only cost CPU
    // (call counters, timestamps and trackers on every RPC of every build).
    'grpc.enable_channelz': 0,
    'grpc.max_receive_message_length': messageBytes,
    'grpc.max_send_message_length': messageBytes,
    interceptors: [...(opts.onCallDone ? [callMetricsInterceptor(opts.onCallDone)] : []), ...(auth.enabled ? [grpcAuthInterceptor(auth, logger)] : [])],
  });
  const protos = reapiProtos();
  const add = (name: string, implement: (decoder: (method: string) => (bytes: Buffer) => unknown) => UntypedServiceImplementation): void => {
    const raw = rawRequests(protos.service(name), name);
    server.addService(raw.definition, implement((method) => raw.decoder(method)));
  };

  add(SERVICES.execution, (m) => ({
    Execute: serverStreaming(m('Execute'), 'ExecuteRequest', logger, execution.execute.bind(execution)),
    WaitExecution: serverStreaming(m('WaitExecution'), 'WaitExecutionRequest', logger, execution.waitExecution.bind(execution)),
  }));
  add(SERVICES.actionCache, (m) => ({
    GetActionResult: unary(m('GetActionResult'), 'GetActionResultRequest', logger, actionCache.getActionResult.bind(actionCache)),
    UpdateActionResult: unary(m('UpdateActionResult'), 'UpdateActionResultRequest', logger, actionCache.updateActionResult.bind(actionCache)),
  }));
  add(SERVICES.cas, (m) => ({
    FindMissingBlobs: unary(m('FindMissingBlobs'), 'FindMissingBlobsRequest', logger, cas.findMissingBlobs.bind(cas)),
    BatchUpdateBlobs: unary(m('BatchUpdateBlobs'), 'BatchUpdateBlobsRequest', logger, cas.batchUpdateBlobs.bind(cas)),
    BatchReadBlobs: unary(m('BatchReadBlobs'), 'BatchReadBlobsRequest', logger, cas.batchReadBlobs.bind(cas)),
    GetTree: serverStreaming(m('GetTree'), 'GetTreeRequest', logger, cas.getTree.bind(cas)),
  }));
  add(SERVICES.capabilities, (m) => ({
    GetCapabilities: unary(m('GetCapabilities'), 'GetCapabilitiesRequest', logger, capabilities.getCapabilities.bind(capabilities)),
  }));
  add(SERVICES.byteStream, (m) => ({
    Read: serverStreaming(m('Read'), 'ReadRequest', logger, byteStream.read.bind(byteStream)),
    Write: clientStreaming(m('Write'), 'WriteRequest', logger, byteStream.write.bind(byteStream)),
    QueryWriteStatus: unary(m('QueryWriteStatus'), 'QueryWriteStatusRequest', logger, byteStream.queryWriteStatus.bind(byteStream)),
  }));
  add(SERVICES.health, (m) => ({
    Check: unary(m('Check'), 'HealthCheckRequest', logger, health.check.bind(health)),
    Watch: serverStreaming(m('Watch'), 'HealthCheckRequest', logger, health.watch.bind(health)),
  }));

  const port = await new Promise<number>((resolve, reject) => {
    const address = opts.host.includes(':') ? `[${opts.host}]:${opts.port}` : `${opts.host}:${opts.port}`;
    const credentials = opts.tls
      ? ServerCredentials.createSsl(null, [{ cert_chain: opts.tls.cert, private_key: opts.tls.key }], false)
      : ServerCredentials.createInsecure();
    server.bindAsync(address, credentials, (err, bound) => (err ? reject(err) : resolve(bound)));
  });
  applyReceiveWindows(server, logger);
  logger.info({ host: opts.host, port, tls: opts.tls !== undefined, auth: auth.enabled, instances: opts.instanceNames ?? 'any', maxBatchBytes, defaultPlatform }, 'REAPI gRPC serving');

  let closing: Promise<void> | undefined;
  return {
    port,
    close: () =>
      (closing ??= (async () => {
        health.close();
        uploads.closeAll();
        await new Promise<void>((resolve) => {
          // Streams such as Execute may wait on long jobs: give calls a moment, then cut them off.
          const force = setTimeout(() => server.forceShutdown(), 2_000);
          server.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
        });
      })()),
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
