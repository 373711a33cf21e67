/**
 * Run directories are removed off the jobs' path: a finished job's directory waits while others run and
 * goes once the worker is idle. Real server, real sandbox (bubblewrap), real program.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { digestOf } from '../../src/core/digest.js';
import { eventually } from '../helpers/processes.js';
import { startTestServer } from '../helpers/server.js';
import { compileC, requireTools } from '../helpers/tools.js';

test('a finished run directory waits while another job runs, and is removed once the worker is idle', async (t) => {
  if (!requireTools(t, 'bwrap', 'gcc')) return;
  const ts = await startTestServer();
  t.after(() => ts.close());
  const bytes = readFileSync(compileC({ file: 'programs/sleepy.c' }, 'x86_64'));
  const exe = digestOf(bytes);
  await ts.client.putBlob(exe, bytes);
  const runs = join(ts.dataDir, 'runs');

  const long = await ts.client.submit({ executable: exe, args: ['1500'], doNotCache: true });
  const short = await ts.client.submit({ executable: exe, args: ['10'], doNotCache: true }, { wait: true });
  assert.equal(short.state, 'completed');
  // The short job is done and committed; its directory is kept beside the long job's while that runs.
  assert.equal((await readdir(runs)).length, 2, 'both run directories exist while a job runs');
  assert.equal((await ts.client.getExecution(long.id)).state, 'running');
  await eventually(async () => ((await ts.client.getExecution(long.id)).state === 'completed' ? true : undefined), 20_000, 'the long job');
  await eventually(async () => ((await readdir(runs)).length === 0 ? true : undefined), 10_000, 'every run directory removed once idle');
});
