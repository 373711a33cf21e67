/**
 * The LeaderLease on PostgreSQL: a session advisory lock (`pg_try_advisory_lock`) on a connection of its
 * own, kept while held. The server releases it when that connection dies with its controller, so another
 * controller's next try takes over; no table, no clock shared between hosts. A connection that fails is
 * dropped and leadership is lost until a new one wins the lock.
 */
import type { PoolClient } from 'pg';
import type { LeaderLease } from '../ports.js';
import type { PostgresDb } from './connection.js';

export class PostgresLeaderLease implements LeaderLease {
  private readonly sessions = new Map<string, { holder: string; client: PoolClient; lost: boolean }>();

  constructor(private readonly db: PostgresDb) {}

  async tryAcquire(name: string, holder: string): Promise<boolean> {
    const cur = this.sessions.get(name);
    if (cur && !cur.lost) {
      if (cur.holder !== holder) return false;
      try {
        await cur.client.query('SELECT 1');
        return true;
      } catch {
        cur.lost = true;
      }
    }
    if (cur) {
      this.sessions.delete(name);
      cur.client.release(true);
    }
    let client: PoolClient;
    try {
      client = await this.db.connectDedicated();
    } catch {
      return false;
    }
    const session = { holder, client, lost: false };
    client.on('error', () => (session.lost = true));
    try {
      const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS ok', [`remex:${name}`]);
      if (rows[0]?.ok) {
        this.sessions.set(name, session);
        return true;
      }
    } catch {
      // fall through: not held
    }
    client.release(true);
    return false;
  }

  async release(name: string, holder: string): Promise<void> {
    const cur = this.sessions.get(name);
    if (!cur || cur.holder !== holder) return;
    this.sessions.delete(name);
    // Destroying the connection ends the session, which releases the lock.
    cur.client.release(true);
  }

  async close(): Promise<void> {
    for (const s of this.sessions.values()) s.client.release(true);
    this.sessions.clear();
  }
}
