/**
 * The REAPI door's own gRPC server on node:http2 (decision 0040): every method of every service on one
 * port, with gRPC's framing by hand (h2-framing.ts) instead of grpc-js's per-message machinery, which
 * capped ByteStream far below line rate. The handlers are the same as on grpc-js (`MethodRoute`s, given
 * the same CallContext and ResponseSink), and errors go through the same converter (status.ts).
 *
 * What it honours: `grpc-timeout` (DEADLINE_EXCEEDED, the handler's signal aborted), a client's cancel or
 * disconnect (the signal aborted, nothing more sent), HTTP/2 flow control both ways (a request body is
 * read only as fast as its handler takes it; a response waits on 'drain'), message-size limits both ways
 * (RESOURCE_EXHAUSTED, refused from the 5-byte prefix before anything is buffered), tokens on every
 * method but grpc.health.v1 (auth.ts's rules) and TLS. Compressed messages are refused (UNIMPLEMENTED):
 * no REAPI client compresses at the gRPC layer (REAPI compresses blobs by resource name instead).
 */
import { once } from 'node:events';
import { constants, createSecureServer, createServer } from 'node:http2';
import type { Http2SecureServer, Http2Server, IncomingHttpHeaders, ServerHttp2Session, ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Metadata, status as GrpcStatus } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { peerAddress, refusalLogLevel } from '../../auth/failed-attempts.js';
import type { Authenticator } from '../../auth/tokens.js';
import { isRemexError, RemexError } from '../../core/errors.js';
import type { CallRecorder } from './call-metrics.js';
import { decodeRequest, EncodedResponse } from './handlers.js';
import type { CallContext, ResponseSink } from './handlers.js';
import { encodeGrpcMessage, MessageDecoder, parseTimeout, writeMessage } from './h2-framing.js';
import { toCallStatus } from './status.js';

/** What a method does, whatever server carries it (grpc-server.ts registers the same routes on grpc-js). */
export type MethodRoute =
  | { kind: 'unary'; what: string; run: (req: never, ctx: CallContext) => Promise<unknown> }
  | { kind: 'serverStreaming'; what: string; run: (req: never, sink: ResponseSink<never>, ctx: CallContext) => Promise<void> }
  | { kind: 'clientStreaming'; what: string; run: (requests: AsyncIterable<never>, ctx: CallContext) => Promise<unknown> };

/** A route with its method's codecs, by `/package.Service/Method` path. */
export interface BoundMethod {
  route: MethodRoute;
  decode(bytes: Buffer): unknown;
  encode(message: unknown): Buffer;
}

/**
 * HTTP/2 settings of the door. 1 MiB per stream is grpc-java's default window (so Bazel's) and bounds what
 * one upload can park in server memory; the connection gets room for several uploads at once, since build
 * tools multiplex them over one connection. Larger DATA frames (the client may send up to this much per
 * frame) cut the per-frame work on both sides; see decision 0040 for the measurements.
 */
export const H2_STREAM_WINDOW_BYTES = 1024 * 1024;
export const H2_CONNECTION_WINDOW_BYTES = 4 * 1024 * 1024;
export const H2_MAX_FRAME_BYTES = 256 * 1024;

export interface H2DoorOptions {
  host: string;
  port: number;
  routes: ReadonlyMap<string, BoundMethod>;
  /** Largest message accepted or sent. */
  messageBytes: number;
  auth: Authenticator;
  logger: Logger;
  tls?: { cert: Buffer; key: Buffer };
  onCallDone?: CallRecorder;
}

export interface RunningH2Door {
  readonly port: number;
  /** Stops accepting connections; calls in flight get `graceMs`, then their connections are cut. */
  close(graceMs: number): Promise<void>;
}

const OPEN_PREFIX = '/grpc.health.v1.Health/';
const CODE_NAMES = new Map<number, string>(Object.entries(GrpcStatus).flatMap(([name, value]) => (typeof value === 'number' ? [[value, name] as [number, string]] : [])));

export async function startH2Door(opts: H2DoorOptions): Promise<RunningH2Door> {
  const settings = { initialWindowSize: H2_STREAM_WINDOW_BYTES, maxFrameSize: H2_MAX_FRAME_BYTES };
  // Node's default cap on what a session may buffer (10 MB) is below what the windows allow in flight.
  const serverOptions = { settings, maxSessionMemory: 64 };
  const server: Http2Server | Http2SecureServer = opts.tls
    ? createSecureServer({ ...serverOptions, cert: opts.tls.cert, key: opts.tls.key, allowHTTP1: false })
    : createServer(serverOptions);
  const sessions = new Set<ServerHttp2Session>();
  server.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    session.on('error', (err) => opts.logger.debug({ err }, 'HTTP/2 session error on the gRPC door'));
    try {
      session.setLocalWindowSize(H2_CONNECTION_WINDOW_BYTES);
    } catch (err) {
      opts.logger.debug({ err }, 'could not set the HTTP/2 connection window on a new session');
    }
  });
  server.on('sessionError', (err) => opts.logger.debug({ err }, 'HTTP/2 session error on the gRPC door'));
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    stream.on('error', (err) => opts.logger.debug({ err }, 'HTTP/2 stream error on the gRPC door'));
    new Call(stream, headers, opts).start();
  });
  server.listen(opts.port, opts.host);
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err as Error))]);
  const { port } = server.address() as AddressInfo;
  return {
    port,
    close: async (graceMs) => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const session of sessions) session.close();
      const force = setTimeout(() => {
        for (const session of sessions) session.destroy();
      }, graceMs);
      await closed;
      clearTimeout(force);
    },
  };
}

