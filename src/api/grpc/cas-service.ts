/**
 * The ContentAddressableStorage service over remex's BlobStore. The CAS is shared by all instance names
 * (content addresses cannot collide); instance names are still checked. Batches are bounded by
 * `maxBatchBytes` (advertised as max_batch_total_size_bytes): a larger request is INVALID_ARGUMENT as a
 * whole, and problems with single blobs get per-blob statuses.
 */
import type { Logger } from 'pino';
import type { BlobStore } from '../../cas/blob-store.js';
import { compressZstdBytes, decompressZstdBytes } from '../../cas/zstd.js';
import type { Digest } from '../../core/digest.js';
import { formatDigest } from '../../core/digest.js';
import { InvalidArgumentError, isRemexError, NotFoundError, TooLargeError } from '../../core/errors.js';
import type { ResponseSink } from './handlers.js';
import { checkDigestFunction, fromProtoDigest, toProtoDigest } from './digests.js';
import type { InstanceNames } from './instances.js';
import type {
  BatchReadBlobsRequestOut,
  BatchReadBlobsResponse,
  BatchUpdateBlobsRequestOut,
  BatchUpdateBlobsResponse,
  Directory as DirectoryMsg,
  DirectoryOut,
  FindMissingBlobsRequestOut,
  FindMissingBlobsResponse,
  GetTreeRequestOut,
  GetTreeResponse,
} from './messages.js';
import { reapiProtos } from './protos.js';
import { OK_STATUS, toRpcStatus } from './status.js';

export interface CasServiceDeps {
  blobs: BlobStore;
  instances: InstanceNames;
  maxBatchBytes: number;
  logger: Logger;
}

/** Directories per GetTree response when the client sets no page size, and the most it may ask for. */
export const DEFAULT_TREE_PAGE_SIZE = 1000;
export const MAX_TREE_PAGE_SIZE = 10_000;
/** Most Directories one GetTree walks, against Directories that refer to one another to explode. */
export const MAX_TREE_DIRECTORIES = 1_000_000;

const BATCH_READ_CONCURRENCY = 16;

export class CasService {
  constructor(private readonly deps: CasServiceDeps) {}

  async findMissingBlobs(req: FindMissingBlobsRequestOut): Promise<FindMissingBlobsResponse> {
    this.deps.instances.check(req.instance_name);
    checkDigestFunction(req.digest_function);
    const digests = req.blob_digests.map((d, i) => fromProtoDigest(d, `blob_digests[${i}]`));
    const missing = await this.deps.blobs.findMissing(digests);
    return { missing_blob_digests: missing.map(toProtoDigest) };
  }

  async batchUpdateBlobs(req: BatchUpdateBlobsRequestOut): Promise<BatchUpdateBlobsResponse> {
    this.deps.instances.check(req.instance_name);
    checkDigestFunction(req.digest_function);
    const total = req.requests.reduce((sum, r) => sum + r.data.byteLength, 0);
    if (total > this.deps.maxBatchBytes) {
      throw new InvalidArgumentError(`batch of ${total} bytes is over this server's limit of ${this.deps.maxBatchBytes} (max_batch_total_size_bytes); use ByteStream Write`);
    }
    const responses = await Promise.all(
      req.requests.map(async (r, i) => {
        try {
          const digest = fromProtoDigest(r.digest, `requests[${i}].digest`);
          if (!isZstd(r.compressor) && !isIdentity(r.compressor)) throw new InvalidArgumentError(`compressor ${String(r.compressor)} is not supported (supported: IDENTITY, ZSTD)`);
          const data = isZstd(r.compressor) ? await decompressZstdBytes(r.data, digest.sizeBytes, `requests[${i}].data`) : r.data;
          await this.deps.blobs.put(digest, data);
          return { digest: toProtoDigest(digest), status: OK_STATUS };
        } catch (err) {
          return { digest: r.digest ?? null, status: toRpcStatus(err, this.deps.logger) };
        }
      }),
    );
    return { responses };
  }

