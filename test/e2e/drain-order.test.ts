/**
 * A drain the server orders (scale-in, blue/green), end to end: a real `remex serve` with no local workers,
 * a real `remex worker` process with labels and an instance id, a job running on it when the order comes.
 * The worker finishes and commits that job, takes nothing new, leaves, and its process exits 0.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RemexClient } from '../../src/client/remex-client.js';
import { digestOf } from '../../src/core/digest.js';
import { remexCli, serveInTempDir } from '../helpers/remex-cli.js';
import type { ServeFixture } from '../helpers/remex-cli.js';
import { eventually, spawnRemex, waitForOutput } from '../helpers/processes.js';
import { compileC, requireTools } from '../helpers/tools.js';

let fx: ServeFixture;

describe('a drain ordered by the server', () => {
  before(async () => {
    fx = await serveInTempDir('remex-drain-', ['--workers', '0', '--accept-platform', 'x86_64-linux-cpu', '--lease-timeout', '4']);
  });
  after(async () => {
    await fx?.stop();
  });

  test('the running job is committed, nothing new is taken, the worker leaves and exits 0', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const worker = spawnRemex(['worker', '--server', fx.url, '--work-dir', join(fx.dir, 'w'), '--slots', '1', '--name', 'blue-1', '--label', 'pool=blue', '--instance-id', 'pid-test', '--platform', 'x86_64-linux-cpu', '--price-per-hour', '0.25'], { REMEX_LOG_LEVEL: 'info' });
    fx.processes.push(worker);
    const workerId = (await waitForOutput(worker, /remex worker (\S+) serving/))[1] as string;
    const client = new RemexClient(fx.url);
    const [registered] = await client.workers();
    assert.deepEqual([registered?.id, registered?.name, registered?.labels, registered?.instanceId, registered?.state], [workerId, 'blue-1', { pool: 'blue' }, 'pid-test', 'active']);

    const bytes = readFileSync(compileC({ file: 'programs/sleepy.c' }, 'x86_64'));
    const exe = digestOf(bytes);
    await client.putBlob(exe, bytes);
    const running = await client.submit({ executable: exe, args: ['4000'] });
    await eventually(async () => ((await client.getExecution(running.id)).state === 'running' ? true : undefined), 10_000, 'the job running on the worker');

    const ordered = await remexCli(['drain', workerId, '--server', fx.url]);
    assert.equal(ordered.code, 0, ordered.stderr);
    assert.match(ordered.stdout, new RegExp(`drain ordered for ${workerId} \\(blue-1\\)`));
    const listed = await remexCli(['workers', '--server', fx.url]);
    const json = JSON.parse((await remexCli(['workers', '--server', fx.url, '--json'])).stdout) as Array<{ id: string; pricePerHour?: number; price: unknown }>;
    assert.deepEqual(json.map((w) => [w.id, w.pricePerHour, w.price]), [[workerId, 0.25, { perHour: 0.25, from: 'worker' }]]);
    assert.match(listed.stdout, new RegExp(`${workerId}\\s+blue-1\\s+x86_64-linux-cpu\\s+native\\s+-\\s+1\\s+1\\s+0\\.25\\s+(drain-ordered|draining)\\s+\\d+s\\s+pool=blue`), listed.stdout);

    // A job submitted after the order is not taken by the draining worker.
    const later = await client.submit({ executable: exe, args: ['0'] });
    const exit = await Promise.race([worker.exited, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`the worker did not exit:\n${worker.output()}`)), 30_000))]);
    assert.deepEqual(exit, { code: 0, signal: null }, worker.output());
    const done = await client.getExecution(running.id);
    assert.equal(done.state, 'completed', worker.output());
    assert.equal(done.code, 0);
    assert.equal((await client.getExecution(later.id)).state, 'queued', 'left for another worker');
    const [gone] = await client.workers();
    assert.equal(gone?.state, 'gone');
    assert.match(worker.output(), /asked this worker to drain/);
    assert.match(worker.output(), /drained on the server's order: exiting/);

    const unknown = await remexCli(['drain', 'no-such-worker', '--server', fx.url]);
    assert.equal(unknown.code, 125);
    assert.match(unknown.stderr, /NOT_FOUND: no live worker no-such-worker/);

    // The worker drained and left: its order cannot be withdrawn any more, and the reason says so.
    const late = await remexCli(['undrain', workerId, '--server', fx.url]);
    assert.notEqual(late.code, 0);
    assert.match(late.stderr, new RegExp(`FAILED_PRECONDITION: worker ${workerId} has left; it cannot be undrained`));
  });
});
