/**
 * The google.bytestream.ByteStream service for the CAS, with REAPI's resource names (resource-names.ts).
 *
 * Read streams a blob or a range of it from the store, chunk by chunk, waiting on the transport. Write
 * streams into the store through an upload session (upload-sessions.ts): never buffered whole, verified
 * against the digest before the blob becomes visible, and resumable — a Write that breaks off leaves the
 * upload parked, QueryWriteStatus reports its committed size, and a Write at that offset carries on. A
 * Write for a blob the store already has finishes at once with committed_size = its size.
 *
 * Compressed blobs (`compressed-blobs/zstd/…`, REAPI's compressed-blobs): the digest is of the
 * uncompressed bytes, and a blob stored one way is served the other. Read compresses the blob as it
 * streams; read_offset and read_limit count compressed bytes. Write decompresses as the bytes arrive,
 * bounded by the digest's size (a zip bomb stops there), into the same verified putStream; write_offset
 * and committed_size count compressed bytes, and a Write of a blob already present answers
 * committed_size -1, as REAPI asks of compressed uploads.
 */
import type { BlobStore } from '../../cas/blob-store.js';
import { compressZstd } from '../../cas/zstd.js';
import type { Digest } from '../../core/digest.js';
import { formatDigest } from '../../core/digest.js';
import { InvalidArgumentError, RemexError } from '../../core/errors.js';
import { EncodedResponse } from './handlers.js';
import type { CallContext, ResponseSink } from './handlers.js';
import type { InstanceNames } from './instances.js';
import { READ_CHUNK_BYTES } from './limits.js';
import type { QueryWriteStatusRequestOut, QueryWriteStatusResponse, ReadRequestOut, ReadResponse, WriteRequestOut, WriteResponse } from './messages.js';
import { parseReadResource, parseWriteResource } from './resource-names.js';
import type { ResourceCompressor } from './resource-names.js';
import type { UploadSession, UploadSessions } from './upload-sessions.js';

export interface ByteStreamServiceDeps {
  blobs: BlobStore;
  instances: InstanceNames;
  uploads: UploadSessions;
}

export class ByteStreamService {
  constructor(private readonly deps: ByteStreamServiceDeps) {}

  /** read_limit 0 means "to the end" here, where the BlobStore's range limit 0 would read nothing. */
  async read(req: ReadRequestOut, sink: ResponseSink<ReadResponse | EncodedResponse>, ctx: CallContext): Promise<void> {
    const { instance, digest, compressor } = parseReadResource(req.resource_name);
    this.deps.instances.check(instance);
    if (req.read_offset < 0) throw new RemexError('OUT_OF_RANGE', `read_offset ${req.read_offset} is negative`);
    if (req.read_limit < 0) throw new RemexError('OUT_OF_RANGE', `read_limit ${req.read_limit} is negative`);
    if (compressor) {
      await this.readCompressed(digest, req, sink, ctx);
      return;
    }
    if (req.read_offset > digest.sizeBytes) throw new RemexError('OUT_OF_RANGE', `read_offset ${req.read_offset} is past the end of ${formatDigest(digest)}`);
    const stream = await this.deps.blobs.getStream(digest, { offset: req.read_offset, ...(req.read_limit > 0 ? { limit: req.read_limit } : {}) });
    try {
      await sendChunks(stream, sink, ctx);
    } finally {
      destroy(stream);
    }
  }

  /** The whole blob compressed as it streams, of which the bytes from read_offset (compressed) are sent. */
  private async readCompressed(digest: Digest, req: ReadRequestOut, sink: ResponseSink<ReadResponse | EncodedResponse>, ctx: CallContext): Promise<void> {
    const stream = await this.deps.blobs.getStream(digest);
    try {
      let position = 0;
      let left = req.read_limit > 0 ? req.read_limit : Number.POSITIVE_INFINITY;
      for await (const chunk of compressZstd(stream)) {
        const from = Math.max(0, req.read_offset - position);
        position += chunk.byteLength;
        if (from >= chunk.byteLength) continue;
        const part = chunk.subarray(from, from + Math.min(left, chunk.byteLength - from));
        left -= part.byteLength;
        if (!(await sendChunks([part], sink, ctx)) || left === 0) return;
      }
      if (req.read_offset > position) throw new RemexError('OUT_OF_RANGE', `read_offset ${req.read_offset} is past the end of the ${position} compressed bytes of ${formatDigest(digest)}`);
    } finally {
      destroy(stream);
    }
  }

