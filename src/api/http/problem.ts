/**
 * The one place where errors become HTTP responses (RFC 9457 problem JSON). A RemexError keeps its code
 * and message; framework errors (bad JSON, body too large) are classified; anything else becomes INTERNAL
 * with a request id, and its stack stays in the log.
 */
import type { ErrorCode } from '../../core/errors.js';
import { InsufficientStorageError, RemexError, TooLargeError } from '../../core/errors.js';

const STATUS: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: 400,
  FAILED_PRECONDITION: 400,
  OUT_OF_RANGE: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  ABORTED: 409,
  RESOURCE_EXHAUSTED: 429,
  CANCELLED: 499,
  INTERNAL: 500,
  UNIMPLEMENTED: 501,
  UNAVAILABLE: 503,
  DEADLINE_EXCEEDED: 504,
};

export interface Problem {
  status: number;
  body: {
    type: 'about:blank';
    title: ErrorCode;
    status: number;
    code: ErrorCode;
    detail: string;
    details?: Record<string, unknown>;
    requestId: string;
  };
}

interface FrameworkError {
  statusCode?: number;
  code?: string;
  message?: string;
}

export function toProblem(err: unknown, requestId: string): Problem {
  let code: ErrorCode = 'INTERNAL';
  let detail = `internal error (request ${requestId})`;
  let details: Record<string, unknown> | undefined;
  let status: number | undefined;
  if (err instanceof RemexError) {
    code = err.code;
    detail = err.message;
    details = err.details;
    if (err instanceof TooLargeError) status = 413;
    if (err instanceof InsufficientStorageError) status = 507;
  } else if (isFrameworkError(err)) {
    const s = err.statusCode as number;
    status = s;
    code = s === 413 ? 'RESOURCE_EXHAUSTED' : s === 404 ? 'NOT_FOUND' : 'INVALID_ARGUMENT';
    detail = err.message ?? 'bad request';
    // The router's refusals of a URL name the whole URL; say what is wrong instead.
    if (err.code === 'FST_ERR_MAX_PARAM_LENGTH') detail = 'a path segment is too long (at most 100 characters)';
    if (err.code === 'FST_ERR_BAD_URL') detail = 'the URL is not valid (malformed percent-encoding)';
  }
  status ??= STATUS[code];
  return {
    status,
    body: { type: 'about:blank', title: code, status, code, detail, ...(details ? { details } : {}), requestId },
  };
}

/** Fastify's own client errors carry a 4xx statusCode; they are the client's fault, not an internal error. */
function isFrameworkError(err: unknown): err is FrameworkError {
  const s = (err as FrameworkError | null)?.statusCode;
  return typeof s === 'number' && s >= 400 && s < 500;
}
