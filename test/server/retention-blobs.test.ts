/**
 * Decision 0047: the retention sweep removes, with the jobs it deletes, the CAS blobs only they used — on a
 * real SQLite store and a real PostgreSQL, with the real filesystem CAS. Inputs shared with a kept job,
 * outputs an action-cache entry names, a queued job's inputs and a blob a client was just told is present
 * all stay.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import pino from 'pino';
import { encodeDirectory, encodeTree } from '../../src/cas/directory-codec.js';
import { LatePins } from '../../src/cas/fs/blob-usage.js';
import { FsBlobStore } from '../../src/cas/fs/fs-blob-store.js';
import type { Digest } from '../../src/core/digest.js';
import { digestOf } from '../../src/core/digest.js';
import type { Directory } from '../../src/core/model.js';
import { JobInputPins } from '../../src/server/job-pins.js';
import { RetentionSweep } from '../../src/server/retention.js';
import type { Store } from '../../src/store/ports.js';
import { PostgresStore } from '../../src/store/postgres/postgres-store.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { usePostgres } from '../helpers/postgres.js';
import { actionDigestOf, makeReport, makeSpec, X86 } from '../store/fixtures.js';

const DAY = 86_400_000;
const GRACE = 600_000;
const T0 = 1_700_000_000_000;

async function scenario(store: Store): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'remex-retain-blobs-'));
  let casNow = T0;
  const pins = new LatePins();
  const cas = new FsBlobStore({ root: join(dir, 'cas'), maxBlobBytes: 1 << 20, fsync: false, trackUsage: true, pins, evictionGraceMs: GRACE, now: () => casNow });
  try {
    pins.bind(new JobInputPins(store.jobs, cas));
    const blob = async (text: string | Buffer): Promise<Digest> => {
      const d = digestOf(text);
      await cas.put(d, typeof text === 'string' ? Buffer.from(text) : text);
      return d;
    };
    const file = (name: string, digest: Digest) => ({ name, digest, isExecutable: false });
    const directory = async (files: Directory['files'], directories: Directory['directories'] = []): Promise<Digest> => blob(encodeDirectory({ files, directories, symlinks: [] }));

    const tool = await blob('a compiler both jobs use');
    const oldOnlyInput = await blob('an input only the old job used');
    const keptOnlyInput = await blob('an input only the kept job uses');
    // A subdirectory both roots share: recorded once, kept while either root is.
    const libFile = await blob('a library both jobs link');
    const lib = await directory([file('libc.so', libFile)]);
    const oldRoot = await directory([file('cc', tool), file('in.txt', oldOnlyInput)], [{ name: 'lib', digest: lib }]);
    const keptRoot = await directory([file('cc', tool), file('in.txt', keptOnlyInput)], [{ name: 'lib', digest: lib }]);
    const pinnedFile = await blob('an output the queued job takes as input');
    const queuedRoot = await directory([file('in.txt', pinnedFile)]);
    const oldStdout = await blob('old stdout');
    const sharedStream = await blob('a stream both runs printed');
    const oldOutput = await blob('an output file only the old job made');
    const cachedOutput = await blob('an output an action-cache entry names');
    const recentOutput = await blob('an output a client checked a moment ago');
    const treeFile = await blob('a file in the old output directory');
    const outputTree = await blob(encodeTree({ root: { files: [file('f', treeFile)], directories: [], symlinks: [] }, children: [] }));

    const stream = (digest: Digest) => ({ digest, inlineBase64: null, totalBytes: digest.sizeBytes, truncated: false });
    const run = async (label: string, inputRoot: Digest, report: ReturnType<typeof makeReport> | null, nowMs: number): Promise<string> => {
      const spec = { ...makeSpec({ label, platform: X86 }), inputRootDigest: inputRoot };
      const { job } = await store.jobs.enqueue({ id: label, actionDigest: actionDigestOf(spec), instance: '', priority: 0, spec, nowMs, mergeable: false });
      if (!report) return job.id;
      const [claimed] = await store.jobs.claim({ platforms: [X86], workerId: 'w', max: 1, leaseMs: 60_000, nowMs });
      assert.equal(claimed?.id, label);
      await store.jobs.finish({ id: label, attempt: 1, workerId: 'w', outcome: { state: 'completed', result: report }, nowMs });
      return job.id;
    };
    await run('old', oldRoot, makeReport({
      stdout: stream(oldStdout),
      stderr: stream(sharedStream),
      outputFiles: [oldOutput, cachedOutput, pinnedFile, recentOutput].map((digest, i) => ({ path: `out/${i}`, digest, isExecutable: false })),
      outputDirectories: [{ path: 'out/dir', treeDigest: outputTree }],
    }), T0);
    await run('kept', keptRoot, makeReport({ stdout: stream(sharedStream), outputFiles: [] }), T0 + 6 * DAY);
    await store.actionCache.put('', digestOf('another action'), makeReport({ outputFiles: [{ path: 'x', digest: cachedOutput, isExecutable: false }] }), T0);
    await run('queued', queuedRoot, null, T0 + 7 * DAY);

    const sweep = new RetentionSweep(store.jobs, { retainMs: 7 * DAY, now: () => casNow, logger: pino({ level: 'silent' }), blobs: { references: store.blobReferences, store: cas, reclaimer: cas } });
    // A first sweep within the retention records every finished job's and entry's references, deleting nothing.
    casNow = T0 + DAY;
    assert.deepEqual(await sweep.sweep(), { jobs: 0, blobs: 0 });

    casNow = T0 + 8 * DAY;
    // A client checks one of the old job's outputs: it is about to name it.
    assert.deepEqual(await cas.findMissing([recentOutput]), []);
    casNow += GRACE / 2;
    const outcome = await sweep.sweep();
    assert.equal(outcome.jobs, 1);
    assert.equal(await store.jobs.get('old'), undefined);

    const gone = { oldRoot, oldOnlyInput, oldStdout, oldOutput, outputTree, treeFile };
    const kept = { tool, lib, libFile, keptOnlyInput, keptRoot, sharedStream, cachedOutput, pinnedFile, queuedRoot, recentOutput };
    for (const [name, d] of Object.entries(gone)) assert.equal(await cas.has(d), false, `${name}: only the old job used it, so it went`);
    for (const [name, d] of Object.entries(kept)) assert.equal(await cas.has(d), true, `${name}: still needed, so it stayed`);
    assert.equal(outcome.blobs, Object.keys(gone).length);

    // The kept job, past its own retention, takes what only it used now; the blob kept for its grace period goes
    // too (it was offered again); the entry's and the queued job's blobs still stay.
    casNow = T0 + 14 * DAY;
    assert.deepEqual(await sweep.sweep(), { jobs: 1, blobs: 7 });
    for (const d of [keptOnlyInput, keptRoot, tool, lib, libFile, sharedStream, recentOutput]) assert.equal(await cas.has(d), false);
    for (const d of [cachedOutput, pinnedFile, queuedRoot]) assert.equal(await cas.has(d), true);
    await sweep.close();
  } finally {
    await cas.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

test('SQLite: the retention sweep removes the blobs only the deleted jobs used, and keeps every one still needed', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'remex-retain-db-'));
  const store = new SqliteStore({ path: join(dir, 'remex.db') });
  try {
    await scenario(store);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

const pgFixture = usePostgres();
if (pgFixture) {
  const fixture = pgFixture;
  describe('PostgreSQL', () => {
    test('the retention sweep removes the blobs only the deleted jobs used, and keeps every one still needed', async () => {
      const schema = fixture.newSchema('retain');
      const store = await PostgresStore.open({ url: fixture.url, schema, poolSize: 2 });
      try {
        await scenario(store);
      } finally {
        await store.close();
        await fixture.dropSchema(schema);
      }
    });
  });
}
