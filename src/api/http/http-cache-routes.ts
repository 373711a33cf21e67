/**
 * Bazel's HTTP cache protocol, at the paths bazel-remote serves, so `bazel build
 * --remote_cache=http://host:port` works against remex:
 *
 *   GET | HEAD | PUT /cas/<sha256>   a blob (the body is the blob; verified against the hash and the length)
 *   GET | HEAD | PUT /ac/<sha256>    an ActionResult (protobuf) for the action with that hash
 *
 * The protocol names an action by its hash alone, where remex's action cache keys by digest (hash and
 * size) and instance. Its entries are kept under {@link HTTP_CACHE_INSTANCE}, a name REAPI reserves (no
 * gRPC client can name it), with size 0: HTTP and gRPC clients do not share action-cache entries. An entry
 * is stored as the gRPC door stores a client's UpdateActionResult (action-result.ts), with the paths as
 * given (Bazel's are relative to the execution root), every blob it names present; a GET checks the blobs
 * again and drops an entry whose blobs are gone, as the gRPC door does (decision 0035).
 *
 * Bodies are taken whatever their Content-Type (Bazel sends none that matters; `curl -T` none at all).
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { BlobStore } from '../../cas/blob-store.js';
import type { Digest } from '../../core/digest.js';
import { digestOf, EMPTY_DIGEST, formatDigest, HASH_RE } from '../../core/digest.js';
import { InvalidArgumentError, MissingBlobsError, NotFoundError, TooLargeError } from '../../core/errors.js';
import type { ActionCache } from '../../store/ports.js';
import { blobsOfReport, fromActionResult, toActionResult } from '../grpc/action-result.js';
import type { OutputLayout } from '../grpc/action-result.js';
import { missingTreeBlobs } from '../grpc/cached-results.js';
import { fromProtoDigest } from '../grpc/digests.js';
import { INLINE_OUTPUT_BYTES } from '../grpc/limits.js';
import type { ActionResult, ActionResultOut, DigestOut } from '../grpc/messages.js';
import { reapiProtos } from '../grpc/protos.js';
import type { MessageCodec } from '../grpc/protos.js';

/** The action-cache instance holding the HTTP cache's entries: a segment REAPI reserves, so no gRPC client reaches it. */
export const HTTP_CACHE_INSTANCE = 'actionResults';
/** Largest ActionResult accepted on `PUT /ac/…`. */
export const MAX_ACTION_RESULT_BYTES = 4 * 1024 * 1024;
/** Paths are kept as the client sent them. */
const AS_GIVEN: OutputLayout = { workingDirectory: '' };

export interface HttpCacheDeps {
  blobs: BlobStore;
  actionCache: ActionCache;
}

/**
 * A PUT whose body is taken as a stream whatever its Content-Type (or none): the blob routes of both the
 * v1 API and the cache protocol. Registered in its own Fastify context, so JSON routes keep their parser.
 */
export function acceptAnyBody(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
}

/** The declared length of a blob PUT; InvalidArgument without one, TooLarge over the store's limit. */
export function blobLength(headers: Record<string, string | string[] | undefined>, blobs: BlobStore): number {
  const length = Number(headers['content-length']);
  if (headers['content-length'] === undefined || !Number.isSafeInteger(length) || length < 0) throw new InvalidArgumentError('PUT of a blob needs a Content-Length header');
  if (length > blobs.maxBlobBytes) throw new TooLargeError(`blob of ${length} bytes is over the limit of ${blobs.maxBlobBytes}`);
  return length;
}

/** The request body as a stream (an empty one when the request had none). */
export function bodyStream(body: unknown): AsyncIterable<Uint8Array> {
  if (typeof body === 'object' && body !== null && 'pipe' in body) return body as Readable;
  return (async function* () {})();
}

/**
 * Streams a request body into the store. When the store gives up early (a full disk, bytes past the
 * digest's size), the rest of the body is still read and dropped, so the client, still sending, gets the
 * error response rather than a reset connection.
 */
export async function storeBody(blobs: BlobStore, digest: Digest, body: unknown): Promise<void> {
  const source = bodyStream(body);
  if (!(source instanceof Readable)) return blobs.putStream(digest, source);
  try {
    await blobs.putStream(digest, source.iterator({ destroyOnReturn: false }));
  } catch (err) {
    if (!source.readableEnded && !source.destroyed) {
      source.resume();
      await finished(source).catch(() => undefined);
    }
    throw err;
  }
}

/** Answers a HEAD for a blob: its size, or 404 with no body. */
export async function replyBlobSize(blobs: BlobStore, hash: string, reply: FastifyReply): Promise<FastifyReply> {
  const size = await blobs.sizeOf(hash);
  if (size === undefined) return reply.status(404).send();
  return reply.status(200).header('content-length', size).send();
}

/** Answers a GET for a blob: its bytes streamed, or NotFoundError. */
export async function replyBlob(blobs: BlobStore, hash: string, reply: FastifyReply): Promise<FastifyReply> {
  const size = await blobs.sizeOf(hash);
  if (size === undefined) throw new NotFoundError(`no blob ${hash}`);
  const stream = await blobs.getStream({ hash, sizeBytes: size });
  return reply.status(200).type('application/octet-stream').header('content-length', size).send(stream);
}

