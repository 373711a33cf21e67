/**
 * The blobs a queued or running job needs — its input tree (every Directory and file in it) and its
 * stdin — for a capped filesystem CAS, which never evicts them (cas/fs/blob-usage.ts's PinSource). Asked
 * once per eviction pass; each input root's blobs are remembered while a job of it is in flight, so a
 * pass costs one listing of in-flight jobs and a walk of each new tree.
 */
import type { PinSource } from '../cas/fs/blob-usage.js';
import type { BlobStore } from '../cas/blob-store.js';
import { decodeDirectory } from '../cas/directory-codec.js';
import type { Digest } from '../core/digest.js';
import { formatDigest } from '../core/digest.js';
import { isRemexError } from '../core/errors.js';
import type { JobStore } from '../store/ports.js';

/** Jobs listed per page; every queued and running job is listed. */
const PAGE = 1000;
/** Directories walked per tree at most: a larger tree is pinned as far as this goes. */
const MAX_DIRECTORIES = 100_000;

export class JobInputPins implements PinSource {
  /** Blobs of each input root seen in flight, by formatted digest. */
  private readonly trees = new Map<string, ReadonlySet<string>>();

  constructor(
    private readonly jobs: JobStore,
    private readonly blobs: BlobStore,
  ) {}

  async pinnedHashes(): Promise<ReadonlySet<string>> {
    const pinned = new Set<string>();
    const inFlight = new Set<string>();
    let afterId: string | undefined;
    for (;;) {
      const page = await this.jobs.list({ limit: PAGE, states: ['queued', 'running'], ...(afterId ? { afterId } : {}) });
      for (const job of page) {
        const root = job.spec.inputRootDigest;
        const key = formatDigest(root);
        inFlight.add(key);
        let blobs = this.trees.get(key);
        if (!blobs) this.trees.set(key, (blobs = await this.treeBlobs(root)));
        for (const hash of blobs) pinned.add(hash);
        if (job.spec.stdinDigest) pinned.add(job.spec.stdinDigest.hash);
      }
      if (page.length < PAGE) break;
      afterId = page[page.length - 1]?.id;
    }
    // Trees no job in flight uses any more are forgotten.
    for (const key of this.trees.keys()) if (!inFlight.has(key)) this.trees.delete(key);
    return pinned;
  }

  /** Every blob hash under `root`, itself included; a Directory missing from the store ends that branch. */
  private async treeBlobs(root: Digest): Promise<ReadonlySet<string>> {
    const hashes = new Set<string>([root.hash]);
    let level: Digest[] = [root];
    let walked = 0;
    while (level.length > 0 && walked < MAX_DIRECTORIES) {
      const next: Digest[] = [];
      for (const digest of level) {
        walked++;
        let dir: ReturnType<typeof decodeDirectory>;
        try {
          dir = decodeDirectory(await this.blobs.get(digest));
        } catch (err) {
          // Gone, or not a Directory: the job will fail on it anyway; nothing under it to keep.
          if (isRemexError(err, 'NOT_FOUND') || isRemexError(err, 'INVALID_ARGUMENT')) continue;
          throw err;
        }
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
}
