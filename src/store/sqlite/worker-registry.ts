/** The WorkerRegistry on SQLite: one row per worker id; platforms are stored as JSON text. */
import type Database from 'better-sqlite3';
import { mergeOffers } from '../job-rules.js';
import type { PlatformOffer, WorkerRecord, WorkerRegistry, WorkerTouch } from '../ports.js';

interface WorkerRow {
  id: string;
  name: string;
  platforms: string;
  slots: number;
  state: WorkerRecord['state'];
  registered_at: number;
  last_seen_at: number;
  labels: string;
  instance_id: string | null;
  drain_requested: number;
  price_per_hour: number | null;
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
    labels: JSON.parse(row.labels) as Record<string, string>,
    instanceId: row.instance_id,
    drainRequested: row.drain_requested === 1,
    ...(row.price_per_hour !== null ? { pricePerHour: row.price_per_hour } : {}),
  };
}

export class SqliteWorkerRegistry implements WorkerRegistry {
  private readonly s;

  constructor(db: Database.Database) {
    this.s = {
      // A drain order stands when the worker registers again (after a controller failover, say).
      upsert: db.prepare(`INSERT INTO workers (id, name, platforms, slots, state, registered_at, last_seen_at, labels, instance_id, drain_requested, price_per_hour)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET name = excluded.name, platforms = excluded.platforms, slots = excluded.slots,
          state = excluded.state, last_seen_at = excluded.last_seen_at, labels = excluded.labels, instance_id = excluded.instance_id,
          price_per_hour = excluded.price_per_hour, drain_requested = max(workers.drain_requested, excluded.drain_requested)`),
      touch: db.prepare<unknown[], { drain_requested: number }>(
        'UPDATE workers SET last_seen_at = ?, state = coalesce(?, state) WHERE id = ? AND state != \'gone\' RETURNING drain_requested',
      ),
      drain: db.prepare('UPDATE workers SET drain_requested = 1 WHERE id = ? AND state != \'gone\''),
      undrain: db.prepare('UPDATE workers SET drain_requested = 0 WHERE id = ? AND state = \'active\''),
      get: db.prepare<unknown[], WorkerRow>('SELECT * FROM workers WHERE id = ?'),
      list: db.prepare<unknown[], WorkerRow>('SELECT * FROM workers ORDER BY registered_at'),
      silent: db.prepare<unknown[], { id: string }>(`UPDATE workers SET state = 'gone'
        WHERE state != 'gone' AND last_seen_at < ? RETURNING id`),
      platforms: db.prepare<unknown[], { platforms: string }>('SELECT platforms FROM workers'),
    };
  }

  async upsert(w: WorkerRecord): Promise<void> {
    this.s.upsert.run(w.id, w.name, JSON.stringify(w.platforms), w.slots, w.state, w.registeredAtMs, w.lastSeenAtMs, JSON.stringify(w.labels), w.instanceId, w.drainRequested ? 1 : 0, w.pricePerHour ?? null);
  }

  async touch(id: string, nowMs: number, state?: WorkerRecord['state']): Promise<WorkerTouch | undefined> {
    const row = this.s.touch.get(nowMs, state ?? null, id);
    return row ? { drainRequested: row.drain_requested === 1 } : undefined;
  }

  async requestDrain(id: string): Promise<boolean> {
    return this.s.drain.run(id).changes === 1;
  }

  async cancelDrain(id: string): Promise<boolean> {
    return this.s.undrain.run(id).changes === 1;
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
