/** The ActionCache on SQLite: one row per (instance, action digest), replaced whole by a put. */
import type Database from 'better-sqlite3';
import type { Digest } from '../../core/digest.js';
import type { RunReport } from '../../core/model.js';
import type { ActionCache } from '../ports.js';

export class SqliteActionCache implements ActionCache {
  private readonly s;

  constructor(db: Database.Database) {
    this.s = {
      get: db.prepare<unknown[], { result: string }>(
        'SELECT result FROM action_cache WHERE instance = ? AND action_hash = ? AND action_size = ?',
      ),
      put: db.prepare(`INSERT INTO action_cache (instance, action_hash, action_size, result, stored_at) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (instance, action_hash, action_size) DO UPDATE SET result = excluded.result, stored_at = excluded.stored_at`),
      delete: db.prepare('DELETE FROM action_cache WHERE instance = ? AND action_hash = ? AND action_size = ?'),
    };
  }

  async get(instance: string, d: Digest): Promise<RunReport | undefined> {
    const row = this.s.get.get(instance, d.hash, d.sizeBytes);
    return row ? (JSON.parse(row.result) as RunReport) : undefined;
  }

  async put(instance: string, d: Digest, result: RunReport, nowMs: number): Promise<void> {
    this.s.put.run(instance, d.hash, d.sizeBytes, JSON.stringify(result), nowMs);
  }

  async delete(instance: string, d: Digest): Promise<void> {
    this.s.delete.run(instance, d.hash, d.sizeBytes);
  }
}
