/**
 * Real Bazel (4.2) against remex's HTTP door as a plain HTTP cache (Bazel's HTTP cache protocol at /cas/…
 * and /ac/…): actions run locally, fill the cache, and after `bazel clean` all come back as cache hits.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { requireTools } from '../helpers/tools.js';
import { BazelWorkspace, listExecutions, startRemexForBazel } from './bazel.js';
import type { BazelRun } from './bazel.js';

const HELLO = 'hello from remex: 42 built by bazel\n';

function assertOk(run: BazelRun): void {
  assert.equal(run.code, 0, `bazel failed (code ${run.code}, signal ${run.signal}):\n${run.output}`);
}

test('Bazel with --remote_cache=http://… fills remex through the HTTP cache protocol and reads it back after bazel clean', async (t) => {
  if (!requireTools(t, 'bazel', 'gcc')) return;
  const remex = await startRemexForBazel(t, ['--workers', '0']);
  const ws = BazelWorkspace.create(t, 'genrules');
  const cache = [`--remote_cache=${remex.http}`, '--spawn_strategy=local'];

  const first = await ws.run('build', [...cache, '//...']);
  assertOk(first);
  assert.equal(ws.readOutput('hello.txt'), HELLO);
  assert.equal(first.processes.local, 4, first.output);
  assert.doesNotMatch(first.output, /WARNING: .*(cache|upload)/i, 'every upload to the HTTP cache should succeed');

  assertOk(await ws.run('clean'));
  const second = await ws.run('build', [...cache, '//...']);
  assertOk(second);
  assert.equal(ws.readOutput('hello.txt'), HELLO);
  assert.equal(second.processes['remote cache hit'], 4, `the rebuild should come from remex's HTTP cache:\n${second.output}`);
  assert.deepEqual(await listExecutions(remex.http), [], 'a cache executes nothing');
});
