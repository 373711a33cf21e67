/**
 * The LogPieceIndex on PostgreSQL: one row per piece. An append inserts only at the stream's end; two
 * controllers appending the same bytes at once collide on the primary key, and one row stays.
 */
import type { LogPiece, LogPieceIndex } from '../ports.js';
import type { PostgresDb } from './connection.js';

export class PostgresLogPieceIndex implements LogPieceIndex {
  private readonly sql;

  constructor(private readonly db: PostgresDb) {
    const table = `${db.schema}.log_pieces`;
    const end = `SELECT COALESCE(MAX("offset" + size_bytes), 0) FROM ${table} WHERE job_id = $1 AND attempt = $2 AND stream = $3`;
    this.sql = {
      // The outer query sees the table as it was before the insert: the end is the larger of the two.
      append: `WITH added AS (
          INSERT INTO ${table} (job_id, attempt, stream, "offset", size_bytes, hash)
          SELECT $1, $2, $3, $4, $5, $6 WHERE (${end}) = $4
          ON CONFLICT DO NOTHING RETURNING "offset" + size_bytes AS stream_end)
        SELECT GREATEST(COALESCE((SELECT stream_end FROM added), 0), (${end})) AS stream_end`,
      end: `SELECT (${end}) AS stream_end`,
      pieces: `SELECT "offset", size_bytes, hash FROM ${table} WHERE job_id = $1 AND attempt = $2 AND stream = $3 AND "offset" + size_bytes > $4
        ORDER BY "offset" LIMIT $5`,
      remove: `DELETE FROM ${table} WHERE job_id = $1`,
    };
  }

  async append(jobId: string, attempt: number, stream: string, piece: LogPiece): Promise<number> {
    const [row] = await this.db.query<{ stream_end: string }>(this.sql.append, [jobId, attempt, stream, piece.offset, piece.sizeBytes, piece.hash]);
    return Number(row?.stream_end ?? 0);
  }

  async pieces(jobId: string, attempt: number, stream: string, from: number, limit: number): Promise<LogPiece[]> {
    const rows = await this.db.query<{ offset: string; size_bytes: string; hash: string }>(this.sql.pieces, [jobId, attempt, stream, from, limit]);
    return rows.map((r) => ({ offset: Number(r.offset), sizeBytes: Number(r.size_bytes), hash: r.hash }));
  }

  async end(jobId: string, attempt: number, stream: string): Promise<number> {
    const [row] = await this.db.query<{ stream_end: string }>(this.sql.end, [jobId, attempt, stream]);
    return Number(row?.stream_end ?? 0);
  }

  async remove(jobId: string): Promise<void> {
    await this.db.query(this.sql.remove, [jobId]);
  }
}