  async write(requests: AsyncIterable<WriteRequestOut>): Promise<WriteResponse> {
    const owner = Symbol('write stream');
    let session: UploadSession | undefined;
    let resourceName = '';
    try {
      for await (const req of requests) {
        if (!session) {
          resourceName = req.resource_name;
          const { instance, digest, compressor } = parseWriteResource(resourceName);
          this.deps.instances.check(instance);
          if (await this.deps.blobs.has(digest)) return { committed_size: compressor ? -1 : digest.sizeBytes };
          session = this.sessionFor(resourceName, digest, req.write_offset, compressor);
          session.attach(owner);
        } else if (req.resource_name !== '' && req.resource_name !== resourceName) {
          throw new InvalidArgumentError(`resource_name changed within one Write (from ${JSON.stringify(resourceName)} to ${JSON.stringify(req.resource_name)})`);
        }
        await session.write(owner, req.write_offset, req.data);
        if (req.finish_write) {
          await session.finish();
          return { committed_size: session.committed };
        }
      }
      if (!session) throw new InvalidArgumentError('Write stream had no request');
      // The client closed its side without finish_write: keep what it sent for a resumed Write.
      session.park(this.deps.uploads.idleMs);
      return { committed_size: session.committed };
    } catch (err) {
      // A broken connection or a refused request (a wrong offset) leaves the upload resumable; bytes the
      // store refused have already ended it.
      if (session?.owner === owner) session.park(this.deps.uploads.idleMs);
      throw err;
    }
  }

  async queryWriteStatus(req: QueryWriteStatusRequestOut): Promise<QueryWriteStatusResponse> {
    const { instance, digest, compressor } = parseWriteResource(req.resource_name);
    this.deps.instances.check(instance);
    if (await this.deps.blobs.has(digest)) return { committed_size: compressor ? -1 : digest.sizeBytes, complete: true };
    // An upload this server never saw (or gave up) reports 0: the client starts over.
    return { committed_size: this.deps.uploads.get(req.resource_name)?.committed ?? 0, complete: false };
  }

  /** The upload to continue at `offset`: the parked one when resuming, a new one from 0. */
  private sessionFor(resourceName: string, digest: UploadSession['digest'], offset: number, compressor: ResourceCompressor | undefined): UploadSession {
    const existing = this.deps.uploads.get(resourceName);
    if (offset === 0) return existing && existing.committed === 0 ? existing : this.deps.uploads.start(resourceName, digest, compressor);
    if (!existing) throw new InvalidArgumentError(`write_offset ${offset} resumes an upload this server does not have; query its status and start at 0`);
    return existing;
  }
}

/**
 * A ReadResponse encoded by hand: its only field is `bytes data = 10`, so the message is the tag 0x52
 * (field 10, length-delimited), the length as a varint, and the bytes, exactly as protobufjs writes it.
 * One allocation and one copy per message, where the generic path converts the object, then encodes
 * through protobufjs's Writer; Read sends a message per 256 KiB, so this is on the path of every byte
 * downloaded.
 */
export function encodeReadResponse(data: Uint8Array): EncodedResponse {
  const header = [0x52];
  for (let n = data.byteLength; ; n = Math.floor(n / 128)) {
    if (n < 128) {
      header.push(n);
      break;
    }
    header.push((n % 128) | 0x80);
  }
  const bytes = Buffer.allocUnsafe(header.length + data.byteLength);
  bytes.set(header, 0);
  bytes.set(data, header.length);
  return new EncodedResponse(bytes);
}

/** Sends `chunks` as ReadResponses of at most READ_CHUNK_BYTES; false once the call is gone. */
async function sendChunks(chunks: AsyncIterable<Buffer> | Iterable<Buffer>, sink: ResponseSink<ReadResponse | EncodedResponse>, ctx: CallContext): Promise<boolean> {
  for await (const chunk of chunks) {
    for (let at = 0; at < chunk.byteLength; at += READ_CHUNK_BYTES) {
      if (ctx.signal.aborted) return false;
      await sink.send(encodeReadResponse(chunk.subarray(at, at + READ_CHUNK_BYTES)));
    }
  }
  return true;
}

function destroy(stream: AsyncIterable<Buffer>): void {
  const maybe = stream as { destroy?: () => void };
  if (typeof maybe.destroy === 'function') maybe.destroy();
}
