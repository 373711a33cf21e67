/**
 * Short names for the generated message types the gRPC door uses. For each message `X`, `X` is what the
 * door builds (permissive: optional fields, numbers or strings for 64-bit integers) and `XOut` what it
 * receives (every field present, as decoded with LOADER_OPTIONS in protos.ts).
 */
export type { Action, Action__Output as ActionOut } from './generated/build/bazel/remote/execution/v2/Action.js';
export type { ActionResult, ActionResult__Output as ActionResultOut } from './generated/build/bazel/remote/execution/v2/ActionResult.js';
export type { BatchReadBlobsRequest, BatchReadBlobsRequest__Output as BatchReadBlobsRequestOut } from './generated/build/bazel/remote/execution/v2/BatchReadBlobsRequest.js';
export type { BatchReadBlobsResponse, BatchReadBlobsResponse__Output as BatchReadBlobsResponseOut } from './generated/build/bazel/remote/execution/v2/BatchReadBlobsResponse.js';
export type { BatchUpdateBlobsRequest, BatchUpdateBlobsRequest__Output as BatchUpdateBlobsRequestOut } from './generated/build/bazel/remote/execution/v2/BatchUpdateBlobsRequest.js';
export type { BatchUpdateBlobsResponse, BatchUpdateBlobsResponse__Output as BatchUpdateBlobsResponseOut } from './generated/build/bazel/remote/execution/v2/BatchUpdateBlobsResponse.js';
export type { Command, Command__Output as CommandOut } from './generated/build/bazel/remote/execution/v2/Command.js';
export type { Digest, Digest__Output as DigestOut } from './generated/build/bazel/remote/execution/v2/Digest.js';
export type { Directory, Directory__Output as DirectoryOut } from './generated/build/bazel/remote/execution/v2/Directory.js';
export type { ExecuteOperationMetadata, ExecuteOperationMetadata__Output as ExecuteOperationMetadataOut } from './generated/build/bazel/remote/execution/v2/ExecuteOperationMetadata.js';
export type { ExecuteRequest, ExecuteRequest__Output as ExecuteRequestOut } from './generated/build/bazel/remote/execution/v2/ExecuteRequest.js';
export type { ExecuteResponse, ExecuteResponse__Output as ExecuteResponseOut } from './generated/build/bazel/remote/execution/v2/ExecuteResponse.js';
export type { ExecutedActionMetadata, ExecutedActionMetadata__Output as ExecutedActionMetadataOut } from './generated/build/bazel/remote/execution/v2/ExecutedActionMetadata.js';
export type { FindMissingBlobsRequest, FindMissingBlobsRequest__Output as FindMissingBlobsRequestOut } from './generated/build/bazel/remote/execution/v2/FindMissingBlobsRequest.js';
export type { FindMissingBlobsResponse, FindMissingBlobsResponse__Output as FindMissingBlobsResponseOut } from './generated/build/bazel/remote/execution/v2/FindMissingBlobsResponse.js';
export type { GetActionResultRequest, GetActionResultRequest__Output as GetActionResultRequestOut } from './generated/build/bazel/remote/execution/v2/GetActionResultRequest.js';
export type { GetCapabilitiesRequest, GetCapabilitiesRequest__Output as GetCapabilitiesRequestOut } from './generated/build/bazel/remote/execution/v2/GetCapabilitiesRequest.js';
export type { GetTreeRequest, GetTreeRequest__Output as GetTreeRequestOut } from './generated/build/bazel/remote/execution/v2/GetTreeRequest.js';
export type { GetTreeResponse, GetTreeResponse__Output as GetTreeResponseOut } from './generated/build/bazel/remote/execution/v2/GetTreeResponse.js';
export type { OutputDirectory, OutputDirectory__Output as OutputDirectoryOut } from './generated/build/bazel/remote/execution/v2/OutputDirectory.js';
export type { OutputFile, OutputFile__Output as OutputFileOut } from './generated/build/bazel/remote/execution/v2/OutputFile.js';
export type { Platform, Platform__Output as PlatformOut } from './generated/build/bazel/remote/execution/v2/Platform.js';
export type { ServerCapabilities, ServerCapabilities__Output as ServerCapabilitiesOut } from './generated/build/bazel/remote/execution/v2/ServerCapabilities.js';
export type { Tree, Tree__Output as TreeOut } from './generated/build/bazel/remote/execution/v2/Tree.js';
export type { UpdateActionResultRequest, UpdateActionResultRequest__Output as UpdateActionResultRequestOut } from './generated/build/bazel/remote/execution/v2/UpdateActionResultRequest.js';
export type { WaitExecutionRequest, WaitExecutionRequest__Output as WaitExecutionRequestOut } from './generated/build/bazel/remote/execution/v2/WaitExecutionRequest.js';
export type { ReadRequest, ReadRequest__Output as ReadRequestOut } from './generated/google/bytestream/ReadRequest.js';
export type { ReadResponse, ReadResponse__Output as ReadResponseOut } from './generated/google/bytestream/ReadResponse.js';
export type { WriteRequest, WriteRequest__Output as WriteRequestOut } from './generated/google/bytestream/WriteRequest.js';
export type { WriteResponse, WriteResponse__Output as WriteResponseOut } from './generated/google/bytestream/WriteResponse.js';
export type { QueryWriteStatusRequest, QueryWriteStatusRequest__Output as QueryWriteStatusRequestOut } from './generated/google/bytestream/QueryWriteStatusRequest.js';
export type { QueryWriteStatusResponse, QueryWriteStatusResponse__Output as QueryWriteStatusResponseOut } from './generated/google/bytestream/QueryWriteStatusResponse.js';
export type { Operation, Operation__Output as OperationOut } from './generated/google/longrunning/Operation.js';
export type { Status, Status__Output as StatusOut } from './generated/google/rpc/Status.js';
export type { PreconditionFailure, PreconditionFailure__Output as PreconditionFailureOut } from './generated/google/rpc/PreconditionFailure.js';
export type { HealthCheckRequest, HealthCheckRequest__Output as HealthCheckRequestOut } from './generated/grpc/health/v1/HealthCheckRequest.js';
export type { HealthCheckResponse, HealthCheckResponse__Output as HealthCheckResponseOut } from './generated/grpc/health/v1/HealthCheckResponse.js';
export type { Timestamp, Timestamp__Output as TimestampOut } from './generated/google/protobuf/Timestamp.js';
export type { Duration, Duration__Output as DurationOut } from './generated/google/protobuf/Duration.js';
export type { Any, Any__Output as AnyOut } from './generated/google/protobuf/Any.js';
