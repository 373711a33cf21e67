/** BlobReferences on SQLite: the blob_refs table and its release triggers (schema.ts, migration 9). */
import type Database from 'better-sqlite3';
import type { ExecutionSpec, RunReport } from '../../core/model.js';
import type { BlobReferenceBatch, BlobReferences, UnrecordedOwner } from '../ports.js';

const FINISHED = `('completed','timed_out','cancelled','failed','emergency_stopped')`;

export class SqliteBlobReferences implements BlobReferences {
  private readonly s;

  constructor(private readonly db: Database.Database) {
    this.s = {
      unrecordedJobs: db.prepare<[number], { id: string; action_hash: string; action_size: number; spec: string; result: string | null }>(
        `SELECT id, action_hash, action_size, spec, result FROM jobs WHERE refs_recorded = 0 AND state IN ${FINISHED} ORDER BY seq LIMIT ?`,
      ),
      unrecordedCache: db.prepare<[number], { instance: string; action_hash: string; action_size: number; result: string }>(
        'SELECT instance, action_hash, action_size, result FROM action_cache WHERE refs_recorded = 0 ORDER BY stored_at LIMIT ?',
      ),
      treeRecorded: db.prepare<[string], { one: number }>(`SELECT 1 AS one FROM blob_refs WHERE owner = 't:' || ? LIMIT 1`),
      insert: db.prepare('INSERT OR IGNORE INTO blob_refs (owner, hash) VALUES (?, ?)'),
      markJob: db.prepare(`UPDATE jobs SET refs_recorded = 1 WHERE id = ? AND refs_recorded = 0 AND state IN ${FINISHED}`),
      markCache: db.prepare('UPDATE action_cache SET refs_recorded = 1 WHERE instance = ? AND action_hash = ? AND action_size = ? AND refs_recorded = 0'),
      released: db.prepare<[number], { hash: string }>('SELECT hash FROM blob_refs_released LIMIT ?'),
      release: db.prepare('INSERT OR IGNORE INTO blob_refs_released (hash) VALUES (?)'),
      unrelease: db.prepare('DELETE FROM blob_refs_released WHERE hash = ?'),
      treeMembers: db.prepare<[string], { hash: string }>(`SELECT hash FROM blob_refs WHERE owner = 't:' || ?`),
      dropTree: db.prepare(`DELETE FROM blob_refs WHERE owner = 't:' || ?`),
      referenced: db.prepare<[string], { one: number }>('SELECT 1 AS one FROM blob_refs WHERE hash = ? LIMIT 1'),
    };
  }

  async unrecorded(limit: number): Promise<UnrecordedOwner[]> {
    const jobs: UnrecordedOwner[] = this.s.unrecordedJobs.all(limit).map((r) => ({
      kind: 'job',
      id: r.id,
      actionDigest: { hash: r.action_hash, sizeBytes: r.action_size },
      spec: JSON.parse(r.spec) as ExecutionSpec,
      result: r.result === null ? null : (JSON.parse(r.result) as RunReport),
    }));
    const cache: UnrecordedOwner[] = this.s.unrecordedCache.all(Math.max(0, limit - jobs.length)).map((r) => ({
      kind: 'cache',
      instance: r.instance,
      actionDigest: { hash: r.action_hash, sizeBytes: r.action_size },
      result: JSON.parse(r.result) as RunReport,
    }));
    return [...jobs, ...cache];
  }

  async recordedTrees(roots: readonly string[]): Promise<Set<string>> {
    return new Set(roots.filter((root) => this.s.treeRecorded.get(root)));
  }

  async record(batch: BlobReferenceBatch): Promise<void> {
    this.db.transaction(() => {
      for (const tree of batch.trees) for (const hash of tree.hashes) this.s.insert.run(`t:${tree.root}`, hash);
      for (const job of batch.jobs) {
        // Marked first: a job deleted meanwhile records nothing (its references would never be released).
        if (this.s.markJob.run(job.id).changes === 0) continue;
        for (const hash of job.hashes) this.s.insert.run(`j:${job.id}`, hash);
      }
      for (const entry of batch.cache) {
        const { hash: actionHash, sizeBytes } = entry.actionDigest;
        if (this.s.markCache.run(entry.instance, actionHash, sizeBytes).changes === 0) continue;
        for (const hash of entry.hashes) this.s.insert.run(`a:${entry.instance}/${actionHash}/${sizeBytes}`, hash);
      }
    })();
  }

  async release(hashes: readonly string[]): Promise<void> {
    this.db.transaction(() => {
      for (const hash of hashes) this.s.release.run(hash);
    })();
  }

  async takeUnreferenced(limit: number): Promise<string[]> {
    return this.db.transaction(() => {
      const pending = this.s.released.all(limit).map((r) => r.hash);
      for (const hash of pending) this.s.unrelease.run(hash);
      const unreferenced = new Set<string>();
      for (let i = 0; i < pending.length; i++) {
        const hash = pending[i] as string;
        if (unreferenced.has(hash) || this.s.referenced.get(hash)) continue;
        unreferenced.add(hash);
        // A Directory or Tree nothing names any more (no job, entry or parent): its members are released with it,
        // and looked at again even if already seen (their last referrer may have been this tree).
        const members = this.s.treeMembers.all(hash);
        if (members.length === 0) continue;
        this.s.dropTree.run(hash);
        for (const m of members) if (!unreferenced.has(m.hash)) pending.push(m.hash);
      }
      return [...unreferenced];
    })();
  }
}
