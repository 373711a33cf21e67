/**
 * The typed error tree. Every error remex raises on purpose is a {@link RemexError} with a stable
 * {@link ErrorCode}; boundaries (HTTP, gRPC, worker protocol, CLI) convert it in exactly one place each.
 * Codes follow gRPC's canonical status names so the gRPC converter is an identity and HTTP is a table.
 */
import type { Digest } from './digest.js';

/** Every code, for validators and tables that must cover them all. */
export const ERROR_CODES = [
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'FAILED_PRECONDITION',
  'RESOURCE_EXHAUSTED',
  'OUT_OF_RANGE',
  'PERMISSION_DENIED',
  'UNAUTHENTICATED',
  'UNAVAILABLE',
  'ABORTED',
  'CANCELLED',
  'DEADLINE_EXCEEDED',
  'UNIMPLEMENTED',
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** For a code read off the wire (a problem body, a status): a code of another version is not one of ours. */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && (ERROR_CODES as readonly string[]).includes(code);
}

/**
 * Why remex could not run a job (a `failed` or `cancelled` job's `failure.code`): the code of the
 * RemexError that stopped it, or `LOST` — its workers disappeared `maxAttempts` times. A failure is data
 * that outlives the process (stored, sent by workers), so it carries a code, not an error object.
 */
export const JOB_FAILURE_CODES = [...ERROR_CODES, 'LOST'] as const;

export type JobFailureCode = (typeof JOB_FAILURE_CODES)[number];

export function isJobFailureCode(code: unknown): code is JobFailureCode {
  return typeof code === 'string' && (JOB_FAILURE_CODES as readonly string[]).includes(code);
}

export interface RemexErrorOptions {
  cause?: unknown;
  /** Machine-readable details safe to show a client (never secrets, never stacks). */
  details?: Record<string, unknown>;
}

export class RemexError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: RemexErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = options.details;
  }
}

export class InvalidArgumentError extends RemexError {
  constructor(message: string, options?: RemexErrorOptions) {
    super('INVALID_ARGUMENT', message, options);
  }
}

/** Bytes whose SHA-256 or length differ from the digest they were offered under. */
export class DigestMismatchError extends RemexError {
  constructor(
    readonly expected: Digest,
    readonly actual: Digest,
  ) {
    super(
      'INVALID_ARGUMENT',
      `content does not match its digest: expected ${expected.hash}/${expected.sizeBytes}, got ${actual.hash}/${actual.sizeBytes}`,
      { details: { expected, actual } },
    );
  }
}

/** A path that would leave its root: `..`, absolute, empty segments, or through a symlink. */
export class UnsafePathError extends RemexError {
  constructor(
    readonly path: string,
    reason: string,
  ) {
    super('INVALID_ARGUMENT', `unsafe path ${JSON.stringify(path)}: ${reason}`, { details: { path } });
  }
}

export class NotFoundError extends RemexError {
  constructor(message: string, options?: RemexErrorOptions) {
    super('NOT_FOUND', message, options);
  }
}

/** Blobs an execution needs that the store does not hold. REAPI reports these as MISSING violations. */
export class MissingBlobsError extends RemexError {
  constructor(readonly missing: readonly Digest[]) {
    super(
      'FAILED_PRECONDITION',
      `${missing.length} blob(s) missing from the store: ${missing
        .slice(0, 5)
        .map((d) => `${d.hash}/${d.sizeBytes}`)
        .join(', ')}${missing.length > 5 ? ', …' : ''}`,
      { details: { missing } },
    );
  }
}

/** A platform that is malformed, unknown, or that no worker could ever serve. */
export class UnsupportedPlatformError extends RemexError {
  constructor(message: string, options?: RemexErrorOptions) {
    super('FAILED_PRECONDITION', message, options);
  }
}

/** An executable remex cannot run anywhere (PE, Mach-O, an unknown ELF machine, not a binary at all). */
export class UnsupportedExecutableError extends RemexError {
  constructor(message: string, options?: RemexErrorOptions) {
    super('INVALID_ARGUMENT', message, options);
  }
}

export class TooLargeError extends RemexError {
  constructor(message: string, options?: RemexErrorOptions) {
    super('RESOURCE_EXHAUSTED', message, options);
  }
}

/** The store's disk is full (ENOSPC) even after eviction: nothing of the write is visible. HTTP 507. */
export class InsufficientStorageError extends RemexError {
  constructor(message: string, options?: RemexErrorOptions) {
    super('RESOURCE_EXHAUSTED', message, options);
  }
}

/** A state change that lost a race: a stale lease or attempt, a job no longer in the expected state. */
export class ConflictError extends RemexError {
  constructor(message: string, options?: RemexErrorOptions) {
    super('ABORTED', message, options);
  }
}

export class UnavailableError extends RemexError {
  constructor(message: string, options?: RemexErrorOptions) {
    super('UNAVAILABLE', message, options);
  }
}

export class InternalError extends RemexError {
  constructor(message: string, options?: RemexErrorOptions) {
    super('INTERNAL', message, options);
  }
}

export function isRemexError(err: unknown, code?: ErrorCode): err is RemexError {
  return err instanceof RemexError && (code === undefined || err.code === code);
}
