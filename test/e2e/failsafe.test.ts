/**
 * The failsafe layers of a long job (docs/long-jobs.md), each against a real program in the real sandbox
 * built to defeat the layer before it, through real `remex serve` and `remex worker` processes:
 *   1 + 2. a program that ignores SIGTERM: SIGTERM at --max-runtime does nothing, SIGKILL of its tree after
 *          the grace period ends it (timed_out);
 *   3 + 5. a supervisor that never returns (the worker's named injected fault `supervisor-hangs`): the
 *          worker's watchdog reports the run emergency_stopped and takes its slot out of service; with no
 *          slot left the worker leaves and exits non-zero, and its sandboxes die with it;
 *   4.     a SIGSTOPped worker: the server marks its job emergency_stopped and revokes the lease; on SIGCONT
 *          the worker hears so at its next call and kills the run.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RemexClient } from '../../src/client/remex-client.js';
import type { ExecutionView } from '../../src/api/execution-view.js';
import { EXIT_TIMED_OUT, EXIT_WORKER_UNFIT } from '../../src/cli/exit-codes.js';
import { digestOf } from '../../src/core/digest.js';
import { isRemexError } from '../../src/core/errors.js';
import { eventually, processesWithMarker, spawnRemex, waitForOutput } from '../helpers/processes.js';
import { remexCli, serveInTempDir } from '../helpers/remex-cli.js';
import type { ServeFixture } from '../helpers/remex-cli.js';
import { compileC, requireTools } from '../helpers/tools.js';

async function finished(client: RemexClient, id: string, timeoutMs: number): Promise<ExecutionView> {
  return eventually(async () => {
    const v = await client.getExecution(id);
    return v.state === 'queued' || v.state === 'running' ? undefined : v;
  }, timeoutMs, `job ${id} ended`);
}

async function noneLeft(marker: string, what: string): Promise<void> {
  await eventually(async () => ((await processesWithMarker(marker)).length === 0 ? true : undefined), 15_000, what);
}

describe('failsafe layers', () => {
  let fx: ServeFixture;
  let client: RemexClient;

  before(async () => {
    // A short lease (4 s) so that a silent worker is noticed within the test: its job's failsafe deadline
    // (max-runtime 1 s + failsafe 2 s) passes before its lease expires, so it is stopped, not requeued.
    fx = await serveInTempDir('remex-failsafe-', ['--workers', '0', '--accept-platform', 'x86_64-linux-cpu', '--lease-timeout', '4']);
    client = new RemexClient(fx.url);
  });
  after(async () => {
    client?.close();
    await fx?.stop();
  });

  test('a bad --failsafe is refused before anything is uploaded or queued; so is a bad failsafeMs over HTTP', async (t) => {
    if (!requireTools(t, 'gcc')) return;
    const sleepy = compileC({ file: 'programs/sleepy.c' }, 'x86_64');
    const before = (await client.listExecutions({ limit: 1000 })).executions.length;
    for (const bad of ['soon', '0s', '-5m']) {
      const r = await remexCli(['submit', '--server', fx.url, '--max-runtime', '1s', '--failsafe', bad, sleepy]);
      assert.equal(r.code, 125, r.stderr);
      assert.match(r.stderr, /--failsafe/);
    }
    const exe = readFileSync(sleepy);
    const digest = digestOf(exe);
    await client.putBlob(digest, exe);
    for (const failsafeMs of [0, -1, 1.5]) {
      await assert.rejects(client.submit({ executable: digest, failsafeMs }), (err: unknown) => isRemexError(err, 'INVALID_ARGUMENT') && /failsafeMs/.test((err as Error).message));
    }
    assert.equal((await client.listExecutions({ limit: 1000 })).executions.length, before, 'nothing queued');
  });

  test('layers 1 and 2: a program that ignores SIGTERM is SIGKILLed with its tree after the grace period', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const worker = spawnRemex(['worker', '--server', fx.url, '--work-dir', join(fx.dir, 'w-term'), '--slots', '1', '--name', 'term', '--platform', 'x86_64-linux-cpu']);
    fx.processes.push(worker);
    await waitForOutput(worker, /remex worker \S+ serving/);
    const ignoreTerm = compileC({ file: 'hostile/ignore-term.c' }, 'x86_64');
    const marker = `remex-failsafe-term-${randomUUID()}`;
    const id = (await remexCli(['submit', '--server', fx.url, '--max-runtime', '1s', '--failsafe', '2s', ignoreTerm, '--', marker])).stdout.trim();
    const waited = await remexCli(['wait', '--server', fx.url, id]);
    assert.equal(waited.code, EXIT_TIMED_OUT, waited.stderr);
    const v = await client.getExecution(id);
    assert.equal(v.state, 'timed_out');
    assert.equal(v.signal, 'SIGKILL', 'SIGTERM was ignored: the kill after the grace period ended it');
    assert.equal(v.attempt, 1);
    await noneLeft(marker, 'no process of the run left');
    worker.child.kill('SIGTERM');
    assert.equal((await worker.exited).code, 0, 'the worker is fine: it drains and exits 0');
  });

  test('layers 3 and 5: a supervisor that never returns; the watchdog stops the job, the worker with no slot left exits non-zero', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const worker = spawnRemex([
      'worker', '--server', fx.url, '--work-dir', join(fx.dir, 'w-hang'), '--slots', '1', '--name', 'hangs', '--platform', 'x86_64-linux-cpu',
      '--inject-fault', 'supervisor-hangs',
    ]);
    fx.processes.push(worker);
    await waitForOutput(worker, /remex worker \S+ serving/);
    const sleepForever = compileC({ file: 'hostile/sleep-forever.c' }, 'x86_64');
    const marker = `remex-failsafe-hang-${randomUUID()}`;
    const id = (await remexCli(['submit', '--server', fx.url, '--max-runtime', '1s', '--failsafe', '2s', sleepForever, '--', marker])).stdout.trim();
    // `remex wait` follows the job on the event relay (the WebSocket) to its end.
    const waited = await remexCli(['wait', '--server', fx.url, id]);
    assert.equal(waited.code, EXIT_TIMED_OUT, waited.stderr);
    assert.match(waited.stderr, /emergency-stopped on x86_64-linux-cpu: emergency stop by worker hangs/);
    const v = await client.getExecution(id);
    assert.equal(v.state, 'emergency_stopped');
    assert.equal(v.failure?.code, 'DEADLINE_EXCEEDED');
    assert.match(v.failure?.message ?? '', /still going 3000 ms after it started/);
    assert.ok(v.completedAt !== null);
    const status = await remexCli(['status', '--server', fx.url, id]);
    assert.match(status.stdout, /state\s+emergency_stopped/);
    const listed = await remexCli(['jobs', '--server', fx.url, '--state', 'emergency_stopped', '--json']);
    assert.deepEqual((JSON.parse(listed.stdout) as ExecutionView[]).map((j) => j.id), [id]);

    // Its only slot is out of service: it cannot kill its runs, so it left the server and exits non-zero.
    const exit = await worker.exited;
    assert.equal(exit.code, EXIT_WORKER_UNFIT, worker.output());
    assert.match(worker.output(), /no slot left in service/);
    const workers = await client.workers();
    assert.equal(workers.find((w) => w.name === 'hangs')?.state, 'gone');
    // Its sandbox went with it (the spawner kills every sandbox when the worker's channel closes).
    await noneLeft(marker, 'the hung run killed with its worker');
  });

  test('layer 4: a SIGSTOPped worker; the server stops its job and revokes the lease, the worker kills the run on SIGCONT', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const worker = spawnRemex(['worker', '--server', fx.url, '--work-dir', join(fx.dir, 'w-stop'), '--slots', '1', '--name', 'frozen', '--platform', 'x86_64-linux-cpu']);
    fx.processes.push(worker);
    await waitForOutput(worker, /remex worker \S+ serving/);
    const ignoreTerm = compileC({ file: 'hostile/ignore-term.c' }, 'x86_64');
    const marker = `remex-failsafe-stop-${randomUUID()}`;
    const id = (await remexCli(['submit', '--server', fx.url, '--max-runtime', '1s', '--failsafe', '2s', ignoreTerm, '--', marker])).stdout.trim();
    await eventually(async () => ((await processesWithMarker(marker)).length > 0 ? true : undefined), 15_000, 'the program running on the worker');
    worker.child.kill('SIGSTOP');
    let resumed = false;
    t.after(() => {
      if (!resumed) worker.child.kill('SIGCONT');
    });

    const v = await finished(client, id, 30_000);
    assert.equal(v.state, 'emergency_stopped');
    assert.match(v.failure?.message ?? '', /emergency stop by the server: .* with no word from its worker; its lease is revoked/);
    assert.ok((await processesWithMarker(marker)).length > 0, 'the frozen worker could not stop its run');

    worker.child.kill('SIGCONT');
    resumed = true;
    // Its next heartbeat hears the lease is no longer its (and its own timers, late, agree): the run is killed.
    await noneLeft(marker, 'the run killed by its worker once it runs again');
    const after = await client.getExecution(id);
    assert.deepEqual([after.state, after.failure], [v.state, v.failure], 'the job stays as the server ended it');
    // A worker that could kill its run keeps its slot in service: it takes the next job and runs it.
    const sleepy = compileC({ file: 'programs/sleepy.c' }, 'x86_64');
    const next = (await remexCli(['submit', '--server', fx.url, sleepy, '--', '10'])).stdout.trim();
    const done = await finished(client, next, 60_000);
    assert.equal(done.state, 'completed', worker.output());
    assert.equal(done.worker, 'frozen');
    assert.equal(worker.child.exitCode, null);
    worker.child.kill('SIGTERM');
    assert.equal((await worker.exited).code, 0);
  });
});
