/**
 * The errors every BlobStore adapter raises for the same events, made in one place so that callers (the
 * front doors' converters, the worker, tests) see the same code, message shape and details from each.
 */
import type { Digest } from '../core/digest.js';
import { InternalError, NotFoundError, RemexError } from '../core/errors.js';

/** No blob of this digest (a blob of another size under its hash counts as none). */
export function blobNotFound(digest: Digest, cause?: unknown): NotFoundError {
  return new NotFoundError(`blob ${digest.hash}/${digest.sizeBytes} not found`, { cause, details: { digest } });
}

/**
 * A blob found corrupt before any of it was served, now removed: absent, as the port promises, with
 * `details.corrupt` saying why. `where` names the storage ("on disk", "in S3").
 */
export function corruptBlobRemoved(digest: Digest, where: string): NotFoundError {
  return new NotFoundError(`blob ${digest.hash}/${digest.sizeBytes} was corrupt ${where} and has been removed`, {
    details: { digest, corrupt: true },
  });
}

/**
 * A blob found corrupt at the end of a whole-blob stream, now removed. INTERNAL, not NOT_FOUND: the reader
 * has had all but the last chunk, so the stream fails rather than ends, and no absence can be reported.
 */
export function corruptBlobStreamed(digest: Digest, where: string): InternalError {
  return new InternalError(`blob ${digest.hash}/${digest.sizeBytes} was corrupt ${where} and has been removed`, {
    details: { digest, corrupt: true },
  });
}

/** The error for a materialize onto an existing path: never replaced, never followed if a symlink. */
export function alreadyExists(path: string, cause: unknown): RemexError {
  return new RemexError('ALREADY_EXISTS', `cannot write ${path}: something already exists there`, { cause, details: { path } });
}
