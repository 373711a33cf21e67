/** The ComparisonStore on PostgreSQL: one row per comparison, its document replaced whole by a save. */
import type { ComparisonRow, ComparisonStore } from '../ports.js';
import type { PostgresDb } from './connection.js';

export class PostgresComparisonStore implements ComparisonStore {
  private readonly sql;

  constructor(private readonly db: PostgresDb) {
    const table = `${db.schema}.comparisons`;
    this.sql = {
      get: `SELECT id, state, created_at, updated_at, document FROM ${table} WHERE id = $1`,
      list: `SELECT id, state, created_at, updated_at, document FROM ${table} ORDER BY created_at DESC, id DESC LIMIT $1`,
      listAfter: `SELECT id, state, created_at, updated_at, document FROM ${table}
        WHERE (created_at, id) < (SELECT created_at, id FROM ${table} WHERE id = $1) ORDER BY created_at DESC, id DESC LIMIT $2`,
      save: `INSERT INTO ${table} (id, state, created_at, updated_at, document) VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at, document = excluded.document`,
    };
  }

  async save(row: ComparisonRow): Promise<void> {
    await this.db.query(this.sql.save, [row.id, row.state, row.createdAtMs, row.updatedAtMs, JSON.stringify(row.document)]);
  }

  async get(id: string): Promise<ComparisonRow | undefined> {
    const [row] = await this.db.query<PgRow>(this.sql.get, [id]);
    return row ? toRow(row) : undefined;
  }

  async list(query: { limit: number; afterId?: string }): Promise<ComparisonRow[]> {
    const rows = query.afterId === undefined ? await this.db.query<PgRow>(this.sql.list, [query.limit]) : await this.db.query<PgRow>(this.sql.listAfter, [query.afterId, query.limit]);
    return rows.map(toRow);
  }
}

interface PgRow {
  id: string;
  state: string;
  created_at: string;
  updated_at: string;
  document: unknown;
}

function toRow(row: PgRow): ComparisonRow {
  return { id: row.id, state: row.state, createdAtMs: Number(row.created_at), updatedAtMs: Number(row.updated_at), document: row.document };
}