export function registerHttpCacheRoutes(app: FastifyInstance, deps: HttpCacheDeps): void {
  const { blobs, actionCache } = deps;
  const codec = reapiProtos().codec<ActionResult, ActionResultOut>('build.bazel.remote.execution.v2.ActionResult');

  // ---- /cas -------------------------------------------------------------------------------------------
  app.put<{ Params: { hash: string } }>('/cas/:hash', async (req, reply) => {
    const digest = { hash: cacheHash(req.params.hash), sizeBytes: blobLength(req.headers, blobs) };
    const body = bodyStream(req.body);
    if (await blobs.has(digest)) {
      (body as Partial<Readable>).resume?.();
      return reply.status(200).send();
    }
    await storeBody(blobs, digest, req.body);
    return reply.status(200).send();
  });

  app.head<{ Params: { hash: string } }>('/cas/:hash', async (req, reply) => replyBlobSize(blobs, cacheHash(req.params.hash), reply));
  app.get<{ Params: { hash: string } }>('/cas/:hash', async (req, reply) => replyBlob(blobs, cacheHash(req.params.hash), reply));

  // ---- /ac --------------------------------------------------------------------------------------------
  app.put<{ Params: { hash: string } }>('/ac/:hash', async (req, reply) => {
    const key = actionKey(req.params.hash);
    const length = Number(req.headers['content-length'] ?? 0);
    if (length > MAX_ACTION_RESULT_BYTES) throw new TooLargeError(`ActionResult of ${length} bytes is over the limit of ${MAX_ACTION_RESULT_BYTES}`);
    const bytes = await readBody(bodyStream(req.body), MAX_ACTION_RESULT_BYTES);
    const result = decodeActionResult(codec, bytes);
    const report = fromActionResult(result, AS_GIVEN, {
      stdout: await uploadedStream(blobs, result.stdout_digest, result.stdout_raw, 'stdout'),
      stderr: await uploadedStream(blobs, result.stderr_digest, result.stderr_raw, 'stderr'),
    });
    const missing = await blobs.findMissing(blobsOfReport(report));
    if (missing.length === 0) missing.push(...(await missingTreeBlobs(report, blobs)));
    if (missing.length > 0) throw new MissingBlobsError(missing);
    await actionCache.put(HTTP_CACHE_INSTANCE, key, report, Date.now());
    return reply.status(200).send();
  });

  const lookup = async (hash: string): Promise<Buffer | undefined> => {
    const key = actionKey(hash);
    const report = await actionCache.get(HTTP_CACHE_INSTANCE, key);
    if (!report) return undefined;
    const missing = await blobs.findMissing(blobsOfReport(report));
    if (missing.length > 0 || (await missingTreeBlobs(report, blobs)).length > 0) {
      await actionCache.delete(HTTP_CACHE_INSTANCE, key);
      return undefined;
    }
    return codec.encode(toActionResult(report, AS_GIVEN, { inlineStdout: false, inlineStderr: false }));
  };

  app.head<{ Params: { hash: string } }>('/ac/:hash', async (req, reply) => {
    const bytes = await lookup(req.params.hash);
    if (!bytes) return reply.status(404).send();
    return reply.status(200).header('content-length', bytes.byteLength).send();
  });

  app.get<{ Params: { hash: string } }>('/ac/:hash', async (req, reply: FastifyReply) => {
    const bytes = await lookup(req.params.hash);
    if (!bytes) throw new NotFoundError(`no cached result for action ${req.params.hash}`);
    return reply.status(200).type('application/octet-stream').send(bytes);
  });
}

function cacheHash(text: string): string {
  if (!HASH_RE.test(text)) throw new InvalidArgumentError('hash must be 64 lower-case hex characters (SHA-256)');
  return text;
}

/** The action-cache key of an action known by its hash alone (see {@link HTTP_CACHE_INSTANCE}). */
function actionKey(hash: string): Digest {
  return { hash: cacheHash(hash), sizeBytes: 0 };
}

/**
 * The ActionResult in `bytes`. Protobuf decoding skips fields it does not know, so garbage can decode to
 * an empty message: bytes are accepted only when they are all fields of an ActionResult (the decoded
 * message, which holds exactly the fields present, encodes back to as many bytes).
 */
function decodeActionResult(codec: MessageCodec<ActionResult, ActionResultOut>, bytes: Buffer): ActionResultOut {
  const refused = (why: string, cause?: unknown): InvalidArgumentError =>
    new InvalidArgumentError(`PUT /ac/… needs a serialized build.bazel.remote.execution.v2.ActionResult: ${why}`, cause === undefined ? undefined : { cause });
  const type = reapiProtos().root.lookupType(codec.typeName);
  let exact: number;
  try {
    exact = type.encode(type.decode(bytes)).finish().byteLength;
  } catch (err) {
    throw refused(err instanceof Error ? err.message : String(err), err);
  }
  if (exact !== bytes.byteLength) throw refused('the body has bytes that are not its fields');
  return codec.decode(bytes);
}

async function readBody(source: AsyncIterable<Uint8Array>, maxBytes: number): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of source) {
    total += chunk.byteLength;
    if (total > maxBytes) throw new TooLargeError(`body is over the limit of ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** A stream's digest, storing raw bytes sent inline (as the gRPC door's UpdateActionResult does). */
async function uploadedStream(blobs: BlobStore, digestMsg: DigestOut | null, raw: Buffer, what: string): Promise<{ digest: Digest; inline: Buffer | null }> {
  if (raw.byteLength > 0) {
    const digest = digestOf(raw);
    if (digestMsg) {
      const given = fromProtoDigest(digestMsg, `${what}_digest`);
      if (formatDigest(given) !== formatDigest(digest)) throw new InvalidArgumentError(`${what}_raw does not match ${what}_digest`);
    }
    await blobs.put(digest, raw);
    return { digest, inline: raw.byteLength <= INLINE_OUTPUT_BYTES ? raw : null };
  }
  return { digest: digestMsg ? fromProtoDigest(digestMsg, `${what}_digest`) : EMPTY_DIGEST, inline: null };
}