/** How long a request may stay open after its call's status was sent. */
const RELEASE_AFTER_STATUS_MS = 1_000;

const RESPONSE_HEADERS = { ':status': 200, 'content-type': 'application/grpc', 'grpc-accept-encoding': 'identity' } as const;

/** One call, from its headers to its status. */
class Call implements CallContext {
  private readonly started = performance.now();
  private readonly path: string;
  private ended = false;
  private abort: AbortController | undefined;
  private timer: NodeJS.Timeout | undefined;
  private metadataCache: Metadata | undefined;

  constructor(
    private readonly stream: ServerHttp2Stream,
    private readonly headers: IncomingHttpHeaders,
    private readonly opts: H2DoorOptions,
  ) {
    this.path = String(headers[constants.HTTP2_HEADER_PATH] ?? '');
  }

  get metadata(): Metadata {
    return (this.metadataCache ??= Metadata.fromHttp2Headers(this.headers));
  }

  /** Made on first use, as on grpc-js: most unary handlers never look at it. */
  get signal(): AbortSignal {
    if (!this.abort) {
      this.abort = new AbortController();
      if (this.ended) this.abort.abort();
    }
    return this.abort.signal;
  }

  start(): void {
    const { stream, headers } = this;
    stream.once('close', () => {
      if (this.ended) return;
      // The client cancelled or went away before the call ended: nothing more can be sent.
      this.ended = true;
      clearTimeout(this.timer);
      this.abort?.abort();
      this.opts.onCallDone?.(this.path, 'CANCELLED', (performance.now() - this.started) / 1000);
    });
    const method = this.opts.routes.get(this.path);
    try {
      if (headers[constants.HTTP2_HEADER_METHOD] !== 'POST' || !String(headers[constants.HTTP2_HEADER_CONTENT_TYPE] ?? '').startsWith('application/grpc')) {
        throw new RemexError('INVALID_ARGUMENT', 'not a gRPC request (POST with content-type application/grpc expected)');
      }
      const encoding = headers['grpc-encoding'];
      if (encoding !== undefined && encoding !== 'identity') throw new RemexError('UNIMPLEMENTED', `grpc-encoding ${String(encoding)} is not accepted (identity only)`);
      if (!method) throw new RemexError('UNIMPLEMENTED', `unknown method ${this.path}`);
      this.authorize();
      const timeout = parseTimeout(headers['grpc-timeout']);
      if (timeout !== undefined) {
        this.timer = setTimeout(() => {
          this.abort?.abort();
          this.finish(new RemexError('DEADLINE_EXCEEDED', 'the call ran past its deadline'));
        }, timeout);
      }
    } catch (err) {
      this.finish(err);
      return;
    }
    if (method.route.kind === 'clientStreaming') {
      void this.answer(method, method.route.run(this.requests(method) as AsyncIterable<never>, this));
    } else {
      const run = method.route.kind === 'unary' ? method.route.run : undefined;
      const streaming = method.route.kind === 'serverStreaming' ? method.route.run : undefined;
      void this.single(method).then(
        (req) => {
          if (this.ended) return;
          if (run) void this.answer(method, run(req as never, this));
          else if (streaming) {
            const sink: ResponseSink<never> = { send: (message) => this.send(method, message) };
            void this.answer(method, streaming(req as never, sink, this).then(() => undefined));
          }
        },
        (err: unknown) => this.finish(err),
      );
    }
  }

  private authorize(): void {
    if (!this.opts.auth.enabled || this.path.startsWith(OPEN_PREFIX)) return;
    const header = this.headers.authorization;
    const peer = this.stream.session?.socket?.remoteAddress;
    try {
      this.opts.auth.authorize(header, ['client'], peerAddress(peer));
    } catch (err) {
      if (isRemexError(err)) this.opts.logger[refusalLogLevel(err)]({ method: this.path, peer, code: err.code }, 'gRPC call refused');
      throw err;
    }
  }

