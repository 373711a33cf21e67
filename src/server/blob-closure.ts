/**
 * The blobs under a tree, as the CAS holds them: an input root (Directory blobs, walked) or an output
 * directory (one Tree blob, decoded). For the eviction pins (job-pins.ts) and the retention sweep's blob
 * references (retention.ts). A blob missing from the store ends its branch: nothing under it can be named.
 */
import type { BlobStore } from '../cas/blob-store.js';
import { decodeDirectory, decodeTree } from '../cas/directory-codec.js';
import type { Digest } from '../core/digest.js';
import { isRemexError } from '../core/errors.js';

/** Directories walked per tree at most: a larger tree is covered as far as this goes. */
const MAX_DIRECTORIES = 100_000;

/** Reads a blob, or undefined when it is gone or not what it should be (the caller's job fails on it anyway). */
async function readOrSkip<T>(blobs: BlobStore, digest: Digest, decode: (bytes: Buffer) => T): Promise<T | undefined> {
  try {
    return decode(await blobs.get(digest));
  } catch (err) {
    if (isRemexError(err, 'NOT_FOUND') || isRemexError(err, 'INVALID_ARGUMENT')) return undefined;
    throw err;
  }
}

/** Every blob hash under an input root (every Directory and file), the root itself included. */
export async function inputTreeBlobs(root: Digest, blobs: BlobStore): Promise<Set<string>> {
  const hashes = new Set<string>([root.hash]);
  let level: Digest[] = [root];
  let walked = 0;
  while (level.length > 0 && walked < MAX_DIRECTORIES) {
    const next: Digest[] = [];
    for (const digest of level) {
      walked++;
      const dir = await readOrSkip(blobs, digest, decodeDirectory);
      if (!dir) continue;
      for (const f of dir.files) hashes.add(f.digest.hash);
      for (const d of dir.directories) {
        if (hashes.has(d.digest.hash)) continue;
        hashes.add(d.digest.hash);
        next.push(d.digest);
      }
    }
    level = next;
  }
  return hashes;
}

/** One Directory's own entries (file hashes, subdirectory digests), or undefined when it is gone or no Directory. */
export async function directoryEntries(digest: Digest, blobs: BlobStore): Promise<{ files: string[]; directories: Digest[] } | undefined> {
  const dir = await readOrSkip(blobs, digest, decodeDirectory);
  return dir && { files: dir.files.map((f) => f.digest.hash), directories: dir.directories.map((d) => d.digest) };
}

/** Every blob hash an output directory's Tree names (its files, and its child Directories as blobs), the Tree itself included. */
export async function outputTreeBlobs(tree: Digest, blobs: BlobStore): Promise<Set<string>> {
  const hashes = new Set<string>([tree.hash]);
  const decoded = await readOrSkip(blobs, tree, decodeTree);
  if (!decoded) return hashes;
  for (const f of decoded.root.files) hashes.add(f.digest.hash);
  for (const child of decoded.children) {
    hashes.add(child.digest.hash);
    for (const f of child.directory.files) hashes.add(f.digest.hash);
  }
  return hashes;
}
