/** The WorkerRegistry on SQLite: one row per worker id; platforms are stored as JSON text. */
import type Database from 'better-sqlite3';
import { mergeOffers } from '../job-rules.js';
import type { PlatformOffer, WorkerRecord, WorkerRegistry } from '../ports.js';

interface WorkerRow {
  id: string;
  name: string;
  platforms: string;
  slots: number;
  state: WorkerRecord['state'];
  registered_at: number;
  last_seen_at: number;
}

function toWorker(row: WorkerRow): WorkerRecord {
  return {
    id: row.id,
    name: row.name,
    platforms: JSON.parse(row.platforms) as PlatformOffer[],
    slots: row.slots,
    state: row.state,
    registeredAtMs: row.registered_at,
    lastSeenAtMs: row.last_seen_at,
  };
}

export class SqliteWorkerRegistry implements WorkerRegistry {
  private readonly s;

  constructor(db: Database.Database) {
    this.s = {
      upsert: db.prepare(`INSERT INTO workers (id, name, platforms, slots, state, registered_at, last_seen_at)
        VALUES (?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET name = excluded.name, platforms = excluded.platforms, slots = excluded.slots,
          state = excluded.state, last_seen_at = excluded.last_seen_at`),
      touch: db.prepare('UPDATE workers SET last_seen_at = ?, state = coalesce(?, state) WHERE id = ? AND state != \'gone\''),
      get: db.prepare<unknown[], WorkerRow>('SELECT * FROM workers WHERE id = ?'),
      list: db.prepare<unknown[], WorkerRow>('SELECT * FROM workers ORDER BY registered_at'),
      silent: db.prepare<unknown[], { id: string }>(`UPDATE workers SET state = 'gone'
        WHERE state != 'gone' AND last_seen_at < ? RETURNING id`),
      platforms: db.prepare<unknown[], { platforms: string }>('SELECT platforms FROM workers'),
    };
  }

  async upsert(w: WorkerRecord): Promise<void> {
    this.s.upsert.run(w.id, w.name, JSON.stringify(w.platforms), w.slots, w.state, w.registeredAtMs, w.lastSeenAtMs);
  }

  async touch(id: string, nowMs: number, state?: WorkerRecord['state']): Promise<boolean> {
    return this.s.touch.run(nowMs, state ?? null, id).changes === 1;
  }

  async get(id: string): Promise<WorkerRecord | undefined> {
    const row = this.s.get.get(id);
    return row ? toWorker(row) : undefined;
  }

  async list(): Promise<WorkerRecord[]> {
    return this.s.list.all().map(toWorker);
  }

  async markSilentGone(cutoffMs: number): Promise<string[]> {
    return this.s.silent.all(cutoffMs).map((r) => r.id);
  }

  async offeredPlatforms(): Promise<PlatformOffer[]> {
    return mergeOffers(this.s.platforms.all().map((r) => JSON.parse(r.platforms) as PlatformOffer[]));
  }
}
