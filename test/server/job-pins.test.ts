/**
 * JobInputPins on a real SQLite store and filesystem CAS: the input tree (every Directory and file) and
 * stdin of queued and running jobs are pinned; a finished job's are not; and a capped store evicting
 * under pressure keeps a queued job's inputs while it drops older blobs nobody needs.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { LatePins } from '../../src/cas/fs/blob-usage.js';
import { FsBlobStore } from '../../src/cas/fs/fs-blob-store.js';
import { buildInputTree } from '../../src/cas/tree.js';
import { digestOf } from '../../src/core/digest.js';
import { JobInputPins } from '../../src/server/job-pins.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { actionDigestOf, makeReport, makeSpec, X86 } from '../store/fixtures.js';

const KiB = 1024;

test("queued and running jobs' input trees and stdin are pinned, and a capped store never evicts them", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'remex-pins-'));
  let now = 1_000_000;
  const pins = new LatePins();
  const blobs = new FsBlobStore({ root: join(dir, 'cas'), maxBlobBytes: 1024 * KiB, fsync: false, maxBytes: 512 * KiB, evictionGraceMs: 1000, now: () => now, pins });
  const store = new SqliteStore({ path: join(dir, 'remex.db') });
  t.after(async () => {
    await blobs.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  pins.bind(new JobInputPins(store.jobs, blobs));

  const input = Buffer.alloc(200 * KiB, 1);
  const nested = Buffer.from('a small source file');
  const stdin = Buffer.from('stdin bytes');
  for (const b of [input, nested, stdin]) await blobs.put(digestOf(b), b);
  const root = await buildInputTree(
    [
      { path: 'big.bin', digest: digestOf(input), isExecutable: false },
      { path: 'src/deep/main.c', digest: digestOf(nested), isExecutable: false },
    ],
    blobs,
  );
  const spec = { ...makeSpec({ label: 'pinned', platform: X86 }), inputRootDigest: root, stdinDigest: digestOf(stdin) };
  await store.jobs.enqueue({ id: 'job-pinned', actionDigest: actionDigestOf(spec), instance: '', priority: 0, spec, nowMs: now, mergeable: false });

  const pinned = await pins.pinnedHashes();
  for (const d of [root, digestOf(input), digestOf(nested), digestOf(stdin)]) assert.ok(pinned.has(d.hash), `${d.hash} pinned`);
  assert.equal(pinned.size, 6, 'root, src, src/deep, two files and stdin');

  // Pressure: 4 x 200 KiB more through a 512 KiB cap, each write after the grace of the one before.
  for (let i = 0; i < 4; i++) {
    now += 5000;
    const other = Buffer.alloc(200 * KiB, 10 + i);
    await blobs.put(digestOf(other), other);
  }
  for (const d of [root, digestOf(input), digestOf(nested), digestOf(stdin)]) assert.ok(await blobs.has(d), 'a queued job keeps its inputs');

  // Running still pins; finished does not.
  const [claimed] = await store.jobs.claim({ platforms: [X86], workerId: 'w', max: 1, leaseMs: 60_000, nowMs: now });
  assert.ok((await pins.pinnedHashes()).has(digestOf(input).hash));
  await store.jobs.finish({ id: claimed?.id ?? '', attempt: 1, workerId: 'w', outcome: { state: 'completed', result: makeReport() }, nowMs: now });
  assert.equal((await pins.pinnedHashes()).size, 0);
});
