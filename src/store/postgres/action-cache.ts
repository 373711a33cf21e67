/**
 * The ActionCache on PostgreSQL: one row per (instance, action digest), replaced whole by a put. Servers
 * keep recent entries in memory in front of it (RecentActionResults).
 */
import type { Digest } from '../../core/digest.js';
import type { RunReport } from '../../core/model.js';
import type { ActionCache } from '../ports.js';
import type { PostgresDb } from './connection.js';

export class PostgresActionCache implements ActionCache {
  private readonly sql;

  constructor(private readonly db: PostgresDb) {
    const table = `${db.schema}.action_cache`;
    this.sql = {
      get: `SELECT result FROM ${table} WHERE instance = $1 AND action_hash = $2 AND action_size = $3`,
      put: `INSERT INTO ${table} (instance, action_hash, action_size, result, stored_at) VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (instance, action_hash, action_size) DO UPDATE SET result = excluded.result, stored_at = excluded.stored_at`,
      delete: `DELETE FROM ${table} WHERE instance = $1 AND action_hash = $2 AND action_size = $3`,
    };
  }

  async get(instance: string, d: Digest): Promise<RunReport | undefined> {
    const [row] = await this.db.query<{ result: RunReport }>(this.sql.get, [instance, d.hash, d.sizeBytes]);
    return row?.result;
  }

  async put(instance: string, d: Digest, result: RunReport, nowMs: number): Promise<void> {
    await this.db.query(this.sql.put, [instance, d.hash, d.sizeBytes, JSON.stringify(result), nowMs]);
  }

  async delete(instance: string, d: Digest): Promise<void> {
    await this.db.query(this.sql.delete, [instance, d.hash, d.sizeBytes]);
  }
}
