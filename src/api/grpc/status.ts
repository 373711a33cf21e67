/**
 * The one place where errors become gRPC statuses. A RemexError keeps its code (remex's codes are gRPC's
 * canonical names) and message; a MissingBlobsError also carries a google.rpc.PreconditionFailure with one
 * `MISSING` violation per blob, as REAPI clients expect, in the `grpc-status-details-bin` trailer (and in
 * `details` of a google.rpc.Status inside a message). Anything else is INTERNAL with a generic message:
 * its stack stays in the server log.
 */
import { Metadata, status as GrpcStatus } from '@grpc/grpc-js';
import type { ServerErrorResponse, StatusObject } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { Digest } from '../../core/digest.js';
import type { JobFailureCode } from '../../core/errors.js';
import { isJobFailureCode, MissingBlobsError, RemexError } from '../../core/errors.js';
import type { Any, PreconditionFailure, Status } from './messages.js';
import { reapiProtos } from './protos.js';

/** The REAPI subject of a missing blob: `blobs/{hash}/{size}` (SHA-256 takes no digest-function segment). */
export function missingBlobSubject(d: Digest): string {
  return `blobs/${d.hash}/${d.sizeBytes}`;
}

const GRPC_CODE: Readonly<Record<JobFailureCode, GrpcStatus>> = {
  INVALID_ARGUMENT: GrpcStatus.INVALID_ARGUMENT,
  NOT_FOUND: GrpcStatus.NOT_FOUND,
  ALREADY_EXISTS: GrpcStatus.ALREADY_EXISTS,
  FAILED_PRECONDITION: GrpcStatus.FAILED_PRECONDITION,
  RESOURCE_EXHAUSTED: GrpcStatus.RESOURCE_EXHAUSTED,
  OUT_OF_RANGE: GrpcStatus.OUT_OF_RANGE,
  PERMISSION_DENIED: GrpcStatus.PERMISSION_DENIED,
  UNAUTHENTICATED: GrpcStatus.UNAUTHENTICATED,
  UNAVAILABLE: GrpcStatus.UNAVAILABLE,
  ABORTED: GrpcStatus.ABORTED,
  CANCELLED: GrpcStatus.CANCELLED,
  DEADLINE_EXCEEDED: GrpcStatus.DEADLINE_EXCEEDED,
  UNIMPLEMENTED: GrpcStatus.UNIMPLEMENTED,
  INTERNAL: GrpcStatus.INTERNAL,
  // A job whose workers kept disappearing: worth retrying, like any transient failure.
  LOST: GrpcStatus.UNAVAILABLE,
};

/**
 * gRPC's number for an error or job-failure code. A code outside the table (a failure stored by another
 * version of remex: stored rows are not re-validated) is INTERNAL.
 */
export function grpcCode(code: JobFailureCode): GrpcStatus {
  return isJobFailureCode(code) ? GRPC_CODE[code] : GrpcStatus.INTERNAL;
}

export const OK_STATUS: Readonly<Status> = Object.freeze({ code: GrpcStatus.OK, message: '', details: [] });

/**
 * An error as a google.rpc.Status message (per-blob statuses, ExecuteResponse.status). Unknown errors are
 * logged here and reported as INTERNAL without their message.
 */
export function toRpcStatus(err: unknown, logger?: Logger): Status {
  if (err instanceof RemexError) {
    return { code: grpcCode(err.code), message: err.message, details: detailsOf(err) };
  }
  logger?.error({ err }, 'internal error in the gRPC door');
  return { code: GrpcStatus.INTERNAL, message: 'internal error (see the server log)', details: [] };
}

/**
 * An error as the status a call ends with: code, message, and the rich status in
 * `grpc-status-details-bin`. What an interceptor sends (`auth.ts`); handlers get it as toServiceError.
 */
export function toCallStatus(err: unknown, logger?: Logger): StatusObject {
  const rpc = toRpcStatus(err, logger);
  const metadata = new Metadata();
  if (rpc.details && rpc.details.length > 0) {
    metadata.set('grpc-status-details-bin', reapiProtos().codec<Status, unknown>('google.rpc.Status').encode(rpc));
  }
  return { code: rpc.code as GrpcStatus, details: rpc.message ?? '', metadata };
}

/** An error as what grpc-js sends for a handler's error (the same status as toCallStatus). */
export function toServiceError(err: unknown, logger?: Logger): ServerErrorResponse {
  const status = toCallStatus(err, logger);
  const error = new Error(status.details) as ServerErrorResponse;
  error.code = status.code;
  error.details = status.details;
  error.metadata = status.metadata;
  return error;
}

/** Packs a message into google.protobuf.Any. */
export function packAny<T>(typeName: string, message: T): Any {
  const codec = reapiProtos().codec<T, unknown>(typeName);
  return { type_url: codec.typeUrl, value: codec.encode(message) };
}

function detailsOf(err: RemexError): Any[] {
  if (err instanceof MissingBlobsError) {
    const failure: PreconditionFailure = {
      violations: err.missing.map((d) => ({ type: 'MISSING', subject: missingBlobSubject(d), description: 'blob not in the CAS' })),
    };
    return [packAny('google.rpc.PreconditionFailure', failure)];
  }
  return [];
}
