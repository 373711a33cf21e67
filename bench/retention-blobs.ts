/**
 * What removing the blobs only deleted jobs used costs the retention sweep (issue 17, decision 0047): N
 * finished jobs on the embedded store (SQLite) and the filesystem CAS, each with its own input file and
 * stdout under a shared toolchain tree of T files, swept once past their retention — recording their
 * references, deleting them, removing their blobs — against a floor measured in the same run: the same
 * sweep of the same jobs on a second store without blob references (rows only).
 *
 * Target: ≤ 1 ms per deleted job with blob removal (a week of 100,000 jobs in under 2 minutes of sweeping,
 * spread over the hourly sweeps), and the shared tree's members recorded once, not once per job.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { encodeDirectory } from '../src/cas/directory-codec.js';
import { FsBlobStore } from '../src/cas/fs/fs-blob-store.js';
import type { Digest } from '../src/core/digest.js';
import { digestOf } from '../src/core/digest.js';
import { RetentionSweep } from '../src/server/retention.js';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.js';
import { actionDigestOf, makeReport, makeSpec, X86 } from '../test/store/fixtures.js';
import { intEnv, verdict } from './lib.js';

const JOBS = intEnv('BENCH_RETENTION_JOBS', 2_000);
const TOOL_FILES = intEnv('BENCH_RETENTION_TOOL_FILES', 1_000);
const DAY = 86_400_000;
const T0 = 1_700_000_000_000;

async function fill(store: SqliteStore, cas: FsBlobStore): Promise<void> {
  const put = async (text: string | Buffer): Promise<Digest> => {
    const d = digestOf(text);
    await cas.put(d, typeof text === 'string' ? Buffer.from(text) : text);
    return d;
  };
  const toolFiles = [];
  for (let i = 0; i < TOOL_FILES; i++) toolFiles.push({ name: `f${String(i).padStart(5, '0')}`, digest: await put(`tool file ${i}`), isExecutable: false });
  const tool = await put(encodeDirectory({ files: toolFiles, directories: [], symlinks: [] }));
  for (let i = 0; i < JOBS; i++) {
    const input = await put(`input of job ${i}`);
    const root = await put(encodeDirectory({ files: [{ name: 'in.txt', digest: input, isExecutable: false }], directories: [{ name: 'tool', digest: tool }], symlinks: [] }));
    const spec = { ...makeSpec({ label: `job-${i}`, platform: X86 }), inputRootDigest: root };
    await store.jobs.enqueue({ id: `job-${i}`, actionDigest: actionDigestOf(spec), instance: '', priority: 0, spec, nowMs: T0, mergeable: false });
    await store.jobs.claim({ platforms: [X86], workerId: 'w', max: 1, leaseMs: 60_000, nowMs: T0 });
    const stdout = await put(`stdout of job ${i}`);
    const report = makeReport({ stdout: { digest: stdout, inlineBase64: null, totalBytes: stdout.sizeBytes, truncated: false }, outputFiles: [] });
    await store.jobs.finish({ id: `job-${i}`, attempt: 1, workerId: 'w', outcome: { state: 'completed', result: report }, nowMs: T0 });
  }
}

async function sweepOnce(withBlobs: boolean): Promise<{ ms: number; jobs: number; blobs: number; refRows: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'remex-bench-retention-'));
  const store = new SqliteStore({ path: join(dir, 'remex.db') });
  let casNow = T0;
  const cas = new FsBlobStore({ root: join(dir, 'cas'), maxBlobBytes: 1 << 20, fsync: false, trackUsage: true, now: () => casNow });
  try {
    await fill(store, cas);
    casNow = T0 + 8 * DAY;
    const sweep = new RetentionSweep(store.jobs, { retainMs: 7 * DAY, now: () => casNow, logger: pino({ level: 'silent' }), ...(withBlobs ? { blobs: { references: store.blobReferences, store: cas, reclaimer: cas } } : {}) });
    // References are recorded by the sweeps within the retention (hourly), before the jobs expire: timed apart.
    const recordStart = performance.now();
    casNow = T0 + DAY;
    if (withBlobs) await sweep.sweep();
    const recordMs = performance.now() - recordStart;
    const db = (store as unknown as { db: { prepare(sql: string): { get(): { n: number } } } }).db;
    const refRows = withBlobs ? db.prepare('SELECT count(*) AS n FROM blob_refs').get().n : 0;
    casNow = T0 + 8 * DAY;
    const start = performance.now();
    const outcome = await sweep.sweep();
    const ms = performance.now() - start + recordMs;
    await sweep.close();
    return { ms, jobs: outcome.jobs, blobs: outcome.blobs, refRows };
  } finally {
    await cas.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchRetentionBlobs(): Promise<boolean> {
  const floor = await sweepOnce(false);
  const withBlobs = await sweepOnce(true);
  const perJob = withBlobs.ms / withBlobs.jobs;
  // Per job: its own row (root, input, stdout, action, stderr) — the tree's members once, not per job.
  const onceOnly = withBlobs.refRows < JOBS * 8 + TOOL_FILES * 2;
  console.log(`${JOBS} jobs under a shared tree of ${TOOL_FILES} files: rows only ${floor.ms.toFixed(0)} ms (${floor.jobs} jobs); with blob references ${withBlobs.ms.toFixed(0)} ms (${withBlobs.jobs} jobs, ${withBlobs.blobs} blobs removed, ${withBlobs.refRows} reference rows)`);
  console.log(`  ${perJob.toFixed(3)} ms per deleted job (target ≤ 1 ms): ${verdict(perJob <= 1)}; ratio to rows only ${(withBlobs.ms / Math.max(1, floor.ms)).toFixed(1)}x; shared tree recorded once: ${verdict(onceOnly)}`);
  return perJob <= 1 && onceOnly && withBlobs.blobs >= JOBS * 3;
}

if (process.argv[1] === import.meta.filename) await benchRetentionBlobs();
