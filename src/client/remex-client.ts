/**
 * A typed client of remex's HTTP API, used by the CLI, by `remex worker` and by tests. Server problems
 * come back as RemexError with the server's code; a server that cannot be reached is UNAVAILABLE.
 */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { ExecutionView } from '../api/execution-view.js';
import type { Digest } from '../core/digest.js';
import { DigestBuilder } from '../core/digest.js';
import type { ErrorCode } from '../core/errors.js';
import { RemexError, UnavailableError } from '../core/errors.js';
import type { PlatformStatus } from '../scheduler/scheduler.js';

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
  limits?: Record<string, number>;
  outputPaths?: string[];
  priority?: number;
  doNotCache?: boolean;
  skipCacheLookup?: boolean;
}

export type SubmittedExecution = ExecutionView & { merged: boolean };

export class RemexClient {
  readonly baseUrl: string;

  constructor(baseUrl: string) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
  }

  async request<T>(method: string, path: string, body?: unknown, init: { signal?: AbortSignal } = {}): Promise<T> {
    const res = await this.fetch(path, {
      method,
      ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
      ...(init.signal ? { signal: init.signal } : {}),
    });
    return (await readJson(res)) as T;
  }

  async fetch(path: string, init: RequestInit & { duplex?: 'half' }): Promise<Response> {
    try {
      return await fetch(`${this.baseUrl}${path}`, init);
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw err;
      throw new UnavailableError(`cannot reach remex at ${this.baseUrl}: ${(err as Error).message}`, { cause: err });
    }
  }

  health(): Promise<Record<string, unknown>> {
    return this.request('GET', '/healthz');
  }

  async findMissing(digests: readonly Digest[]): Promise<Digest[]> {
    if (digests.length === 0) return [];
    return (await this.request<{ missing: Digest[] }>('POST', '/v1/blobs/find-missing', { digests })).missing;
  }

  async putBlob(digest: Digest, data: Uint8Array | (() => Readable)): Promise<void> {
    const body = data instanceof Uint8Array ? data : Readable.toWeb(data()) as ReadableStream<Uint8Array>;
    const res = await this.fetch(`/v1/blobs/sha256/${digest.hash}`, {
      method: 'PUT',
      body,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(digest.sizeBytes) },
      duplex: 'half',
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
    const res = await this.fetch(`/v1/blobs/sha256/${digest.hash}`, { method: 'GET' });
    if (!res.ok) await readJson(res);
    return Buffer.from(await res.arrayBuffer());
  }

  async blobStream(digest: Digest): Promise<AsyncIterable<Uint8Array>> {
    const res = await this.fetch(`/v1/blobs/sha256/${digest.hash}`, { method: 'GET' });
    if (!res.ok || !res.body) await readJson(res);
    return res.body as unknown as AsyncIterable<Uint8Array>;
  }

  submit(req: ExecutionSubmission, opts: { wait?: boolean; signal?: AbortSignal } = {}): Promise<SubmittedExecution> {
    return this.request('POST', `/v1/executions${opts.wait ? '?wait=1' : ''}`, req, opts.signal ? { signal: opts.signal } : {});
  }

  getExecution(id: string): Promise<ExecutionView> {
    return this.request('GET', `/v1/executions/${encodeURIComponent(id)}`);
  }

  cancel(id: string): Promise<ExecutionView> {
    return this.request('POST', `/v1/executions/${encodeURIComponent(id)}/cancel`);
  }

  async platforms(): Promise<PlatformStatus[]> {
    return (await this.request<{ platforms: PlatformStatus[] }>('GET', '/v1/platforms')).platforms;
  }

  /** The WebSocket URL of the event relay. */
  get eventsUrl(): string {
    return `${this.baseUrl.replace(/^http/, 'ws')}/v1/events`;
  }
}

export async function digestFile(path: string): Promise<Digest> {
  const builder = new DigestBuilder();
  const handle = await open(path, 'r');
  try {
    for await (const chunk of handle.createReadStream()) builder.update(chunk as Buffer);
  } finally {
    await handle.close().catch(() => undefined);
  }
  return builder.digest();
}

interface ProblemBody {
  code?: string;
  detail?: string;
  details?: Record<string, unknown>;
}

async function readJson(res: Response): Promise<unknown> {
  const text = await res.text();
  let body: unknown;
  try {
    body = text === '' ? undefined : JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (res.ok) return body;
  const problem = (body ?? {}) as ProblemBody;
  const code = (problem.code ?? (res.status >= 500 ? 'INTERNAL' : 'INVALID_ARGUMENT')) as ErrorCode;
  throw new RemexError(code, problem.detail ?? `HTTP ${res.status}`, problem.details ? { details: problem.details } : {});
}
