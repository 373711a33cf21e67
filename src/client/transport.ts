/**
 * One HTTP(S) request to one server, on node:http/node:https with keep-alive agents.
 *
 * Why not the global fetch: it cannot be given a CA to trust (a private CA needs undici's Agent as a
 * dispatcher, i.e. another dependency whose version must match Node's bundled one), and it does not say
 * whether a failed request ever reached the server. Here an https.Agent carries the CA, and every failure
 * without a response is a {@link TransportError} whose `phase` tells the failover logic whether the
 * request may have been processed ('sent') or surely was not ('connect').
 */
import type * as Http from 'node:http';
import type { IncomingMessage } from 'node:http';
import type https from 'node:https';
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';

// Required, not imported: an ESM import of node:http reads every export, and on Node 24 one of them loads
// TLS, which a plain-HTTP command never needs (node:https itself is required on the first https:// call).
const http = createRequire(import.meta.url)('node:http') as typeof Http;

/** A body that can be sent again (string, bytes, a stream factory) or once (a web stream). */
export type RequestBody = string | Uint8Array | (() => Readable) | ReadableStream<Uint8Array>;

export interface TransportRequest {
  method: string;
  headers: Record<string, string>;
  body?: RequestBody | undefined;
  signal?: AbortSignal | undefined;
  /** Longest wait for the response headers once connected; default: none (long-polls, ?wait=1). */
  timeoutMs?: number | undefined;
}

export interface TransportOptions {
  /** PEM certificate(s) of the CA(s) trusted for https:// (instead of Node's bundled roots). */
  ca?: string | Buffer | undefined;
  /** Longest wait for a connection (TCP, and TLS for https). */
  connectTimeoutMs: number;
}

const IDLE_SOCKET_MS = 4_000;

const TLS_VERIFY_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** A request that got no response. */
export class TransportError extends Error {
  constructor(
    message: string,
    /** The system or TLS error code (ECONNREFUSED, ETIMEDOUT, SELF_SIGNED_CERT_IN_CHAIN…). */
    readonly code: string,
    /** 'connect': the request never reached the server; 'sent': it may have. */
    readonly phase: 'connect' | 'sent',
    options?: { cause?: unknown; staleSocket?: boolean },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TransportError';
    this.staleSocket = options?.staleSocket ?? false;
  }

  /** Reset on a reused kept-alive connection: worth one immediate retry on the same server when idempotent. */
  readonly staleSocket: boolean;

  /** The server's certificate could not be verified against the trusted CAs. */
  get untrustedCertificate(): boolean {
    return TLS_VERIFY_CODES.has(this.code);
  }
}

export class HttpTransport {
  // Idle kept-alive connections are closed after IDLE_SOCKET_MS, before common server and proxy
  // keep-alive timeouts, so a request rarely meets a connection the server is closing.
  private readonly httpAgent = new http.Agent({ keepAlive: true, timeout: IDLE_SOCKET_MS });
  // node:https (and TLS with it) is loaded with the first https:// request: a command that talks plain
  // HTTP starts without it.
  private httpsAgent: https.Agent | undefined;

  constructor(private readonly opts: TransportOptions) {}

  private https(): { module: typeof https; agent: https.Agent } {
    const module = createRequire(import.meta.url)('node:https') as typeof https;
    this.httpsAgent ??= new module.Agent({ keepAlive: true, timeout: IDLE_SOCKET_MS, ...(this.opts.ca !== undefined ? { ca: this.opts.ca } : {}) });
    return { module, agent: this.httpsAgent };
  }

  /** Resolves with the response as soon as its headers arrive (any status); the caller reads the body. */
  request(url: URL, r: TransportRequest): Promise<IncomingMessage> {
    const tls = url.protocol === 'https:' ? this.https() : undefined;
    return new Promise((resolve, reject) => {
      let connected = false;
      let settled = false;
      let bodyError: unknown;
      const req = (tls ? tls.module : http).request(url, {
        method: r.method,
        headers: r.headers,
        agent: tls ? tls.agent : this.httpAgent,
        ...(r.signal ? { signal: r.signal } : {}),
      });
      let timer: NodeJS.Timeout | undefined = setTimeout(
        () => req.destroy(new TransportError(`no connection within ${this.opts.connectTimeoutMs} ms`, 'ETIMEDOUT', 'connect')),
        this.opts.connectTimeoutMs,
      );
      const onConnected = (): void => {
        connected = true;
        clearTimeout(timer);
        timer = undefined;
        if (r.timeoutMs !== undefined && !settled) {
          timer = setTimeout(() => req.destroy(new TransportError(`no answer within ${r.timeoutMs} ms`, 'ETIMEDOUT', 'sent')), r.timeoutMs);
        }
      };
      req.on('socket', (socket) => {
        if (req.reusedSocket || !socket.connecting) onConnected();
        else socket.once(tls ? 'secureConnect' : 'connect', onConnected);
      });
      req.on('response', (res) => {
        settled = true;
        clearTimeout(timer);
        resolve(res);
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        if (settled) return; // the response's reader sees the failure
        settled = true;
        if (bodyError !== undefined) return reject(bodyError);
        if (err.name === 'AbortError' || err instanceof TransportError) return reject(err);
        const code = err.code ?? 'UNKNOWN';
        // A kept-alive socket the server had already closed: the request never reached it (Node's advice).
        // Most likely a kept-alive connection the server had just closed; but it may also have died
        // after reading the request, so this stays 'sent'.
        const staleSocket = req.reusedSocket && (code === 'ECONNRESET' || code === 'EPIPE');
        const phase = connected ? 'sent' : 'connect';
        const what = TLS_VERIFY_CODES.has(code) ? `TLS: ${err.message} (${code})` : err.message || code;
        reject(new TransportError(what, code, phase, { cause: err, staleSocket }));
      });

      const body = r.body;
      if (body === undefined) {
        req.end();
      } else if (typeof body === 'string' || body instanceof Uint8Array) {
        req.end(body);
      } else {
        const source = typeof body === 'function' ? body() : Readable.fromWeb(body as unknown as WebReadableStream<Uint8Array>);
        source.on('error', (err) => {
          bodyError = err;
          req.destroy(err);
        });
        source.pipe(req);
      }
    });
  }

  /** Closes idle kept-alive connections. */
  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent?.destroy();
  }
}

/** Whether a body can be sent a second time (to another server). */
export function isReplayable(body: RequestBody | undefined): boolean {
  return body === undefined || typeof body === 'string' || body instanceof Uint8Array || typeof body === 'function';
}
