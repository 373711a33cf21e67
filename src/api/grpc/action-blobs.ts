/**
 * Reads the protobuf messages REAPI clients put in the CAS for an execution: the Action (whose digest is
 * the cache and merge key) and the Command it names.
 */
import type { BlobStore } from '../../cas/blob-store.js';
import type { Digest } from '../../core/digest.js';
import { formatDigest } from '../../core/digest.js';
import { isRemexError, TooLargeError } from '../../core/errors.js';
import type { ActionOut, CommandOut } from './messages.js';
import { reapiProtos } from './protos.js';

/** Bounds on what is read whole into memory: an Action is a few digests, a Command an argv and environment. */
export const MAX_ACTION_BYTES = 1024 * 1024;
export const MAX_COMMAND_BYTES = 16 * 1024 * 1024;

/** The Action stored under `digest`, or undefined when the CAS lacks it. InvalidArgumentError when it is not one. */
export function readAction(blobs: BlobStore, digest: Digest): Promise<ActionOut | undefined> {
  return readMessage<ActionOut>(blobs, digest, 'build.bazel.remote.execution.v2.Action', MAX_ACTION_BYTES);
}

/** The Command stored under `digest`, or undefined when the CAS lacks it. InvalidArgumentError when it is not one. */
export function readCommand(blobs: BlobStore, digest: Digest): Promise<CommandOut | undefined> {
  return readMessage<CommandOut>(blobs, digest, 'build.bazel.remote.execution.v2.Command', MAX_COMMAND_BYTES);
}

async function readMessage<T>(blobs: BlobStore, digest: Digest, typeName: string, maxBytes: number): Promise<T | undefined> {
  if (digest.sizeBytes > maxBytes) {
    throw new TooLargeError(`${typeName.split('.').pop()} ${formatDigest(digest)} is larger than ${maxBytes} bytes`);
  }
  let bytes: Buffer;
  try {
    bytes = await blobs.get(digest);
  } catch (err) {
    if (isRemexError(err, 'NOT_FOUND')) return undefined;
    throw err;
  }
  return reapiProtos().codec<unknown, T>(typeName).decode(bytes);
}
