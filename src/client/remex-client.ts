/**
 * A typed client of remex's HTTP API, used by the CLI, by `remex worker` and by tests. Server problems
 * come back as RemexError with the server's code; a server that cannot be reached is UNAVAILABLE.
 *
 * Several controllers may be given: requests go to the current one and move to the next when it cannot
 * be reached (connection refused, reset, timed out, TLS failure) or answers 503 (502/504 too for
 * requests that are safe to repeat), with backoff once every controller has failed in turn. Before any
 * controller has answered, one round over the list decides (a wrong address fails at once); after that,
 * failures are taken for an outage and retried for `retryWindowMs`. A request that may have reached a
 * controller before its connection broke is repeated elsewhere only when repeating it is harmless
 * (`idempotent`: GET, HEAD, PUT, DELETE, and POSTs marked so, such as the worker protocol's).
 */
import { createReadStream } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import type * as Ws from 'ws';
import type { WebSocket } from 'ws';
import type { ExecutionView } from '../api/execution-view.js';
import type { Digest } from '../core/digest.js';
import { DigestBuilder } from '../core/digest.js';
import type { ErrorCode } from '../core/errors.js';
import { InvalidArgumentError, RemexError, UnavailableError } from '../core/errors.js';
import type { FleetStatus, PlatformStatus } from '../scheduler/scheduler.js';
import type { WorkerRecord } from '../store/ports.js';

import { HttpTransport, isReplayable, TransportError } from './transport.js';
import type { RequestBody } from './transport.js';

/** A worker as `GET /v1/workers` lists it: its record and the jobs it runs now. */
/** A worker as `GET /v1/workers` lists it: `running` and `price` are absent from older servers. */
export type ListedWorker = WorkerRecord & { running?: number; price?: { perHour: number; from: 'worker' | 'platform' } | null };

export interface ExecutionSubmission {
  platform?: string;
  executable: Digest;
  executableName?: string;
  files?: Record<string, Digest & { executable?: boolean }>;
  args?: string[];
  stdin?: string;
  stdinDigest?: Digest;
  env?: Record<string, string>;
  timeoutMs?: number;
  /** Past timeoutMs, how long before the failsafe layers end the run as emergency_stopped. */
  failsafeMs?: number;
  limits?: Record<string, number>;
  outputPaths?: string[];
  priority?: number;
  doNotCache?: boolean;
  skipCacheLookup?: boolean;
  name?: string;
  labels?: Record<string, string>;
  /** Give the program a progress channel (`REMEX_PROGRESS`). */
  progress?: boolean;
  /** Give the program a results directory (`REMEX_RESULTS`), collected whichever way the run ends. */
  results?: boolean;
  /** Stream stdout and stderr live, kept in the CAS up to `logCeilingBytes` each (a long job; `remex logs`). */
  logs?: boolean;
  logCeilingBytes?: number;
  /** Run at most once: a lost worker fails it as LOST instead of running it again. */
  noRetry?: boolean;
  /** Where the server POSTs the final result (a signed webhook). */
  notify?: string;
}

/** `GET /v1/executions`' filters (see api/execution-query.ts). */
export interface ExecutionListQuery {
  states?: readonly string[];
  labels?: Readonly<Record<string, string>>;
  name?: string;
  /** A duration back from now (`4h`) or an ISO 8601 time. */
  since?: string;
  limit?: number;
  after?: string;
}

export type SubmittedExecution = ExecutionView & { merged: boolean };

export interface RemexClientOptions {
  /** Bearer token sent with every request and with the event relay's upgrade request. */
  token?: string | undefined;
  /** PEM CA certificate(s) to trust for https:// controllers (instead of Node's bundled roots). */
  ca?: string | Buffer | undefined;
  /** Longest wait for a connection to one controller (default 5 s). */
  connectTimeoutMs?: number;
  /** After a controller has answered once: how long to keep trying when none can be reached (default 30 s). */
  retryWindowMs?: number;
}

export interface RequestOptions {
  signal?: AbortSignal | undefined;
  /** Safe to send again if the connection broke after sending (default: every method but POST). */
  idempotent?: boolean;
  /** Longest wait for the answer once connected (default: none). */
  timeoutMs?: number;
}

