/**
 * The WorkerRegistry on PostgreSQL: one row per worker id, shared by every controller, so a worker
 * registered with one controller is seen (and its platforms servable) on all of them.
 */
import type { PlatformOffer, WorkerRecord, WorkerRegistry, WorkerTouch } from '../ports.js';
import { mergeOffers } from '../job-rules.js';
import { int } from './connection.js';
import type { PostgresDb } from './connection.js';

interface WorkerRow {
  id: string;
  name: string;
  platforms: PlatformOffer[];
  slots: number;
  state: WorkerRecord['state'];
  registered_at: string;
  last_seen_at: string;
  labels: Record<string, string>;
  instance_id: string | null;
  drain_requested: boolean;
  price_per_hour: number | null;
}

function toWorker(row: WorkerRow): WorkerRecord {
  return {
    id: row.id,
    name: row.name,
    platforms: row.platforms,
    slots: row.slots,
    state: row.state,
    registeredAtMs: int(row.registered_at),
    lastSeenAtMs: int(row.last_seen_at),
    labels: row.labels,
    instanceId: row.instance_id,
    drainRequested: row.drain_requested,
    ...(row.price_per_hour !== null ? { pricePerHour: row.price_per_hour } : {}),
  };
}

export class PostgresWorkerRegistry implements WorkerRegistry {
  private readonly sql;

  constructor(private readonly db: PostgresDb) {
    const workers = `${db.schema}.workers`;
    const columns = 'id, name, platforms, slots, state, registered_at, last_seen_at, labels, instance_id, drain_requested, price_per_hour';
    this.sql = {
      // A drain order stands when the worker registers again (after a controller failover, say).
      upsert: `INSERT INTO ${workers} (${columns}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        ON CONFLICT (id) DO UPDATE SET name = excluded.name, platforms = excluded.platforms, slots = excluded.slots,
          state = excluded.state, last_seen_at = excluded.last_seen_at, labels = excluded.labels, instance_id = excluded.instance_id,
          price_per_hour = excluded.price_per_hour, drain_requested = ${workers}.drain_requested OR excluded.drain_requested`,
      touch: `UPDATE ${workers} SET last_seen_at = $1, state = coalesce($2, state) WHERE id = $3 AND state <> 'gone' RETURNING drain_requested`,
      drain: `UPDATE ${workers} SET drain_requested = true WHERE id = $1 AND state <> 'gone'`,
      undrain: `UPDATE ${workers} SET drain_requested = false WHERE id = $1 AND state = 'active'`,
      get: `SELECT ${columns} FROM ${workers} WHERE id = $1`,
      list: `SELECT ${columns} FROM ${workers} ORDER BY registered_at, id`,
      silent: `UPDATE ${workers} SET state = 'gone' WHERE state <> 'gone' AND last_seen_at < $1 RETURNING id`,
      platforms: `SELECT platforms FROM ${workers}`,
    };
  }

  async upsert(w: WorkerRecord): Promise<void> {
    await this.db.query(this.sql.upsert, [w.id, w.name, JSON.stringify(w.platforms), w.slots, w.state, w.registeredAtMs, w.lastSeenAtMs, JSON.stringify(w.labels), w.instanceId, w.drainRequested, w.pricePerHour ?? null]);
  }

  async touch(id: string, nowMs: number, state?: WorkerRecord['state']): Promise<WorkerTouch | undefined> {
    const [row] = await this.db.query<{ drain_requested: boolean }>(this.sql.touch, [nowMs, state ?? null, id]);
    return row ? { drainRequested: row.drain_requested } : undefined;
  }

  async requestDrain(id: string): Promise<boolean> {
    return (await this.db.changed(this.sql.drain, [id])) === 1;
  }

  async cancelDrain(id: string): Promise<boolean> {
    return (await this.db.changed(this.sql.undrain, [id])) === 1;
  }

  async get(id: string): Promise<WorkerRecord | undefined> {
    const [row] = await this.db.query<WorkerRow>(this.sql.get, [id]);
    return row ? toWorker(row) : undefined;
  }

  async list(): Promise<WorkerRecord[]> {
    return (await this.db.query<WorkerRow>(this.sql.list)).map(toWorker);
  }

  async markSilentGone(cutoffMs: number): Promise<string[]> {
    return (await this.db.query<{ id: string }>(this.sql.silent, [cutoffMs])).map((r) => r.id);
  }

  async offeredPlatforms(): Promise<PlatformOffer[]> {
    return mergeOffers((await this.db.query<{ platforms: PlatformOffer[] }>(this.sql.platforms)).map((r) => r.platforms));
  }
}
