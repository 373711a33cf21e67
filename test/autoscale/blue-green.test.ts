/**
 * A blue/green rollout by hand with real `remex worker` processes: blue serves; draining blue alone is
 * refused (the platform would have no worker taking work); green starts; `remex worker drain --generation
 * blue` then moves the queue to green, blue's running job is committed, and blue's process exits 0.
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

describe('blue/green by generation', () => {
  before(async () => {
    fx = await serveInTempDir('remex-bluegreen-', ['--workers', '0', '--accept-platform', 'x86_64-linux-cpu']);
  });
  after(async () => {
    await fx?.stop();
  });

  test('drain --generation refuses to leave a platform bare, then hands the queue to the next generation', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const start = (gen: string) => {
      const w = spawnRemex(['worker', '--server', fx.url, '--work-dir', join(fx.dir, gen), '--slots', '1', '--name', `${gen}-1`, '--generation', gen, '--platform', 'x86_64-linux-cpu']);
      fx.processes.push(w);
      return w;
    };
    const blue = start('blue');
    await waitForOutput(blue, /remex worker (\S+) serving/);
    const client = new RemexClient(fx.url);
    const bytes = readFileSync(compileC({ file: 'programs/sleepy.c' }, 'x86_64'));
    const exe = digestOf(bytes);
    await client.putBlob(exe, bytes);
    const running = await client.submit({ executable: exe, args: ['8000'] });
    await eventually(async () => ((await client.getExecution(running.id)).state === 'running' ? true : undefined), 10_000, 'the job running on blue');

    const refused = await remexCli(['worker', 'drain', '--generation', 'blue', '--server', fx.url]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /FAILED_PRECONDITION: draining generation blue would leave x86_64-linux-cpu with no worker taking work/);

    const green = start('green');
    await waitForOutput(green, /remex worker (\S+) serving/);
    const listed = await remexCli(['workers', '--server', fx.url]);
    assert.match(listed.stdout, /blue-1\s+x86_64-linux-cpu\s+native\s+blue\s+1\s+1\s+-\s+active/, listed.stdout);
    assert.match(listed.stdout, /green-1\s+x86_64-linux-cpu\s+native\s+green\s+1\s+0\s+-\s+active/, listed.stdout);

    const ordered = await remexCli(['worker', 'drain', '--generation', 'blue', '--server', fx.url]);
    assert.equal(ordered.code, 0, ordered.stderr);
    assert.match(ordered.stdout, /drain ordered for \S+ \(blue-1\)/);
    const later = await client.submit({ executable: exe, args: ['0'] });
    assert.deepEqual(await blue.exited, { code: 0, signal: null });
    assert.equal((await client.getExecution(running.id)).state, 'completed', 'blue finished what it held');
    const done = await eventually(async () => {
      const v = await client.getExecution(later.id);
      return v.state === 'completed' ? v : undefined;
    }, 30_000, 'the later job run by green');
    assert.equal(done.code, 0);
    const workers = await client.workers();
    assert.deepEqual(workers.map((w) => [w.name, w.state, w.labels.generation]).sort(), [['blue-1', 'gone', 'blue'], ['green-1', 'active', 'green']]);
  });
});
