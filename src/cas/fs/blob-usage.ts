/**
 * What the filesystem CAS holds, for eviction (`remex serve --cas-max-bytes`): each blob's size and when it
 * was last used, kept in memory in least-recently-used order (a Map re-inserted on each use: O(1), no
 * write to disk per read). Learnt once when the store opens — files by their access time, packed rows
 * as the pack lists them — and kept up to date by the store's own writes, reads and presence checks.
 * About 150 bytes per blob: a million blobs cost ~150 MB of memory.
 */
export interface UsageEntry {
  size: number;
  /** Last use, ms since the epoch. */
  usedAtMs: number;
}

export class BlobUsage {
  private readonly entries = new Map<string, UsageEntry>();
  /** Sum of the sizes of the blobs held. */
  bytes = 0;

  get count(): number {
    return this.entries.size;
  }

  has(hash: string): boolean {
    return this.entries.has(hash);
  }

  get(hash: string): Readonly<UsageEntry> | undefined {
    return this.entries.get(hash);
  }

  /** A blob stored (or found) now or at `usedAtMs`: the most recently used, unless an older time is given. */
  add(hash: string, size: number, usedAtMs: number): void {
    const old = this.entries.get(hash);
    if (old) {
      this.bytes -= old.size;
      this.entries.delete(hash);
    }
    this.entries.set(hash, { size, usedAtMs });
    this.bytes += size;
  }

  /**
   * Blobs found on disk, oldest first, placed before everything counted so far (which is more recent);
   * those already counted keep their place.
   */
  addOlder(found: ReadonlyArray<{ hash: string; size: number; usedAtMs: number }>): void {
    const newer = [...this.entries];
    this.entries.clear();
    for (const f of found) {
      if (this.entries.has(f.hash)) continue;
      this.entries.set(f.hash, { size: f.size, usedAtMs: f.usedAtMs });
    }
    for (const [hash, entry] of newer) {
      this.entries.delete(hash);
      this.entries.set(hash, entry);
    }
    this.bytes = 0;
    for (const entry of this.entries.values()) this.bytes += entry.size;
  }

  /** A blob used now: moved to the most recently used end. */
  touch(hash: string, nowMs: number): void {
    const entry = this.entries.get(hash);
    if (!entry) return;
    this.entries.delete(hash);
    entry.usedAtMs = nowMs;
    this.entries.set(hash, entry);
  }

  remove(hash: string): void {
    const entry = this.entries.get(hash);
    if (!entry) return;
    this.bytes -= entry.size;
    this.entries.delete(hash);
  }

  /** Blobs from the least recently used on. */
  oldestFirst(): IterableIterator<[string, UsageEntry]> {
    return this.entries.entries();
  }
}

/**
 * Which blobs eviction must keep whatever their age: those a queued or running job needs. The store asks
 * once per eviction pass; the server, which knows the jobs, answers (server/job-pins.ts), so the CAS
 * learns of pins without depending on the scheduler.
 */
export interface PinSource {
  pinnedHashes(): Promise<ReadonlySet<string>>;
}

/** A PinSource bound after the store opens (the scheduler is built on top of the store). */
export class LatePins implements PinSource {
  private source: PinSource | undefined;

  bind(source: PinSource): void {
    this.source = source;
  }

  async pinnedHashes(): Promise<ReadonlySet<string>> {
    return this.source ? this.source.pinnedHashes() : new Set();
  }
}