/** A frame of a job's output stream (`GET /v1/executions/<id>/logs`, the WebSocket's `follow`). */
export type LogFrame =
  | { event: 'log'; id: string; attempt: number; stream: 'stdout' | 'stderr'; offset: number; data: string }
  | {
      event: 'end';
      id: string;
      state: string | null;
      attempt?: number;
      stdout?: { totalBytes: number; keptBytes: number; truncated: boolean };
      stderr?: { totalBytes: number; keptBytes: number; truncated: boolean };
    };

export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
export const DEFAULT_RETRY_WINDOW_MS = 30_000;
const BACKOFF_BASE_MS = 100;
const BACKOFF_MAX_MS = 2_000;

/** Splits a `--server` value: one address, or several separated by commas. */
export function parseServerList(value: string | readonly string[]): string[] {
  const items = (typeof value === 'string' ? [value] : value).flatMap((v) => v.split(','));
  const servers = items.map((s) => s.trim()).filter((s) => s !== '');
  if (servers.length === 0) throw new InvalidArgumentError('no remex server address given');
  return servers.map((s) => {
    let url: URL;
    try {
      url = new URL(s);
    } catch {
      throw new InvalidArgumentError(`${JSON.stringify(s)} is not a URL (expected http://host:port or https://host:port)`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidArgumentError(`${s}: only http:// and https:// servers are supported`);
    if (url.username || url.password) throw new InvalidArgumentError(`${url.host}: credentials do not go in the URL; use a token file`);
    return s.replace(/\/+$/, '');
  });
}

export type ServerChangeListener = (change: { from: string; to: string; reason: string }) => void;

export class RemexClient {
  /** The controllers, in the order given. */
  readonly servers: readonly string[];
  private currentIndex = 0;
  private changes = 0;
  private contacted = false;
  private readonly listeners: ServerChangeListener[] = [];
  private readonly transport: HttpTransport;
  // Private (#) so that the token shows in no inspection, JSON or error of the client.
  readonly #token: string | undefined;
  readonly #ca: string | Buffer | undefined;
  private readonly connectTimeoutMs: number;
  private readonly retryWindowMs: number;

  /** `servers`: one URL, a comma-separated list, or an array of URLs. */
  constructor(servers: string | readonly string[], opts: RemexClientOptions = {}) {
    this.servers = parseServerList(servers);
    this.#token = opts.token;
    this.#ca = opts.ca;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.retryWindowMs = opts.retryWindowMs ?? DEFAULT_RETRY_WINDOW_MS;
    this.transport = new HttpTransport({ ca: opts.ca, connectTimeoutMs: this.connectTimeoutMs });
  }

  /** The controller requests go to now. */
  get baseUrl(): string {
    return this.servers[this.currentIndex] as string;
  }

  /** How many times requests have moved to another controller. */
  get serverChanges(): number {
    return this.changes;
  }

  /** Called whenever requests move to another controller. */
  onServerChange(listener: ServerChangeListener): void {
    this.listeners.push(listener);
  }

  async request<T>(method: string, path: string, body?: unknown, init: RequestOptions = {}): Promise<T> {
    const json = body === undefined ? undefined : JSON.stringify(body);
    const res = await this.send(path, {
      method,
      headers: json === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(json)) },
      body: json,
      ...init,
    });
    return (await readJson(res)) as T;
  }

  /** A raw request as a web Response (failover included). */
  async fetch(path: string, init: RequestInit & { duplex?: 'half'; idempotent?: boolean } = {}): Promise<Response> {
    const headers: Record<string, string> = {};
    new Headers(init.headers).forEach((value, name) => (headers[name] = value));
    const body = init.body;
    if (body !== undefined && body !== null && typeof body !== 'string' && !(body instanceof Uint8Array) && !(body instanceof ReadableStream)) {
      throw new InvalidArgumentError('RemexClient.fetch takes a string, bytes or a ReadableStream as body');
    }
    const res = await this.send(path, {
      method: init.method ?? 'GET',
      headers,
      body: body ?? undefined,
      signal: init.signal ?? undefined,
      ...(init.idempotent !== undefined ? { idempotent: init.idempotent } : {}),
    });
    const status = res.statusCode ?? 500;
    const empty = status === 204 || status === 304 || init.method === 'HEAD';
    if (empty) res.resume();
    const responseHeaders = new Headers();
    for (const [name, value] of Object.entries(res.headers)) {
      if (value !== undefined) responseHeaders.set(name, Array.isArray(value) ? value.join(', ') : value);
    }
    return new Response(empty ? null : (Readable.toWeb(res) as unknown as ReadableStream<Uint8Array>), { status, headers: responseHeaders });
  }

  health(): Promise<Record<string, unknown>> {
    return this.request('GET', '/healthz');
  }

  async findMissing(digests: readonly Digest[]): Promise<Digest[]> {
    if (digests.length === 0) return [];
    return (await this.request<{ missing: Digest[] }>('POST', '/v1/blobs/find-missing', { digests }, { idempotent: true })).missing;
  }

  /** Uploads a blob; a stream is given as a factory so that it can be sent again to another controller. */
  async putBlob(digest: Digest, data: Uint8Array | (() => Readable)): Promise<void> {
    const res = await this.send(`/v1/blobs/sha256/${digest.hash}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(digest.sizeBytes) },
      body: data,
    });
    await readJson(res);
  }

  /** Digests a local file by streaming it, uploads it only when the server lacks it, returns its digest. */
  async uploadFile(path: string): Promise<Digest> {
    const digest = await digestFile(path);
    if ((await this.findMissing([digest])).length > 0) await this.putBlob(digest, () => createReadStream(path));
    return digest;
  }

  async getBlob(digest: Digest): Promise<Buffer> {
    const res = await this.send(`/v1/blobs/sha256/${digest.hash}`, { method: 'GET', headers: {} });
    if (res.statusCode !== 200) await readJson(res);
    return readAll(res);
  }

  /** Size of the blob the server holds under this hash (a HEAD request), or undefined when it holds none. */
  async blobSize(hash: string): Promise<number | undefined> {
    const res = await this.send(`/v1/blobs/sha256/${encodeURIComponent(hash)}`, { method: 'HEAD', headers: {} });
    if (res.statusCode !== 200 && res.statusCode !== 404) await readJson(res);
    res.resume();
    if (res.statusCode === 404) return undefined;
    const size = Number(res.headers['content-length']);
    if (!Number.isSafeInteger(size) || size < 0) throw new RemexError('INTERNAL', `the server answered HEAD of blob ${hash} without a usable Content-Length`);
    return size;
  }

  async blobStream(digest: Digest): Promise<AsyncIterable<Uint8Array>> {
    const res = await this.send(`/v1/blobs/sha256/${digest.hash}`, { method: 'GET', headers: {} });
    if (res.statusCode !== 200) await readJson(res);
    return res;
  }

  submit(req: ExecutionSubmission, opts: { wait?: boolean; signal?: AbortSignal } = {}): Promise<SubmittedExecution> {
    return this.request('POST', `/v1/executions${opts.wait ? '?wait=1' : ''}`, req, opts.signal ? { signal: opts.signal } : {});
  }

  getExecution(id: string): Promise<ExecutionView> {
    return this.request('GET', `/v1/executions/${encodeURIComponent(id)}`);
  }

  /** One page of executions, newest first; `next` asks for the page after. */
  listExecutions(q: ExecutionListQuery = {}): Promise<{ executions: ExecutionView[]; next: string | null }> {
    const params = new URLSearchParams();
    if (q.states?.length) params.set('state', q.states.join(','));
    for (const [name, value] of Object.entries(q.labels ?? {})) params.append('label', `${name}=${value}`);
    if (q.name !== undefined) params.set('name', q.name);
    if (q.since !== undefined) params.set('since', q.since);
    if (q.limit !== undefined) params.set('limit', String(q.limit));
    if (q.after !== undefined) params.set('after', q.after);
    const search = params.toString();
    return this.request('GET', `/v1/executions${search ? `?${search}` : ''}`);
  }

  /**
   * A job's output as the frames of `GET /v1/executions/<id>/logs` (log frames, then one end frame), parsed
   * as they arrive; NotFoundError for an unknown job. `follow`: until the job ends.
   */
  async *logs(id: string, q: { follow?: boolean; stream?: 'stdout' | 'stderr'; offset?: number; signal?: AbortSignal } = {}): AsyncGenerator<LogFrame> {
    const params = new URLSearchParams();
    if (q.follow) params.set('follow', '1');
    if (q.stream) params.set('stream', q.stream);
    if (q.offset !== undefined) params.set('offset', String(q.offset));
    const search = params.toString();
    const res = await this.send(`/v1/executions/${encodeURIComponent(id)}/logs${search ? `?${search}` : ''}`, { method: 'GET', headers: {}, ...(q.signal ? { signal: q.signal } : {}) });
    if (res.statusCode !== 200) await readJson(res);
    let pending = '';
    res.setEncoding('utf8');
    for await (const text of res as AsyncIterable<string>) {
      pending += text;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (line.trim() !== '') yield JSON.parse(line) as LogFrame;
      }
    }
  }

  cancel(id: string): Promise<ExecutionView> {
    return this.request('POST', `/v1/executions/${encodeURIComponent(id)}/cancel`, undefined, { idempotent: true });
  }

  /** The worker registry (needs a worker token where the server has tokens). */
  async workers(): Promise<ListedWorker[]> {
    return (await this.request<{ workers: ListedWorker[] }>('GET', '/v1/workers')).workers;
  }

  /** Orders a worker to drain: it finishes what it holds, leaves, and its process exits. */
  async drainWorker(workerId: string): Promise<WorkerRecord> {
    return (await this.request<{ worker: WorkerRecord }>('POST', `/v1/workers/${encodeURIComponent(workerId)}/drain`, {})).worker;
  }

  /** Withdraws a drain order the worker has not acted on yet (FAILED_PRECONDITION once it drains or left). */
  async undrainWorker(workerId: string): Promise<WorkerRecord> {
    return (await this.request<{ worker: WorkerRecord }>('POST', `/v1/workers/${encodeURIComponent(workerId)}/undrain`, {})).worker;
  }

  async platforms(): Promise<PlatformStatus[]> {
    return (await this.status()).platforms;
  }

  /** Platforms, and the fleet's totals with each worker counted once (absent from servers before them). */
  async status(): Promise<{ platforms: PlatformStatus[]; fleet?: FleetStatus }> {
    return this.request<{ platforms: PlatformStatus[]; fleet?: FleetStatus }>('GET', '/v1/platforms');
  }

  /** The WebSocket URL of the current controller's event relay. */
  get eventsUrl(): string {
    return `${this.baseUrl.replace(/^http/, 'ws')}/v1/events`;
  }

  /** Opens the current controller's event relay with this client's token and trusted CA. */
  openEvents(): WebSocket {
    // Loaded when first needed, by require (ws is CommonJS; an ESM import of it runs the CommonJS export
    // scanner over its nine files): a `remex run` answered at once never pays for it.
    const { WebSocket: WebSocketClass } = loadWs();
    return new WebSocketClass(this.eventsUrl, {
      headers: this.#token !== undefined ? { authorization: `Bearer ${this.#token}` } : {},
      ...(this.#ca !== undefined ? { ca: this.#ca } : {}),
      handshakeTimeout: this.connectTimeoutMs,
    });
  }

  /** Closes idle connections (a process that exits needs not call it). */
  close(): void {
    this.transport.close();
  }

  private async send(path: string, r: { method: string; headers: Record<string, string>; body?: RequestBody | undefined } & RequestOptions): Promise<IncomingMessage> {
    const headers = this.#token !== undefined ? { ...r.headers, authorization: `Bearer ${this.#token}` } : r.headers;
    const replayable = isReplayable(r.body);
    const idempotent = r.idempotent ?? r.method !== 'POST';
    const started = Date.now();
    const reasons = new Map<string, string>();
    let untrusted = false;
    let retriedStale = false;
    let failures = 0;
    for (let round = 0; ; ) {
      const index = this.currentIndex;
      const base = this.servers[index] as string;
      let reason: string;
      try {
        const res = await this.transport.request(new URL(`${base}${path}`), { method: r.method, headers, body: r.body, signal: r.signal, timeoutMs: r.timeoutMs });
        const status = res.statusCode ?? 0;
        // 503: the controller (or its proxy) did not take the request. 502/504: a proxy may have passed it on.
        const elsewhere = replayable && (status === 503 || ((status === 502 || status === 504) && idempotent));
        if (!elsewhere) {
          this.contacted = true;
          return res;
        }
        reason = `HTTP ${status}${await problemDetail(res)}`;
      } catch (err) {
        if (!(err instanceof TransportError)) throw err; // aborted by the caller, or the body's source failed
        if (err.staleSocket && replayable && idempotent && !retriedStale) {
          retriedStale = true; // the controller had closed an idle connection: not a sign that it is gone
          continue;
        }
        if (!replayable || (err.phase === 'sent' && !idempotent)) {
          throw new UnavailableError(
            err.phase === 'sent'
              ? `lost the connection to remex at ${base} during ${r.method} ${path} (${err.message}); the request may or may not have been processed`
              : `cannot reach remex at ${base}: ${err.message}`,
            { cause: err },
          );
        }
        untrusted ||= err.untrustedCertificate;
        reason = err.message;
      }
      reasons.set(base, reason);
      failures++;
      this.moveFrom(index, reason);
      if (failures % this.servers.length === 0) {
        const windowMs = this.contacted ? this.retryWindowMs : 0;
        const elapsed = Date.now() - started;
        if (elapsed >= windowMs) {
          const list = [...reasons].map(([server, why]) => `${server}: ${why}`).join('; ');
          const hint = untrusted ? ' (the certificate is not signed by a trusted CA: give the CA with --ca-file or REMEX_CA_FILE)' : '';
          throw new UnavailableError(`cannot reach remex at ${list}${hint}`);
        }
        await sleep(Math.min(backoffMs(round++), windowMs - elapsed), r.signal);
      }
    }
  }

  /** Moves on from the controller at `index`, unless another request already has. */
  private moveFrom(index: number, reason: string): void {
    if (this.servers.length < 2 || this.currentIndex !== index) return;
    const from = this.servers[index] as string;
    this.currentIndex = (index + 1) % this.servers.length;
    this.changes++;
    const to = this.baseUrl;
    for (const listener of this.listeners) listener({ from, to, reason });
  }
}

function backoffMs(round: number): number {
  return Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** round) * (0.5 + Math.random() / 2);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export async function digestFile(path: string): Promise<Digest> {
  const builder = new DigestBuilder();
  // A stream of the path, not of a FileHandle: node:fs/promises (and what it loads) stays unloaded.
  for await (const chunk of createReadStream(path)) builder.update(chunk as Buffer);
  return builder.digest();
}

interface ProblemBody {
  code?: string;
  detail?: string;
  details?: Record<string, unknown>;
}

async function readAll(res: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** ": <detail>" of a problem response (read and discarded), for failover messages. */
async function problemDetail(res: IncomingMessage): Promise<string> {
  try {
    const problem = JSON.parse((await readAll(res)).toString('utf8')) as ProblemBody;
    return problem.detail ? `: ${problem.detail}` : '';
  } catch {
    return '';
  }
}

async function readJson(res: IncomingMessage): Promise<unknown> {
  const text = (await readAll(res)).toString('utf8');
  let body: unknown;
  try {
    body = text === '' ? undefined : JSON.parse(text);
  } catch {
    body = undefined;
  }
  const status = res.statusCode ?? 500;
  if (status >= 200 && status < 300) return body;
  const problem = (body ?? {}) as ProblemBody;
  const code = (problem.code ?? (status === 401 ? 'UNAUTHENTICATED' : status === 403 ? 'PERMISSION_DENIED' : status >= 500 ? 'INTERNAL' : 'INVALID_ARGUMENT')) as ErrorCode;
  throw new RemexError(code, problem.detail ?? `HTTP ${status}`, problem.details ? { details: problem.details } : {});
}

let ws: typeof Ws | undefined;
function loadWs(): typeof Ws {
  return (ws ??= createRequire(import.meta.url)('ws') as typeof Ws);
}
