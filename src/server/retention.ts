/**
 * Finished jobs are kept for `remex serve --retain` (default 7 days), then removed by a periodic sweep:
 * their rows, with their results and failure records, and the CAS blobs only they used (decision 0047).
 * Each sweep first records the blob references of jobs and action-cache entries finished since the last
 * (their input tree, stdin, stdout, stderr, output files and trees; a tree's members once per tree), then
 * deletes the jobs — which releases their references in the store — then hands the released hashes that
 * nothing references any more to the CAS, which keeps those a queued or running job needs or a client
 * used within `--cas-grace` (offered again at the next sweep). An S3 bucket keeps itself by its lifecycle rules instead (docs/deploy.md).
 * Their log lines were never stored (the event relay streams them live). Every controller sweeps; with
 * PostgreSQL they skip the rows another is deleting.
 */
import type { Logger } from 'pino';
import type { BlobReclaimer, BlobStore } from '../cas/blob-store.js';
import type { BlobReferenceBatch, BlobReferences, JobStore, UnrecordedOwner } from '../store/ports.js';
import type { RunReport } from '../core/model.js';
import { directoryEntries, outputTreeBlobs } from './blob-closure.js';

export const DEFAULT_RETAIN_MS = 7 * 24 * 3_600_000;
/** Jobs deleted per statement: a long backlog goes in slices, never one long transaction. */
const BATCH = 1000;
/** Jobs and entries recorded per transaction, and released hashes taken per one. */
const REFS_BATCH = 200;
/** Directories read per recording batch at most: a larger tree is recorded as far as this goes. */
const MAX_DIRECTORIES_PER_BATCH = 100_000;

export interface RetentionOptions {
  retainMs: number;
  /** Between sweeps (default: a tenth of retainMs, at least 1 s and at most an hour). */
  intervalMs?: number;
  now?: () => number;
  logger: Logger;
  /** Remove the blobs only the deleted jobs used: the store's references, the CAS to read trees from and to reclaim in. */
  blobs?: { references: BlobReferences; store: BlobStore; reclaimer?: BlobReclaimer };
}

/** What one sweep did. */
export interface SweepOutcome {
  jobs: number;
  blobs: number;
}

export class RetentionSweep {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<SweepOutcome> | undefined;

  constructor(
    private readonly jobs: JobStore,
    private readonly opts: RetentionOptions,
  ) {}

  start(): void {
    const interval = this.opts.intervalMs ?? Math.min(3_600_000, Math.max(1000, Math.floor(this.opts.retainMs / 10)));
    this.timer = setInterval(() => void this.sweep().catch((err: unknown) => this.opts.logger.warn({ err }, 'retention sweep failed; retrying at the next one')), interval);
    this.timer.unref();
  }

  /** Removes every finished job completed more than retainMs ago, and the blobs only they used. One sweep at a time. */
  sweep(): Promise<SweepOutcome> {
    this.running ??= this.sweepOnce().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.running?.catch(() => undefined);
  }

  private async sweepOnce(): Promise<SweepOutcome> {
    const cutoff = (this.opts.now ?? Date.now)() - this.opts.retainMs;
    // Recorded before any deletion: a kept job's references must be known before a deleted one's are released.
    if (this.opts.blobs) await this.recordReferences(this.opts.blobs.references, this.opts.blobs.store);
    let jobs = 0;
    for (;;) {
      const n = await this.jobs.deleteFinishedBefore(cutoff, BATCH);
      jobs += n;
      if (n < BATCH) break;
    }
    let blobs = 0;
    if (this.opts.blobs) {
      const { references, reclaimer } = this.opts.blobs;
      const kept: string[] = [];
      for (;;) {
        const unreferenced = await references.takeUnreferenced(REFS_BATCH);
        if (unreferenced.length === 0) break;
        if (!reclaimer) continue;
        const reclaimed = await reclaimer.reclaim(unreferenced);
        blobs += reclaimed.removed;
        kept.push(...reclaimed.kept);
      }
      // Pinned or used lately: offered again at the next sweep, which removes them if still unreferenced then.
      await references.release(kept);
    }
    if (jobs > 0 || blobs > 0) this.opts.logger.info({ removed: jobs, blobsRemoved: blobs, retainMs: this.opts.retainMs }, 'finished jobs past their retention removed');
    return { jobs, blobs };
  }

