/**
 * ByteStream resource names as REAPI defines them:
 *   read:  {instance/}blobs/{hash}/{size}
 *   write: {instance/}uploads/{uuid}/blobs/{hash}/{size}{/optional metadata}
 * and their compressed forms, `compressed-blobs/{compressor}/{hash}/{size}` in place of
 * `blobs/{hash}/{size}`, where the digest is of the uncompressed bytes (zstd only: the capabilities
 * advertise it). A `sha256/` digest-function segment before the hash is tolerated.
 */
import type { Digest } from '../../core/digest.js';
import { validateDigest } from '../../core/digest.js';
import { InvalidArgumentError } from '../../core/errors.js';

/** The compressors served, by their name in resource names (REAPI's Compressor.Value, lower case). */
export const RESOURCE_COMPRESSORS = ['zstd'] as const;
export type ResourceCompressor = (typeof RESOURCE_COMPRESSORS)[number];

export interface BlobResource {
  instance: string;
  digest: Digest;
  /** Set for a `compressed-blobs/…` name: the bytes on the wire are compressed so. */
  compressor?: ResourceCompressor;
}

export interface UploadResource extends BlobResource {
  uploadId: string;
}

/** Parses a Read resource name; InvalidArgumentError otherwise (an unknown compressor included). */
export function parseReadResource(name: string): BlobResource {
  const segments = name.split('/');
  const at = segments.findIndex((s) => s === 'blobs' || s === 'compressed-blobs');
  if (at < 0) throw bad(name, 'expected {instance/}blobs/{hash}/{size}');
  const compressor = segments[at] === 'compressed-blobs' ? compressorOf(segments[at + 1], name) : undefined;
  const { digest, rest } = digestAfter(segments.slice(at + (compressor ? 2 : 1)), name);
  if (rest.length > 0) throw bad(name, 'unexpected segments after the size');
  return { instance: segments.slice(0, at).join('/'), digest, ...(compressor ? { compressor } : {}) };
}

/** Parses a Write resource name; InvalidArgumentError otherwise (an unknown compressor included). */
export function parseWriteResource(name: string): UploadResource {
  const segments = name.split('/');
  const at = segments.indexOf('uploads');
  if (at < 0) throw bad(name, 'expected {instance/}uploads/{uuid}/blobs/{hash}/{size}');
  const uploadId = segments[at + 1];
  if (!uploadId) throw bad(name, 'no upload id after "uploads/"');
  const kind = segments[at + 2];
  if (kind !== 'blobs' && kind !== 'compressed-blobs') throw bad(name, 'expected "blobs/" or "compressed-blobs/" after the upload id');
  const compressor = kind === 'compressed-blobs' ? compressorOf(segments[at + 3], name) : undefined;
  // Anything after the size is optional metadata, which REAPI lets servers ignore.
  const { digest } = digestAfter(segments.slice(at + (compressor ? 4 : 3)), name);
  return { instance: segments.slice(0, at).join('/'), uploadId, digest, ...(compressor ? { compressor } : {}) };
}

/** REAPI's lower-case DigestFunction names, as they may appear in resource names. */
const DIGEST_FUNCTIONS: ReadonlySet<string> = new Set(['sha256', 'sha1', 'md5', 'vso', 'sha384', 'sha512', 'murmur3', 'sha256tree', 'blake3', 'gitsha1']);

function digestAfter(segments: string[], name: string): { digest: Digest; rest: string[] } {
  let i = 0;
  if (segments[0] !== undefined && DIGEST_FUNCTIONS.has(segments[0])) {
    if (segments[0] !== 'sha256') throw bad(name, `digest function "${segments[0]}" is not supported (SHA-256 only)`);
    i = 1;
  }
  const hash = segments[i];
  const size = segments[i + 1];
  if (hash === undefined || size === undefined) throw bad(name, 'expected {hash}/{size}');
  if (!/^\d{1,16}$/.test(size)) throw bad(name, `size ${JSON.stringify(size)} is not a decimal byte count`);
  try {
    return { digest: validateDigest({ hash, sizeBytes: Number(size) }, 'digest'), rest: segments.slice(i + 2) };
  } catch (err) {
    throw bad(name, err instanceof Error ? err.message : String(err));
  }
}

function bad(name: string, reason: string): InvalidArgumentError {
  return new InvalidArgumentError(`bad resource name ${JSON.stringify(name)}: ${reason}`);
}

function compressorOf(segment: string | undefined, name: string): ResourceCompressor {
  const found = RESOURCE_COMPRESSORS.find((c) => c === segment);
  if (!found) throw bad(name, `compressor ${JSON.stringify(segment ?? '')} is not supported (this server compresses with ${RESOURCE_COMPRESSORS.join(', ')})`);
  return found;
}
