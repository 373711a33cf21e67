/**
 * ByteStream resource names as REAPI defines them:
 *   read:  {instance/}blobs/{hash}/{size}
 *   write: {instance/}uploads/{uuid}/blobs/{hash}/{size}{/optional metadata}
 * A `sha256/` digest-function segment before the hash is tolerated. Compressed forms
 * (`compressed-blobs/{compressor}/…`) are UNIMPLEMENTED: the capabilities advertise no compressor.
 */
import type { Digest } from '../../core/digest.js';
import { validateDigest } from '../../core/digest.js';
import { InvalidArgumentError, RemexError } from '../../core/errors.js';

export interface BlobResource {
  instance: string;
  digest: Digest;
}

export interface UploadResource extends BlobResource {
  uploadId: string;
}

/** Parses a Read resource name; InvalidArgumentError (UNIMPLEMENTED for compressed blobs) otherwise. */
export function parseReadResource(name: string): BlobResource {
  const segments = name.split('/');
  const at = segments.findIndex((s) => s === 'blobs' || s === 'compressed-blobs');
  if (at < 0) throw bad(name, 'expected {instance/}blobs/{hash}/{size}');
  if (segments[at] === 'compressed-blobs') throw compressed(name);
  const { digest, rest } = digestAfter(segments.slice(at + 1), name);
  if (rest.length > 0) throw bad(name, 'unexpected segments after the size');
  return { instance: segments.slice(0, at).join('/'), digest };
}

/** Parses a Write resource name; InvalidArgumentError (UNIMPLEMENTED for compressed blobs) otherwise. */
export function parseWriteResource(name: string): UploadResource {
  const segments = name.split('/');
  const at = segments.indexOf('uploads');
  if (at < 0) throw bad(name, 'expected {instance/}uploads/{uuid}/blobs/{hash}/{size}');
  const uploadId = segments[at + 1];
  if (!uploadId) throw bad(name, 'no upload id after "uploads/"');
  const kind = segments[at + 2];
  if (kind === 'compressed-blobs') throw compressed(name);
  if (kind !== 'blobs') throw bad(name, 'expected "blobs/" after the upload id');
  // Anything after the size is optional metadata, which REAPI lets servers ignore.
  const { digest } = digestAfter(segments.slice(at + 3), name);
  return { instance: segments.slice(0, at).join('/'), uploadId, digest };
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

function compressed(name: string): RemexError {
  return new RemexError('UNIMPLEMENTED', `compressed blobs are not supported (resource ${JSON.stringify(name)}); use the uncompressed "blobs/" form`);
}