  /** Records the references of every finished job and action-cache entry not recorded yet, walking each new tree once. */
  private async recordReferences(references: BlobReferences, store: BlobStore): Promise<void> {
    for (;;) {
      const owners = await references.unrecorded(REFS_BATCH);
      if (owners.length === 0) return;
      const jobs: Array<BlobReferenceBatch['jobs'][number]> = [];
      const cache: Array<BlobReferenceBatch['cache'][number]> = [];
      const inputRoots = new Map<string, UnrecordedOwner['actionDigest']>();
      const outputTrees = new Map<string, UnrecordedOwner['actionDigest']>();
      for (const owner of owners) {
        const hashes = new Set<string>([owner.actionDigest.hash]);
        if (owner.kind === 'job') {
          hashes.add(owner.spec.inputRootDigest.hash);
          inputRoots.set(owner.spec.inputRootDigest.hash, owner.spec.inputRootDigest);
          if (owner.spec.stdinDigest) hashes.add(owner.spec.stdinDigest.hash);
        }
        if (owner.result) addReportHashes(owner.result, hashes, outputTrees);
        if (owner.kind === 'job') jobs.push({ id: owner.id, hashes });
        else cache.push({ instance: owner.instance, actionDigest: owner.actionDigest, hashes });
      }
      const trees: Array<{ root: string; hashes: Iterable<string> }> = [];
      const knownOutputs = await references.recordedTrees([...outputTrees.keys()]);
      for (const [hash, digest] of outputTrees) if (!knownOutputs.has(hash)) trees.push({ root: hash, hashes: without(await outputTreeBlobs(digest, store), hash) });
      await recordDirectoriesOf([...inputRoots.values()], references, store, trees);
      await references.record({ jobs, cache, trees });
    }
  }
}

/**
 * Input trees, one Directory at a time: each records its own entries, and a Directory recorded already
 * (a toolchain under thousands of roots) is not read again, nor anything under it.
 */
async function recordDirectoriesOf(
  roots: ReadonlyArray<UnrecordedOwner['actionDigest']>,
  references: BlobReferences,
  store: BlobStore,
  trees: Array<{ root: string; hashes: Iterable<string> }>,
): Promise<void> {
  const seen = new Set<string>();
  let level = roots.filter((d) => {
    if (seen.has(d.hash)) return false;
    seen.add(d.hash);
    return true;
  });
  let walked = 0;
  while (level.length > 0 && walked < MAX_DIRECTORIES_PER_BATCH) {
    const known = await references.recordedTrees(level.map((d) => d.hash));
    const next: Array<UnrecordedOwner['actionDigest']> = [];
    for (const digest of level) {
      if (known.has(digest.hash)) continue;
      walked++;
      const entries = await directoryEntries(digest, store);
      if (!entries) continue;
      trees.push({ root: digest.hash, hashes: [...entries.files, ...entries.directories.map((d) => d.hash)] });
      for (const d of entries.directories) {
        if (seen.has(d.hash)) continue;
        seen.add(d.hash);
        next.push(d);
      }
    }
    level = next;
  }
}

function addReportHashes(report: RunReport, hashes: Set<string>, trees: Map<string, RunReport['stdout']['digest']>): void {
  hashes.add(report.stdout.digest.hash);
  hashes.add(report.stderr.digest.hash);
  for (const f of report.outputFiles) hashes.add(f.digest.hash);
  for (const d of report.outputDirectories ?? []) {
    hashes.add(d.treeDigest.hash);
    trees.set(d.treeDigest.hash, d.treeDigest);
  }
}

/** A tree's members without its root (the owner row names the root). */
function without(hashes: Set<string>, root: string): Set<string> {
  hashes.delete(root);
  return hashes;
}
