/**
 * The blobs a queued or running job needs — its input tree (every Directory and file in it) and its
 * stdin — for a capped filesystem CAS, which never evicts them (cas/fs/blob-usage.ts's PinSource). Asked
 * once per eviction pass; each input root's blobs are remembered while a job of it is in flight, so a
 * pass costs one listing of in-flight jobs and a walk of each new tree.
 */
import type { PinSource } from '../cas/fs/blob-usage.js';
import type { BlobStore } from '../cas/blob-store.js';
import { formatDigest } from '../core/digest.js';
import type { JobStore } from '../store/ports.js';
import { inputTreeBlobs } from './blob-closure.js';

/** Jobs listed per page; every queued and running job is listed. */
const PAGE = 1000;

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
        if (!blobs) this.trees.set(key, (blobs = await inputTreeBlobs(root, this.blobs)));
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
}
