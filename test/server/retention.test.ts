/**
 * `remex serve --retain`: the sweep removes finished jobs past their retention from a real SQLite store and
 * keeps the rest; and the size and duration flags parse as documented, refusing nonsense by name.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import { parseDuration } from '../../src/core/duration.js';
import { parseSize } from '../../src/server/cas-options.js';
import { RetentionSweep } from '../../src/server/retention.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { actionDigestOf, makeReport, makeSpec, X86 } from '../store/fixtures.js';

const DAY = 86_400_000;

test('the retention sweep removes jobs finished more than --retain ago, and only those', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'remex-retain-'));
  const store = new SqliteStore({ path: join(dir, 'remex.db') });
  t.after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const T0 = 1_700_000_000_000;
  const add = async (label: string): Promise<string> => {
    const spec = makeSpec({ label, platform: X86 });
    return (await store.jobs.enqueue({ id: label, actionDigest: actionDigestOf(spec), instance: '', priority: 0, spec, nowMs: T0, mergeable: false })).job.id;
  };
  for (const label of ['old-done', 'recent-done', 'still-queued']) await add(label);
  const [first] = await store.jobs.claim({ platforms: [X86], workerId: 'w', max: 1, leaseMs: 60_000, nowMs: T0 });
  assert.equal(first?.id, 'old-done');
  await store.jobs.finish({ id: 'old-done', attempt: 1, workerId: 'w', outcome: { state: 'completed', result: makeReport() }, nowMs: T0 });
  await store.jobs.cancel('recent-done', T0 + 6 * DAY);

  let now = T0 + 7 * DAY + 1;
  const sweep = new RetentionSweep(store.jobs, { retainMs: 7 * DAY, now: () => now, logger: pino({ level: 'silent' }) });
  assert.equal((await sweep.sweep()).jobs, 1);
  assert.equal(await store.jobs.get('old-done'), undefined);
  assert.ok(await store.jobs.get('recent-done'));
  assert.ok(await store.jobs.get('still-queued'));
  now += 7 * DAY;
  assert.equal((await sweep.sweep()).jobs, 1);
  assert.equal((await store.jobs.get('still-queued'))?.state, 'queued', 'a queued job is never removed, however old');
  await sweep.close();
});

test('--cas-max-bytes, --cas-grace and --retain parse sizes and durations, and refuse nonsense by flag', () => {
  assert.equal(parseSize('500M', '--cas-max-bytes'), 500 * 1024 ** 2);
  assert.equal(parseSize('20G', '--cas-max-bytes'), 20 * 1024 ** 3);
  assert.equal(parseSize('1.5KiB', '--cas-max-bytes'), 1536);
  assert.equal(parseSize('4096', '--cas-max-bytes'), 4096);
  assert.equal(parseDuration('7d', '--retain'), 7 * DAY);
  assert.equal(parseDuration('10m', '--cas-grace'), 600_000);
  for (const bad of ['', '0', '-1G', 'lots', '5X']) assert.throws(() => parseSize(bad, '--cas-max-bytes'), /--cas-max-bytes: expected a size/);
  for (const bad of ['', 'soon', '3w', '-1d']) assert.throws(() => parseDuration(bad, '--retain'), /--retain "[^"]*": /);
});
