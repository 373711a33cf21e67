/**
 * The one place where errors become gRPC statuses. A RemexError keeps its code (remex's codes are gRPC's
 * canonical names) and message; a MissingBlobsError also carries a google.rpc.PreconditionFailure with one
 * `MISSING` violation per blob, as REAPI clients expect, in the `grpc-status-details-bin` trailer (and in
 * `details` of a google.rpc.Status inside a message). Anything else is INTERNAL with a generic message:
 * its stack stays in the server log.
 */
import { Metadata, status as GrpcStatus } from '@grpc/grpc-js';
import type { ServerErrorResponse } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { Digest } from '../../core/digest.js';
import type { ErrorCode } from '../../core/errors.js';
import { MissingBlobsError, RemexError } from '../../core/errors.js';
import type { Any, PreconditionFailure, Status } from './messages.js';
import { reapiProtos } from './protos.js';

/** The REAPI subject of a missing blob: `blobs/{hash}/{size}` (SHA-256 takes no digest-function segment). */
export function missingBlobSubject(d: Digest): string {
  return `blobs/${d.hash}/${d.sizeBytes}`;
}

/** gRPC's number for a canonical code name; an unknown name (a failure code of remex's own) is INTERNAL. */
export function grpcCode(code: ErrorCode | string): GrpcStatus {
  // 'LOST': a job whose workers kept disappearing; worth retrying, like any transient failure.
  if (code === 'LOST') return GrpcStatus.UNAVAILABLE;
  const value = (GrpcStatus as unknown as Record<string, unknown>)[code];
  return typeof value === 'number' && code !== 'OK' ? (value as GrpcStatus) : GrpcStatus.INTERNAL;
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

/** An error as what grpc-js sends: status code, message, and the rich status in `grpc-status-details-bin`. */
export function toServiceError(err: unknown, logger?: Logger): ServerErrorResponse {
  const rpc = toRpcStatus(err, logger);
  const metadata = new Metadata();
  if (rpc.details && rpc.details.length > 0) {
    metadata.set('grpc-status-details-bin', reapiProtos().codec<Status, unknown>('google.rpc.Status').encode(rpc));
  }
  const error = new Error(rpc.message ?? '') as ServerErrorResponse;
  error.code = rpc.code as GrpcStatus;
  error.details = rpc.message ?? '';
  error.metadata = metadata;
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