  async batchReadBlobs(req: BatchReadBlobsRequestOut): Promise<BatchReadBlobsResponse> {
    this.deps.instances.check(req.instance_name);
    checkDigestFunction(req.digest_function);
    const digests = req.digests.map((d, i) => fromProtoDigest(d, `digests[${i}]`));
    const total = digests.reduce((sum, d) => sum + d.sizeBytes, 0);
    if (total > this.deps.maxBatchBytes) {
      throw new InvalidArgumentError(`batch of ${total} bytes is over this server's limit of ${this.deps.maxBatchBytes} (max_batch_total_size_bytes); use ByteStream Read`);
    }
    // Compressed replies when the client accepts zstd (a blob stored either way is served either way).
    const zstd = req.acceptable_compressors.some(isZstd);
    const responses: BatchReadBlobsResponse['responses'] = new Array(digests.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < digests.length) {
        const i = next++;
        const digest = digests[i] as Digest;
        try {
          const data = await this.deps.blobs.get(digest);
          responses[i] = zstd
            ? { digest: toProtoDigest(digest), data: compressZstdBytes(data), compressor: 'ZSTD', status: OK_STATUS }
            : { digest: toProtoDigest(digest), data, compressor: 'IDENTITY', status: OK_STATUS };
        } catch (err) {
          responses[i] = { digest: toProtoDigest(digest), data: Buffer.alloc(0), compressor: 'IDENTITY', status: toRpcStatus(err, this.deps.logger) };
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(BATCH_READ_CONCURRENCY, digests.length) }, worker));
    return { responses };
  }

  /**
   * Streams every distinct Directory of a tree, root first, breadth first, at most `page_size` (and about
   * `maxBatchBytes`) per response, the last with an empty next_page_token. A page token is the count of Directories before it, bound to the
   * root, so a client can resume from any page.
   * Directories missing from the CAS below the root are left out, as REAPI allows; a missing root is
   * NOT_FOUND.
   */
  async getTree(req: GetTreeRequestOut, sink: ResponseSink<GetTreeResponse>): Promise<void> {
    this.deps.instances.check(req.instance_name);
    checkDigestFunction(req.digest_function);
    const root = fromProtoDigest(req.root_digest, 'root_digest');
    if (req.page_size < 0) throw new InvalidArgumentError('page_size cannot be negative');
    const pageSize = Math.min(req.page_size || DEFAULT_TREE_PAGE_SIZE, MAX_TREE_PAGE_SIZE);
    const skip = parsePageToken(req.page_token, root);
    if (!(await this.deps.blobs.has(root))) throw new NotFoundError(`root Directory ${formatDigest(root)} is not in the CAS`);

    const codec = reapiProtos().codec<DirectoryMsg, DirectoryOut>('build.bazel.remote.execution.v2.Directory');
    const seen = new Set<string>([formatDigest(root)]);
    let level: Digest[] = [root];
    let position = 0;
    let page: DirectoryOut[] = [];
    let pageBytes = 0;
    const flush = async (token: string): Promise<void> => {
      await sink.send({ directories: page, next_page_token: token });
      page = [];
      pageBytes = 0;
    };
    while (level.length > 0) {
      const next: Digest[] = [];
      for (const digest of level) {
        const bytes = await this.fetch(digest);
        if (!bytes) continue;
        const dir = codec.decode(bytes);
        for (const child of dir.directories) {
          const d = fromProtoDigest(child.digest, `Directory ${formatDigest(digest)}: ${child.name}`);
          const key = formatDigest(d);
          if (seen.has(key)) continue;
          if (seen.size >= MAX_TREE_DIRECTORIES) throw new TooLargeError(`tree has more than ${MAX_TREE_DIRECTORIES} Directories`);
          seen.add(key);
          next.push(d);
        }
        if (position++ < skip) continue;
        // A full page goes out only once another Directory follows it, so the last page says it is the
        // last. Pages are also cut by size, to stay well inside the gRPC message limit.
        if (page.length >= pageSize || (page.length > 0 && pageBytes + bytes.byteLength > this.deps.maxBatchBytes)) await flush(pageToken(root, position - 1));
        page.push(dir);
        pageBytes += bytes.byteLength;
      }
      level = next;
    }
    await flush('');
  }

  private async fetch(digest: Digest): Promise<Buffer | undefined> {
    try {
      return await this.deps.blobs.get(digest);
    } catch (err) {
      if (isRemexError(err, 'NOT_FOUND')) return undefined;
      throw err;
    }
  }
}

/** Compressor.Value as decoded: its name (the loader's enum option), or its number from hand-made messages. */
function isZstd(compressor: unknown): boolean {
  return compressor === 'ZSTD' || compressor === 1;
}

function isIdentity(compressor: unknown): boolean {
  return compressor === 'IDENTITY' || compressor === 0;
}

function pageToken(root: Digest, position: number): string {
  return Buffer.from(`v1:${root.hash}:${position}`, 'utf8').toString('base64url');
}

function parsePageToken(token: string, root: Digest): number {
  if (token === '') return 0;
  // The hash is compared with the root's, which is a valid one: no pattern of its own here.
  const m = /^v1:([^:]*):(\d{1,9})$/.exec(Buffer.from(token, 'base64url').toString('utf8'));
  if (!m || m[1] !== root.hash) throw new InvalidArgumentError('page_token was not issued for this root_digest');
  return Number(m[2]);
}
