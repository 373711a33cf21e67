/**
 * Content digests: SHA-256 of the bytes plus their length, as the Remote Execution API names them.
 * A digest is a value; two digests are equal when hash and size are.
 */
import { createHash } from 'node:crypto';
import { InvalidArgumentError } from './errors.js';

export interface Digest {
  /** Lower-case hex SHA-256, 64 characters. */
  readonly hash: string;
  readonly sizeBytes: number;
}

/** A digest's hash: lower-case hex SHA-256, whole string. The one spelling of it in remex. */
export const HASH_RE = /^[0-9a-f]{64}$/;

export const EMPTY_DIGEST: Digest = Object.freeze({
  hash: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  sizeBytes: 0,
});

export function isValidHash(hash: string): boolean {
  return HASH_RE.test(hash);
}

/** Checks shape only (hex, non-negative safe integer size); throws InvalidArgumentError otherwise. */
export function validateDigest(d: { hash?: unknown; sizeBytes?: unknown }, what = 'digest'): Digest {
  if (typeof d.hash !== 'string' || !isValidHash(d.hash)) {
    throw new InvalidArgumentError(`${what}: hash must be 64 lower-case hex characters (SHA-256)`);
  }
  const size = d.sizeBytes;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw new InvalidArgumentError(`${what}: sizeBytes must be a non-negative integer`);
  }
  return { hash: d.hash, sizeBytes: size };
}

export function digestOf(data: Uint8Array | string): Digest {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  return { hash: createHash('sha256').update(bytes).digest('hex'), sizeBytes: bytes.byteLength };
}

export function digestEquals(a: Digest, b: Digest): boolean {
  return a.hash === b.hash && a.sizeBytes === b.sizeBytes;
}

/** `hash/size`, the form REAPI resource names and remex's logs use. */
export function formatDigest(d: Digest): string {
  return `${d.hash}/${d.sizeBytes}`;
}

export function parseDigest(text: string): Digest {
  const slash = text.indexOf('/');
  if (slash < 0) throw new InvalidArgumentError(`digest ${JSON.stringify(text)} is not of the form hash/size`);
  const sizeText = text.slice(slash + 1);
  if (!/^\d{1,16}$/.test(sizeText)) throw new InvalidArgumentError(`digest ${JSON.stringify(text)}: bad size`);
  return validateDigest({ hash: text.slice(0, slash), sizeBytes: Number(sizeText) });
}

/** Incremental digest over chunks, for streams that must never be buffered whole. */
export class DigestBuilder {
  private readonly hash = createHash('sha256');
  private size = 0;

  update(chunk: Uint8Array): this {
    this.hash.update(chunk);
    this.size += chunk.byteLength;
    return this;
  }

  get bytesSoFar(): number {
    return this.size;
  }

  digest(): Digest {
    return { hash: this.hash.digest('hex'), sizeBytes: this.size };
  }
}
