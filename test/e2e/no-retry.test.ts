/**
 * `--no-retry`, end to end: a real `remex worker` process is killed (SIGKILL) while it runs two jobs. The
 * one submitted with `--no-retry` fails as LOST once the worker's lease runs out; the other goes back to the
 * queue to run again — what a benchmark that must not run twice, and any other job, each want.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RemexClient } from '../../src/client/remex-client.js';
import { LOST_NO_RETRY } from '../../src/store/job-rules.js';
import { eventually, killHard, spawnRemex, waitForOutput } from '../helpers/processes.js';
import { remexCli, serveInTempDir } from '../helpers/remex-cli.js';
import type { ServeFixture } from '../helpers/remex-cli.js';
import { compileC, requireTools } from '../helpers/tools.js';

let fx: ServeFixture;

describe('--no-retry', () => {
  before(async () => {
    fx = await serveInTempDir('remex-noretry-', ['--workers', '0', '--accept-platform', 'x86_64-linux-cpu', '--lease-timeout', '2']);
  });
  after(async () => {
    await fx?.stop();
  });

  test('a job that must not run twice fails as LOST when its worker dies; another is queued again', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const worker = spawnRemex(['worker', '--server', fx.url, '--work-dir', join(fx.dir, 'w'), '--slots', '2', '--platform', 'x86_64-linux-cpu']);
    fx.processes.push(worker);
    await waitForOutput(worker, /remex worker \S+ serving/);
    const sleepy = compileC({ file: 'programs/sleepy.c' }, 'x86_64');
    const once = (await remexCli(['submit', '--server', fx.url, '--no-retry', '--name', 'once', sleepy, '--', '60000'])).stdout.trim();
    const again = (await remexCli(['submit', '--server', fx.url, '--name', 'again', sleepy, '--', '60000'])).stdout.trim();
    const client = new RemexClient(fx.url);
    assert.equal((await client.getExecution(once)).noRetry, true);
    for (const id of [once, again]) await eventually(async () => ((await client.getExecution(id)).state === 'running' ? true : undefined), 15_000, `job ${id} running`);

    await killHard(worker);
    const lost = await eventually(async () => {
      const v = await client.getExecution(once);
      return v.state === 'failed' ? v : undefined;
    }, 20_000, 'the no-retry job failed');
    assert.deepEqual([lost.attempt, lost.failure], [1, LOST_NO_RETRY]);
    const requeued = await eventually(async () => {
      const v = await client.getExecution(again);
      return v.state === 'queued' ? v : undefined;
    }, 20_000, 'the other job queued again');
    assert.equal(requeued.attempt, 1);
    assert.equal(requeued.noRetry, false);
  });
});
