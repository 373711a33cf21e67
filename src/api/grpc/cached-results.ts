/**
 * Whether a cached result can still be served: every blob it names exists, including the Tree of each
 * output directory and every file inside those trees. A client told of a result whose bytes are gone would
 * fail later, far from the cause (Bazel's "builds without the bytes" break on exactly that), so such an
 * entry is treated as a miss and dropped.
 *
 * The scheduler's lookupCache checks the blobs a report names directly; the files inside output trees are
 * checked here, by the door that knows what a Tree is.
 */
import type { BlobStore } from '../../cas/blob-store.js';
import { decodeTree } from '../../cas/directory-codec.js';
import type { Digest } from '../../core/digest.js';
import { isRemexError } from '../../core/errors.js';
import type { RunReport } from '../../core/model.js';
import { MAX_TREE_BYTES } from './limits.js';

/** Digests of the blobs missing from under a report's output directories: their Trees, or files inside them. */
export async function missingTreeBlobs(report: RunReport, blobs: BlobStore): Promise<Digest[]> {
  const trees = report.outputDirectories ?? [];
  if (trees.length === 0) return [];
  const missingTrees = await blobs.findMissing(trees.map((d) => d.treeDigest));
  if (missingTrees.length > 0) return missingTrees;
  const files: Digest[] = [];
  for (const { treeDigest } of trees) {
    if (treeDigest.sizeBytes > MAX_TREE_BYTES) return [treeDigest];
    let tree: ReturnType<typeof decodeTree>;
    try {
      tree = decodeTree(await blobs.get(treeDigest));
    } catch (err) {
      // Gone since findMissing, or not a Tree at all: either way the entry cannot be served.
      if (isRemexError(err, 'NOT_FOUND') || isRemexError(err, 'INVALID_ARGUMENT')) return [treeDigest];
      throw err;
    }
    for (const dir of [tree.root, ...tree.children.map((c) => c.directory)]) files.push(...dir.files.map((f) => f.digest));
  }
  return blobs.findMissing(files);
}
