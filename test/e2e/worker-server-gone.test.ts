/**
 * `remex worker` whose server died: one SIGTERM stops it. A real `remex serve` (no local workers), a real
 * `remex worker` process running a job in the bubblewrap sandbox; the server is killed, then the worker gets
 * SIGTERM. It stops its run (no process of it is left), leaves without the server, and exits 69
 * (EX_UNAVAILABLE, docs/cli.md) — where it used to retry the connection until a second signal.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { RemexClient } from '../../src/client/remex-client.js';
import { EXIT_WORKER_SERVER_UNREACHABLE } from '../../src/cli/exit-codes.js';
import { digestOf } from '../../src/core/digest.js';
import { serveInTempDir } from '../helpers/remex-cli.js';
import type { ServeFixture } from '../helpers/remex-cli.js';
import { eventually, killHard, processesWithMarker, spawnRemex, waitForOutput } from '../helpers/processes.js';
import { compileC, requireTools } from '../helpers/tools.js';

let fx: ServeFixture | undefined;
after(async () => {
  await fx?.stop();
});

test('a worker whose server was killed stops its runs and exits on one SIGTERM, with status 69', async (t) => {
  if (!requireTools(t, 'bwrap', 'gcc')) return;
  fx = await serveInTempDir('remex-server-gone-', ['--workers', '0', '--accept-platform', 'x86_64-linux-cpu']);
  const [server] = fx.processes;
  assert.ok(server);
  const worker = spawnRemex(['worker', '--server', fx.url, '--work-dir', join(fx.dir, 'w'), '--slots', '1', '--platform', 'x86_64-linux-cpu'], { REMEX_LOG_LEVEL: 'info' });
  fx.processes.push(worker);
  await waitForOutput(worker, /remex worker (\S+) serving/);

  const client = new RemexClient(fx.url);
  const bytes = readFileSync(compileC({ file: 'programs/sleepy.c' }, 'x86_64'));
  const exe = digestOf(bytes);
  await client.putBlob(exe, bytes);
  // A marker in its arguments finds the run's processes on this host (sleepy reads only the first).
  const marker = `server-gone-${process.pid}-${Date.now()}`;
  const job = await client.submit({ executable: exe, args: ['600000', marker] });
  await eventually(async () => ((await client.getExecution(job.id)).state === 'running' ? true : undefined), 20_000, 'the job running on the worker');
  await eventually(async () => ((await processesWithMarker(marker)).length > 0 ? true : undefined), 20_000, 'the run\'s process');
  client.close();

  await killHard(server);
  worker.child.kill('SIGTERM');
  const exit = await Promise.race([worker.exited, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`one SIGTERM did not stop the worker:\n${worker.output()}`)), 60_000))]);
  assert.deepEqual(exit, { code: EXIT_WORKER_SERVER_UNREACHABLE, signal: null }, worker.output());
  assert.equal(EXIT_WORKER_SERVER_UNREACHABLE, 69);
  assert.match(worker.output(), /the server cannot be reached: stopping the runs and leaving without it/);
  assert.deepEqual(await processesWithMarker(marker), [], 'no process of the run is left');
});
