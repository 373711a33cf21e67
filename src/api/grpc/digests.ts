/**
 * REAPI Digest messages ↔ remex digests. `size_bytes` is an int64 decoded as a number (LOADER_OPTIONS):
 * validateDigest refuses anything that is not a non-negative safe integer, so no size is ever rounded.
 * remex digests with SHA-256 only; requests naming another digest function are refused.
 */
import type { Digest } from '../../core/digest.js';
import { validateDigest } from '../../core/digest.js';
import { InvalidArgumentError } from '../../core/errors.js';
import type { Digest as DigestMsg, DigestOut } from './messages.js';

/** A required Digest field of a request; InvalidArgumentError when absent or malformed. */
export function fromProtoDigest(d: DigestOut | null | undefined, what: string): Digest {
  if (!d) throw new InvalidArgumentError(`${what} is required`);
  return validateDigest({ hash: d.hash, sizeBytes: d.size_bytes }, what);
}

export function toProtoDigest(d: Digest): DigestMsg {
  return { hash: d.hash, size_bytes: d.sizeBytes };
}

/** Accepts the digest_function field of a request: unset (UNKNOWN, meaning the server's) or SHA256. */
export function checkDigestFunction(value: string | number): void {
  if (value === 'UNKNOWN' || value === 'SHA256' || value === 0 || value === 1) return;
  throw new InvalidArgumentError(`digest function ${String(value)} is not supported: this server uses SHA256 only`);
}
