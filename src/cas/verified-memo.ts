/**
 * Blobs a store instance has hashed and found good, so that later reads need not hash them again.
 * Each is remembered with the version of the stored bytes it had then — an adapter's own token: the
 * filesystem store's file identity (device, inode, size, mtime), S3's ETag — and is trusted again only
 * while that version is unchanged: any rewrite or replacement makes the memory stale. Bounded; the
 * oldest entries go first. Lives only as long as the instance: a store opened afresh trusts nothing.
 */
export class VerifiedMemo {
  private readonly entries = new Map<string, string>();

  /** `capacity` 0 remembers nothing (every read hashes). */
  constructor(private readonly capacity: number) {}

  /** Whether `hash` was verified at exactly this version; an unknown version (undefined) never was. */
  has(hash: string, version: string | undefined): boolean {
    return version !== undefined && this.entries.get(hash) === version;
  }

  /** Remembers `hash` as verified at `version`; an unknown version cannot be checked later, so is not kept. */
  add(hash: string, version: string | undefined): void {
    if (this.capacity <= 0 || version === undefined) return;
    // Deleted first so that a renewed entry moves to the young end of the Map's insertion order.
    this.entries.delete(hash);
    this.entries.set(hash, version);
    if (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
  }

  delete(hash: string): void {
    this.entries.delete(hash);
  }
}