  /** The one request of a unary or server-streaming call. */
  private single(method: BoundMethod): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const decoder = new MessageDecoder(this.opts.messageBytes);
      const got: Buffer[] = [];
      this.stream.on('data', (chunk: Buffer) => {
        try {
          got.push(...decoder.push(chunk));
        } catch (err) {
          this.stream.pause();
          reject(err);
        }
      });
      this.stream.once('end', () => {
        if (this.resetByClient()) {
          reject(new RemexError('CANCELLED', 'the client cancelled the call'));
          return;
        }
        if (got.length !== 1 || decoder.partial) {
          reject(new RemexError('INVALID_ARGUMENT', `a ${method.route.what} call carries exactly one message (got ${got.length}${decoder.partial ? ' and a cut-off one' : ''})`));
          return;
        }
        try {
          resolve(decodeRequest(method.decode, got[0] as Buffer, method.route.what));
        } catch (err) {
          reject(err);
        }
      });
    });
  }

  /** The requests of a client-streaming call, read as the handler asks for them (flow control). */
  private async *requests(method: BoundMethod): AsyncGenerator<unknown> {
    const decoder = new MessageDecoder(this.opts.messageBytes);
    try {
      for await (const chunk of this.stream.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
        for (const bytes of decoder.push(chunk)) yield decodeRequest(method.decode, bytes, method.route.what);
      }
    } catch (err) {
      if (isRemexError(err)) throw err;
      throw new RemexError('CANCELLED', 'the client cancelled the call');
    }
    // A client's RST_STREAM ends the request body like a half-close does: tell them apart.
    if (this.resetByClient()) throw new RemexError('CANCELLED', 'the client cancelled the call');
    if (decoder.partial) throw new RemexError('INVALID_ARGUMENT', `the request stream ended inside a ${method.route.what} message`);
  }

  private resetByClient(): boolean {
    const { rstCode } = this.stream;
    return this.stream.aborted || (rstCode !== undefined && rstCode !== constants.NGHTTP2_NO_ERROR);
  }

  private encode(method: BoundMethod, message: unknown): Buffer {
    const bytes = message instanceof EncodedResponse ? message.bytes : method.encode(message);
    if (bytes.byteLength > this.opts.messageBytes) throw new RemexError('RESOURCE_EXHAUSTED', `response of ${bytes.byteLength} bytes is larger than the ${this.opts.messageBytes} allowed`);
    return bytes;
  }

  private send(method: BoundMethod, message: unknown): Promise<void> {
    if (this.ended) return Promise.reject(new RemexError('CANCELLED', 'the client cancelled the call'));
    const { stream } = this;
    if (!stream.headersSent) stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
    if (writeMessage(stream, this.encode(method, message))) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onDrain = (): void => {
        stream.off('close', onClose);
        resolve();
      };
      const onClose = (): void => {
        stream.off('drain', onDrain);
        reject(new RemexError('CANCELLED', 'the client cancelled the call'));
      };
      stream.once('drain', onDrain);
      stream.once('close', onClose);
    });
  }

  private async answer(method: BoundMethod, result: Promise<unknown>): Promise<void> {
    try {
      const res = await result;
      this.finish(undefined, res === undefined ? undefined : this.encode(method, res));
    } catch (err) {
      this.finish(err);
    }
  }

  /** Ends the call with `err`'s status (OK without one), after `reply` if given. Only the first call counts. */
  private finish(err: unknown, reply?: Buffer): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.timer);
    if (this.resetByClient()) {
      this.abort?.abort();
      this.opts.onCallDone?.(this.path, 'CANCELLED', (performance.now() - this.started) / 1000);
      return;
    }
    const status = err === undefined ? undefined : toCallStatus(err, this.opts.logger);
    const code = status?.code ?? GrpcStatus.OK;
    this.opts.onCallDone?.(this.path, CODE_NAMES.get(code) ?? String(code), (performance.now() - this.started) / 1000);
    const { stream } = this;
    if (stream.destroyed || stream.closed) return;
    const trailers: Record<string, string> = { 'grpc-status': String(code), 'grpc-message': encodeGrpcMessage(status?.details ?? '') };
    const details = status?.metadata.get('grpc-status-details-bin')[0];
    if (details instanceof Buffer) trailers['grpc-status-details-bin'] = details.toString('base64').replace(/=+$/, '');
    // What the client still sends is read and dropped (an early answer to a Write, a refused call). A
    // client stops sending once it has the status; one whose request is still open a while after is reset
    // with NO_ERROR (RFC 9113 §8.1), so a stalled or hostile peer cannot keep the stream. Not at once: the
    // reset could overtake the trailers, and grpc-js would then see a call without a status.
    stream.resume();
    const release = (): void => {
      if (stream.readableEnded || stream.closed) return;
      const timer = setTimeout(() => {
        if (!stream.readableEnded && !stream.closed) stream.close(constants.NGHTTP2_NO_ERROR);
      }, RELEASE_AFTER_STATUS_MS);
      timer.unref();
      stream.once('close', () => clearTimeout(timer));
    };
    if (!stream.headersSent && reply === undefined) {
      stream.respond({ ...RESPONSE_HEADERS, ...trailers }, { endStream: true });
      release();
      return;
    }
    if (!stream.headersSent) stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
    stream.once('wantTrailers', () => {
      stream.sendTrailers(trailers);
      release();
    });
    if (reply) writeMessage(stream, reply);
    stream.end();
  }
}
