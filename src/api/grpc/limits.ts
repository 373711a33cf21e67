/** Sizes the gRPC door works with. */

/** Default of the largest sum of blob sizes one batch call may carry (what Bazel assumes when told nothing). */
export const DEFAULT_MAX_BATCH_BYTES = 4 * 1024 * 1024;

/** A Tree blob is read whole to check an action-cache entry; one larger than this is not served. */
export const MAX_TREE_BYTES = 64 * 1024 * 1024;

/** gRPC message size allowed for a batch limit: the blobs plus room for per-blob framing and digests. */
export function maxMessageBytes(maxBatchBytes: number): number {
  return 2 * maxBatchBytes + 1024 * 1024;
}

/** Largest ReadResponse chunk sent by ByteStream Read. */
export const READ_CHUNK_BYTES = 256 * 1024;

/** stdout/stderr of a client-uploaded result up to this size are kept inline too, as workers keep theirs. */
export const INLINE_OUTPUT_BYTES = 64 * 1024;
