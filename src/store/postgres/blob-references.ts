/**
 * BlobReferences on PostgreSQL: the blob_refs table and its release triggers (schema.ts, migration 9).
 * Set-based statements, a few per call. Controllers sweeping at once take disjoint released hashes
 * (SKIP LOCKED); a tree two of them see released at once is kept by both or dropped by both, never half.
 */
import type { ExecutionSpec, RunReport } from '../../core/model.js';
import type { BlobReferenceBatch, BlobReferences, UnrecordedOwner } from '../ports.js';
import type { PostgresDb } from './connection.js';
import { int } from './connection.js';

const FINISHED = `('completed','timed_out','cancelled','failed','emergency_stopped')`;

export class PostgresBlobReferences implements BlobReferences {
  private readonly sql;

  constructor(private readonly db: PostgresDb) {
    const t = (name: string): string => `${db.schema}.${name}`;
    this.sql = {
      unrecordedJobs: `SELECT id, action_hash, action_size, spec, result FROM ${t('jobs')}
        WHERE NOT refs_recorded AND state IN ${FINISHED} ORDER BY seq LIMIT $1`,
      unrecordedCache: `SELECT instance, action_hash, action_size, result FROM ${t('action_cache')}
        WHERE NOT refs_recorded ORDER BY stored_at LIMIT $1`,
      recordedTrees: `SELECT r FROM unnest($1::text[]) AS x(r) WHERE EXISTS (SELECT 1 FROM ${t('blob_refs')} WHERE owner = 't:' || r)`,
      insert: `INSERT INTO ${t('blob_refs')} (owner, hash) SELECT $1, h FROM unnest($2::text[]) AS x(h) ON CONFLICT DO NOTHING`,
      markJob: `UPDATE ${t('jobs')} SET refs_recorded = true WHERE id = $1 AND NOT refs_recorded AND state IN ${FINISHED} RETURNING id`,
      markCache: `UPDATE ${t('action_cache')} SET refs_recorded = true
        WHERE instance = $1 AND action_hash = $2 AND action_size = $3 AND NOT refs_recorded RETURNING instance`,
      takeReleased: `DELETE FROM ${t('blob_refs_released')} WHERE hash IN
        (SELECT hash FROM ${t('blob_refs_released')} LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING hash`,
      // The trees among these (unreferenced) hashes: dropped, their members returned.
      dropTrees: `DELETE FROM ${t('blob_refs')} WHERE owner IN (SELECT 't:' || h FROM unnest($1::text[]) AS x(h)) RETURNING hash`,
      release: `INSERT INTO ${t('blob_refs_released')} (hash) SELECT h FROM unnest($1::text[]) AS x(h) ON CONFLICT DO NOTHING`,
      unreferenced: `SELECT h FROM unnest($1::text[]) AS x(h) WHERE NOT EXISTS (SELECT 1 FROM ${t('blob_refs')} WHERE hash = h)`,
    };
  }

  async unrecorded(limit: number): Promise<UnrecordedOwner[]> {
    const jobs = await this.db.query<{ id: string; action_hash: string; action_size: string; spec: ExecutionSpec; result: RunReport | null }>(this.sql.unrecordedJobs, [limit]);
    const out: UnrecordedOwner[] = jobs.map((r) => ({ kind: 'job', id: r.id, actionDigest: { hash: r.action_hash, sizeBytes: int(r.action_size) }, spec: r.spec, result: r.result }));
    if (out.length < limit) {
      const cache = await this.db.query<{ instance: string; action_hash: string; action_size: string; result: RunReport }>(this.sql.unrecordedCache, [limit - out.length]);
      for (const r of cache) out.push({ kind: 'cache', instance: r.instance, actionDigest: { hash: r.action_hash, sizeBytes: int(r.action_size) }, result: r.result });
    }
    return out;
  }

  async recordedTrees(roots: readonly string[]): Promise<Set<string>> {
    if (roots.length === 0) return new Set();
    return new Set((await this.db.query<{ r: string }>(this.sql.recordedTrees, [roots])).map((row) => row.r));
  }

  async record(batch: BlobReferenceBatch): Promise<void> {
    await this.db.tx(async (c) => {
      for (const tree of batch.trees) await this.db.query(this.sql.insert, [`t:${tree.root}`, [...tree.hashes]], c);
      for (const job of batch.jobs) {
        // Marked first: a job deleted meanwhile records nothing (its references would never be released).
        if ((await this.db.query(this.sql.markJob, [job.id], c)).length === 0) continue;
        await this.db.query(this.sql.insert, [`j:${job.id}`, [...job.hashes]], c);
      }
      for (const entry of batch.cache) {
        const { hash, sizeBytes } = entry.actionDigest;
        if ((await this.db.query(this.sql.markCache, [entry.instance, hash, sizeBytes], c)).length === 0) continue;
        await this.db.query(this.sql.insert, [`a:${entry.instance}/${hash}/${sizeBytes}`, [...entry.hashes]], c);
      }
    });
  }

  async release(hashes: readonly string[]): Promise<void> {
    if (hashes.length > 0) await this.db.query(this.sql.release, [hashes]);
  }

  async takeUnreferenced(limit: number): Promise<string[]> {
    return this.db.tx(async (c) => {
      const unreferenced = new Set<string>();
      let level = (await this.db.query<{ hash: string }>(this.sql.takeReleased, [limit], c)).map((r) => r.hash);
      while (level.length > 0) {
        // Checked before any of this level's trees is dropped; a member whose last referrer goes now is
        // looked at again with the next level.
        const free = (await this.db.query<{ h: string }>(this.sql.unreferenced, [level], c)).map((r) => r.h);
        for (const h of free) unreferenced.add(h);
        const members = free.length === 0 ? [] : (await this.db.query<{ hash: string }>(this.sql.dropTrees, [free], c)).map((r) => r.hash);
        level = [...new Set(members)].filter((h) => !unreferenced.has(h));
      }
      return [...unreferenced];
    });
  }
}
