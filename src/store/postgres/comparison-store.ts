/** The ComparisonStore on PostgreSQL: one row per comparison, its document replaced whole by a save. */
import type { ComparisonRow, ComparisonStore } from '../ports.js';
import type { PostgresDb } from './connection.js';

export class PostgresComparisonStore implements ComparisonStore {
  private readonly sql;

  constructor(private readonly db: PostgresDb) {
    const table = `${db.schema}.comparisons`;
    this.sql = {
      get: `SELECT id, state, created_at, updated_at, document FROM ${table} WHERE id = $1`,
      save: `INSERT INTO ${table} (id, state, created_at, updated_at, document) VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at, document = excluded.document`,
    };
  }

  async save(row: ComparisonRow): Promise<void> {
    await this.db.query(this.sql.save, [row.id, row.state, row.createdAtMs, row.updatedAtMs, JSON.stringify(row.document)]);
  }

  async get(id: string): Promise<ComparisonRow | undefined> {
    const [row] = await this.db.query<{ id: string; state: string; created_at: string; updated_at: string; document: unknown }>(this.sql.get, [id]);
    return row ? { id: row.id, state: row.state, createdAtMs: Number(row.created_at), updatedAtMs: Number(row.updated_at), document: row.document } : undefined;
  }
}
