/**
 * A worker's observation, in a real server's local pool (bubblewrap, SQLite, filesystem CAS): the phases
 * of each run and the fate of its result reach the worker's observers, and the scheduler's observers see
 * the same job from their side — the hooks metrics and timelines attach to.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { digestOf } from '../../src/core/digest.js';
import type { SchedulerObserver } from '../../src/scheduler/observer.js';
import type { Lease } from '../../src/scheduler/worker-link.js';
import type { Outcome } from '../../src/store/ports.js';
import type { RunPhases, WorkerObserver } from '../../src/worker/observer.js';
import { startTestServer } from '../helpers/server.js';
import type { TestServer } from '../helpers/server.js';
import { compileC, requireTools } from '../helpers/tools.js';

const runs: Array<{ jobId: string; outcome: Outcome; phases: RunPhases | null }> = [];
const started: string[] = [];
const settled: Array<[string, string]> = [];
const leased: string[] = [];
const finished: string[] = [];
const lifecycle: string[] = [];

const workerObserver: WorkerObserver = {
  runStarted: (lease: Lease) => void started.push(lease.jobId),
  runFinished: (lease, outcome, phases) => void runs.push({ jobId: lease.jobId, outcome, phases }),
  resultSettled: (jobId, _attempt, how) => void settled.push([jobId, how]),
  draining: () => void lifecycle.push('draining'),
  drained: () => void lifecycle.push('drained'),
};
const schedulerObserver: SchedulerObserver = {
  jobLeased: (job) => void leased.push(job.id),
  jobFinished: (job) => void finished.push(job.id),
};

let ts: TestServer;

describe('worker observation', () => {
  before(async () => {
    ts = await startTestServer({ workerSlots: 1, observers: { worker: [workerObserver], scheduler: [schedulerObserver] } });
  });
  after(async () => {
    await ts?.close();
  });

  test('a run reports its phases, its outcome and its committed result, the worker its drain; the scheduler saw the job leased and finished', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const bytes = readFileSync(compileC({ file: 'programs/sleepy.c' }, 'x86_64'));
    const exe = digestOf(bytes);
    await ts.client.putBlob(exe, bytes);
    const view = await ts.client.submit({ executable: exe, args: ['200'] }, { wait: true });
    assert.equal(view.state, 'completed', JSON.stringify(view));
    const jobId = view.id;
    // The committed result's settlement rides back with the answer to the lease call that carried it, which
    // then waits for work: a drain ends that wait.
    await ts.server.localWorker?.drain();
    assert.deepEqual(lifecycle, ['draining', 'drained']);
    assert.deepEqual(started, [jobId]);
    assert.deepEqual(settled, [[jobId, 'committed']]);
    const run = runs.find((r) => r.jobId === jobId);
    assert.equal(run?.outcome.state, 'completed');
    const phases = run?.phases;
    assert.ok(phases, 'phases of a run that started');
    for (const [name, ms] of Object.entries(phases)) assert.ok(Number.isFinite(ms) && ms >= 0, `${name} = ${ms}`);
    assert.ok(phases.programWallMs >= 150, `the program slept 200 ms: ${phases.programWallMs}`);
    assert.ok(phases.sandboxMs >= phases.programWallMs, `the sandbox phase holds the program's run: ${JSON.stringify(phases)}`);
    assert.deepEqual(leased, [jobId]);
    assert.deepEqual(finished, [jobId]);
  });
});
