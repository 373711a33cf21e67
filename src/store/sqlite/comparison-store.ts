/** The ComparisonStore on SQLite: one row per comparison, its document replaced whole by a save. */
import type Database from 'better-sqlite3';
import type { ComparisonRow, ComparisonStore } from '../ports.js';

export class SqliteComparisonStore implements ComparisonStore {
  private readonly s;

  constructor(db: Database.Database) {
    this.s = {
      get: db.prepare<unknown[], { id: string; state: string; created_at: number; updated_at: number; document: string }>(
        'SELECT id, state, created_at, updated_at, document FROM comparisons WHERE id = ?',
      ),
      list: db.prepare<unknown[], { id: string; state: string; created_at: number; updated_at: number; document: string }>(
        'SELECT id, state, created_at, updated_at, document FROM comparisons ORDER BY created_at DESC, id DESC LIMIT ?',
      ),
      listAfter: db.prepare<unknown[], { id: string; state: string; created_at: number; updated_at: number; document: string }>(
        `SELECT id, state, created_at, updated_at, document FROM comparisons
          WHERE (created_at, id) < (SELECT created_at, id FROM comparisons WHERE id = ?) ORDER BY created_at DESC, id DESC LIMIT ?`,
      ),
      save: db.prepare(`INSERT INTO comparisons (id, state, created_at, updated_at, document) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at, document = excluded.document`),
    };
  }

  async save(row: ComparisonRow): Promise<void> {
    this.s.save.run(row.id, row.state, row.createdAtMs, row.updatedAtMs, JSON.stringify(row.document));
  }

  async get(id: string): Promise<ComparisonRow | undefined> {
    const row = this.s.get.get(id);
    return row ? toRow(row) : undefined;
  }

  async list(query: { limit: number; afterId?: string }): Promise<ComparisonRow[]> {
    const rows = query.afterId === undefined ? this.s.list.all(query.limit) : this.s.listAfter.all(query.afterId, query.limit);
    return rows.map(toRow);
  }
}

function toRow(row: { id: string; state: string; created_at: number; updated_at: number; document: string }): ComparisonRow {
  return { id: row.id, state: row.state, createdAtMs: row.created_at, updatedAtMs: row.updated_at, document: JSON.parse(row.document) as unknown };
}
