/**
 * Nothing is lost: real `remex serve` and `remex worker` processes, killed with SIGKILL for real.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { RemexClient } from '../../src/client/remex-client.js';
import type { Digest } from '../../src/core/digest.js';
import { digestOf } from '../../src/core/digest.js';
import { compileC, requireTools } from '../helpers/tools.js';
import { startTestServer } from '../helpers/server.js';
import { eventually, killHard, spawnRemex, startServeProcess, waitForOutput } from '../helpers/processes.js';

async function uploadSleepy(client: RemexClient): Promise<Digest> {
  const bytes = readFileSync(compileC({ file: 'programs/sleepy.c' }, 'x86_64'));
  const d = digestOf(bytes);
  await client.putBlob(d, bytes);
  return d;
}

test('queued and running jobs survive SIGKILL of remex serve and complete after restart', async (t) => {
  if (!requireTools(t, 'bwrap', 'gcc')) return;
  const dataDir = mkdtempSync(join(tmpdir(), 'remex-restart-'));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const first = await startServeProcess(['--data', dataDir, '--workers', '2']);
  const client = new RemexClient(first.url);
  const exe = await uploadSleepy(client);
  const ids: string[] = [];
  for (let i = 0; i < 8; i++) ids.push((await client.submit({ executable: exe, args: [String(400 + i)], doNotCache: true })).id);
  await eventually(async () => ((await client.platforms()).find((p) => p.platform === 'x86_64-linux-cpu')?.running === 2 ? true : undefined), 15_000, 'two running jobs');
  await killHard(first.proc);

  const second = await startServeProcess(['--data', dataDir, '--workers', '2']);
  t.after(() => killHard(second.proc));
  const client2 = new RemexClient(second.url);
  for (const id of ids) {
    const v = await eventually(async () => {
      const e = await client2.getExecution(id);
      return e.state === 'queued' || e.state === 'running' ? undefined : e;
    }, 30_000, `job ${id}`);
    assert.equal(v.state, 'completed', `${id}: ${JSON.stringify(v.failure)}`);
    assert.equal(v.code, 0);
  }
});

test('a worker that vanishes mid-run loses no job: the lease expires and another worker runs it', async (t) => {
  if (!requireTools(t, 'bwrap', 'gcc')) return;
  const ts = await startTestServer({
    workerSlots: 0,
    scheduler: { leaseTimeoutMs: 1_000, heartbeatIntervalMs: 200, workerSilenceMs: 1_500, reaperIntervalMs: 100 },
  });
  t.after(() => ts.close());
  const workDir = mkdtempSync(join(tmpdir(), 'remex-worker-'));
  t.after(() => rmSync(workDir, { recursive: true, force: true }));
  const w1 = spawnRemex(['worker', '--server', ts.server.url, '--slots', '1', '--name', 'doomed', '--work-dir', join(workDir, 'a'), '--platform', 'x86_64-linux-cpu']);
  t.after(() => killHard(w1));
  await waitForOutput(w1, /remex worker/);
  const exe = await uploadSleepy(ts.client);
  const job = await ts.client.submit({ executable: exe, args: ['1500'], doNotCache: true });
  await eventually(async () => ((await ts.client.getExecution(job.id)).state === 'running' ? true : undefined), 15_000, 'job running');
  await killHard(w1);

  const w2 = spawnRemex(['worker', '--server', ts.server.url, '--slots', '1', '--name', 'survivor', '--work-dir', join(workDir, 'b'), '--platform', 'x86_64-linux-cpu']);
  t.after(() => killHard(w2));
  const done = await ts.server.scheduler.waitForTerminal(job.id);
  assert.equal(done.state, 'completed', JSON.stringify(done.failure));
  assert.equal(done.attempt, 2);
  assert.equal(done.result?.worker, 'survivor');
  const platforms = await ts.client.platforms();
  assert.equal(platforms.find((p) => p.platform === 'x86_64-linux-cpu')?.workers, 1, 'the dead worker is no longer counted');
});

test('SIGTERM drains a worker: its running job finishes and commits, then it exits', async (t) => {
  if (!requireTools(t, 'bwrap', 'gcc')) return;
  const ts = await startTestServer({ workerSlots: 0, scheduler: { heartbeatIntervalMs: 200 } });
  t.after(() => ts.close());
  const workDir = mkdtempSync(join(tmpdir(), 'remex-worker-'));
  t.after(() => rmSync(workDir, { recursive: true, force: true }));
  const w = spawnRemex(['worker', '--server', ts.server.url, '--slots', '1', '--work-dir', workDir, '--platform', 'x86_64-linux-cpu']);
  t.after(() => killHard(w));
  await waitForOutput(w, /remex worker/);
  const exe = await uploadSleepy(ts.client);
  const job = await ts.client.submit({ executable: exe, args: ['800'], doNotCache: true });
  await eventually(async () => ((await ts.client.getExecution(job.id)).state === 'running' ? true : undefined), 15_000, 'job running');
  w.child.kill('SIGTERM');
  const queuedAfter = await ts.client.submit({ executable: exe, args: ['10'], doNotCache: true });
  const exit = await w.exited;
  assert.equal(exit.code, 0, w.output());
  const done = await ts.client.getExecution(job.id);
  assert.equal(done.state, 'completed');
  assert.equal((await ts.client.getExecution(queuedAfter.id)).state, 'queued', 'a draining worker takes no new job');
});
