/**
 * The LeaderLease on SQLite: the database file belongs to one `remex serve` (decision 0002), so its holder
 * is whoever asks first in this process, held until released or expired (a holder that stops renewing).
 */
import type { LeaderLease } from '../ports.js';

export class SqliteLeaderLease implements LeaderLease {
  private readonly held = new Map<string, { holder: string; expiresAtMs: number }>();

  async tryAcquire(name: string, holder: string, ttlMs: number, nowMs: number): Promise<boolean> {
    const cur = this.held.get(name);
    if (cur && cur.holder !== holder && cur.expiresAtMs > nowMs) return false;
    this.held.set(name, { holder, expiresAtMs: nowMs + ttlMs });
    return true;
  }

  async release(name: string, holder: string): Promise<void> {
    if (this.held.get(name)?.holder === holder) this.held.delete(name);
  }
}
