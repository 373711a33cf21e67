/**
 * An ActionCache decorator that keeps the results it recently read or wrote in memory. A build asks for
 * the same entries again and again (every action of every build, across a team); each answer from here
 * saves a database read and the parse of a stored result.
 *
 * Staleness is bounded: an entry is kept `maxAgeMs` at most, so an entry replaced or deleted through
 * another process sharing the database (another controller) is seen within that time; changes made
 * through this decorator are seen at once. Serving a result that was replaced meanwhile is harmless: it
 * was a valid result of the same action. Whether a result's blobs still exist is not cached: callers check
 * that on every hit (Scheduler.lookupCache). Results are shared between callers: they are read, never changed.
 */
import type { Digest } from '../core/digest.js';
import type { RunReport } from '../core/model.js';
import type { ActionCache, Store } from './ports.js';

export interface RecentActionResultsOptions {
  /** Entries kept (least recently used go first). Default 4096. */
  maxEntries?: number;
  /** How long an entry is served from memory. Default 5 s. */
  maxAgeMs?: number;
  now?: () => number;
}

interface Entry {
  result: RunReport;
  expiresAtMs: number;
}

export class RecentActionResults implements ActionCache {
  private readonly entries = new Map<string, Entry>();
  private readonly maxEntries: number;
  private readonly maxAgeMs: number;
  private readonly now: () => number;

  constructor(
    private readonly inner: ActionCache,
    opts: RecentActionResultsOptions = {},
  ) {
    this.maxEntries = opts.maxEntries ?? 4096;
    this.maxAgeMs = opts.maxAgeMs ?? 5_000;
    this.now = opts.now ?? Date.now;
  }

  async get(instance: string, actionDigest: Digest): Promise<RunReport | undefined> {
    const key = keyOf(instance, actionDigest);
    const entry = this.entries.get(key);
    const nowMs = this.now();
    if (entry && entry.expiresAtMs > nowMs) {
      // Re-inserted last: the Map is least recently used first.
      this.entries.delete(key);
      this.entries.set(key, entry);
      return entry.result;
    }
    const result = await this.inner.get(instance, actionDigest);
    // A miss is not remembered: the action may be about to run, and its result must be seen at once.
    if (result) this.remember(key, result, nowMs);
    else this.entries.delete(key);
    return result;
  }

  async put(instance: string, actionDigest: Digest, result: RunReport, nowMs: number): Promise<void> {
    const key = keyOf(instance, actionDigest);
    // Forgotten first: should the write fail, nothing stale stays behind.
    this.entries.delete(key);
    await this.inner.put(instance, actionDigest, result, nowMs);
    this.remember(key, result, this.now());
  }

  async delete(instance: string, actionDigest: Digest): Promise<void> {
    this.entries.delete(keyOf(instance, actionDigest));
    await this.inner.delete(instance, actionDigest);
  }

  private remember(key: string, result: RunReport, nowMs: number): void {
    this.entries.delete(key);
    this.entries.set(key, { result, expiresAtMs: nowMs + this.maxAgeMs });
    if (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
  }
}

function keyOf(instance: string, d: Digest): string {
  // Hash and size hold no '/', so the instance name, last, cannot make two keys alike.
  return `${d.hash}/${d.sizeBytes}/${instance}`;
}

/**
 * The same store, its action cache behind a {@link RecentActionResults}. Every port of the store is named
 * here (`satisfies` fails the build when a port is added to Store and not passed on, as `leader` once was).
 */
export function withRecentActionResults(store: Store, opts: RecentActionResultsOptions = {}): Store {
  return {
    jobs: store.jobs,
    workers: store.workers,
    comparisons: store.comparisons,
    blobReferences: store.blobReferences,
    logPieces: store.logPieces,
    // The controllers' shared lease (PostgreSQL's): without it each controller's autoscaler would lead.
    leader: store.leader,
    actionCache: new RecentActionResults(store.actionCache, opts),
    close: () => store.close(),
  } satisfies Record<keyof Store, unknown>;
}
