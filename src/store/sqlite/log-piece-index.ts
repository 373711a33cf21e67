/** The LogPieceIndex on SQLite: one row per piece; an append checks the stream's end in the same statement. */
import type Database from 'better-sqlite3';
import type { LogPiece, LogPieceIndex } from '../ports.js';

export class SqliteLogPieceIndex implements LogPieceIndex {
  private readonly insert;
  private readonly endOf;
  private readonly select;
  private readonly deleteJob;

  constructor(db: Database.Database) {
    this.endOf = db.prepare<[string, number, string], { end: number }>(
      'SELECT COALESCE(MAX(offset + size_bytes), 0) AS end FROM log_pieces WHERE job_id = ? AND attempt = ? AND stream = ?',
    );
    // Only at the end: the row goes in when no piece ends past its offset and one ends at it (or it is the first).
    this.insert = db.prepare(
      `INSERT OR IGNORE INTO log_pieces (job_id, attempt, stream, offset, size_bytes, hash)
       SELECT @jobId, @attempt, @stream, @offset, @sizeBytes, @hash
       WHERE (SELECT COALESCE(MAX(offset + size_bytes), 0) FROM log_pieces WHERE job_id = @jobId AND attempt = @attempt AND stream = @stream) = @offset`,
    );
    this.select = db.prepare<[string, number, string, number, number], { offset: number; size_bytes: number; hash: string }>(
      `SELECT offset, size_bytes, hash FROM log_pieces WHERE job_id = ? AND attempt = ? AND stream = ? AND offset + size_bytes > ?
       ORDER BY offset LIMIT ?`,
    );
    this.deleteJob = db.prepare('DELETE FROM log_pieces WHERE job_id = ?');
  }

  async append(jobId: string, attempt: number, stream: string, piece: LogPiece): Promise<number> {
    this.insert.run({ jobId, attempt, stream, offset: piece.offset, sizeBytes: piece.sizeBytes, hash: piece.hash });
    return (this.endOf.get(jobId, attempt, stream) as { end: number }).end;
  }

  async pieces(jobId: string, attempt: number, stream: string, from: number, limit: number): Promise<LogPiece[]> {
    return this.select.all(jobId, attempt, stream, from, limit).map((r) => ({ offset: r.offset, sizeBytes: r.size_bytes, hash: r.hash }));
  }

  async end(jobId: string, attempt: number, stream: string): Promise<number> {
    return (this.endOf.get(jobId, attempt, stream) as { end: number }).end;
  }

  async remove(jobId: string): Promise<void> {
    this.deleteJob.run(jobId);
  }
}
