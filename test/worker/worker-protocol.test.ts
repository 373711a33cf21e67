/**
 * The worker protocol over HTTP, and the HTTP door's long-polls. How a worker's results travel back: a
 * Worker linked over HTTP (the real HttpWorkerLink and RemoteBlobStore, as `remex worker` has them) to a
 * real server with no local workers, running real programs in the bubblewrap sandbox. The link is wrapped
 * to record the calls the worker makes and, in one test, to lose an answer after the server has acted on
 * it (what a dying connection does). Then the routes themselves: malformed lease calls, and long-polls
 * that wait for work and stop when their caller hangs up.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, test } from 'node:test';
import pino from 'pino';
import { FsBlobStore } from '../../src/cas/fs/fs-blob-store.js';
import { HttpWorkerLink } from '../../src/client/http-worker-link.js';
import { RemexClient } from '../../src/client/remex-client.js';
import { RemoteBlobStore } from '../../src/cas/remote/remote-blob-store.js';
import type { ExecutionView } from '../../src/api/execution-view.js';
import type { Digest } from '../../src/core/digest.js';
import { digestOf } from '../../src/core/digest.js';
import { UnavailableError } from '../../src/core/errors.js';
import type { CompleteAndLeaseReply, Completion, HeartbeatReply, Lease, WorkerLink, WorkerRegistration, WorkerSession } from '../../src/scheduler/worker-link.js';
import type { HeldLease } from '../../src/store/ports.js';
import { detectPlatformSupport } from '../../src/worker/emulation.js';
import { BwrapSandbox } from '../../src/worker/sandbox/bwrap/bwrap-sandbox.js';
import { Worker } from '../../src/worker/worker.js';
import { startTestServer } from '../helpers/server.js';
import type { TestServer } from '../helpers/server.js';
import { compileC, requireTools } from '../helpers/tools.js';

interface Call {
  name: 'lease' | 'completeAndLease' | 'complete';
  completions: number;
  leases: number;
}

/** The real link, recording each call; `loseAnswers` drops that many answers after the server acted. */
class RecordingLink implements WorkerLink {
  readonly calls: Call[] = [];
  loseAnswers = 0;
  /** Acts as if the controller were older than `completeAndLease` (its registration offers no features). */
  olderServer = false;

  constructor(private readonly inner: WorkerLink) {}

  async register(reg: WorkerRegistration): Promise<WorkerSession> {
    const session = await this.inner.register(reg);
    if (this.olderServer) (this.inner as unknown as { features: Set<string> }).features.clear();
    return session;
  }

  async lease(workerId: string, max: number, waitMs: number, signal?: AbortSignal): Promise<Lease[]> {
    const call: Call = { name: 'lease', completions: 0, leases: 0 };
    this.calls.push(call);
    const leases = await this.inner.lease(workerId, max, waitMs, signal);
    call.leases = leases.length;
    return leases;
  }

  heartbeat(workerId: string, draining: boolean, held?: readonly HeldLease[]): Promise<HeartbeatReply> {
    return this.inner.heartbeat(workerId, draining, held);
  }

  async complete(workerId: string, completion: Completion): Promise<void> {
    this.calls.push({ name: 'complete', completions: 1, leases: 0 });
    await this.inner.complete(workerId, completion);
  }

  async completeAndLease(workerId: string, completions: readonly Completion[], max: number, waitMs: number, signal?: AbortSignal): Promise<CompleteAndLeaseReply> {
    const call: Call = { name: 'completeAndLease', completions: completions.length, leases: 0 };
    this.calls.push(call);
    const reply = await this.inner.completeAndLease(workerId, completions, max, waitMs, signal);
    call.leases = reply.leases.length;
    if (this.loseAnswers > 0) {
      this.loseAnswers--;
      throw new UnavailableError('connection reset before the answer arrived');
    }
    return reply;
  }

  unregister(workerId: string): Promise<void> {
    return this.inner.unregister(workerId);
  }
}

const teardowns: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const fn of teardowns.splice(0).reverse()) await fn();
});

/** The execution as a client sees it once it has ended. */
async function finished(ts: TestServer, id: string): Promise<ExecutionView> {
  await ts.server.scheduler.waitForTerminal(id, AbortSignal.timeout(30_000));
  return ts.client.getExecution(id);
}

async function setup(slots: number): Promise<{ ts: TestServer; link: RecordingLink; start(): Promise<Worker>; exe: Digest; requests: string[] }> {
  // Short leases: a lease lost with an answer expires within the test.
  const ts = await startTestServer({ workerSlots: 0, scheduler: { acceptPlatforms: ['x86_64-linux-cpu'], leaseTimeoutMs: 1_000, heartbeatIntervalMs: 200, reaperIntervalMs: 100 } });
  teardowns.push(() => ts.close());
  const workDir = mkdtempSync(join(tmpdir(), 'remex-worker-results-'));
  teardowns.push(() => rmSync(workDir, { recursive: true, force: true }));
  const client = new RemexClient(ts.server.url);
  // The worker's HTTP requests (instrumented, not replaced): method, route and body fields.
  const requests: string[] = [];
  const request = client.request.bind(client);
  client.request = ((method: string, path: string, body?: unknown, opts?: object) => {
    const route = path.replace(/\/v1\/workers\/[^/]+\//, '/v1/workers/:id/');
    if (route.startsWith('/v1/workers/:id/') && !route.endsWith('/heartbeat')) {
      requests.push(`${method} ${route} ${Object.keys((body ?? {}) as object).sort().join(',')}`);
    }
    return request(method, path, body, opts);
  }) as typeof client.request;
  const link = new RecordingLink(new HttpWorkerLink(client));
  const bytes = readFileSync(compileC({ file: 'programs/echo.c' }, 'x86_64'));
  const exe = digestOf(bytes);
  await ts.client.putBlob(exe, bytes);
  const start = async (): Promise<Worker> => {
    const sandbox = await BwrapSandbox.create({});
    const worker = new Worker({
      name: 'recorded',
      slots,
      workRoot: join(workDir, 'runs'),
      link,
      blobs: new RemoteBlobStore(client, new FsBlobStore({ root: join(workDir, 'cache'), maxBlobBytes: 1 << 30, fsync: false })),
      sandbox,
      platforms: (await detectPlatformSupport({})).filter((p) => p.platform === 'x86_64-linux-cpu'),
      logger: pino({ level: 'silent' }),
      leaseWaitMs: 30_000,
    });
    await worker.start();
    teardowns.push(async () => {
      await worker.drain();
      await sandbox.close();
    });
    return worker;
  };
  return { ts, link, start, exe, requests };
}

describe('Worker results', () => {
  test('a busy worker sends each result with the call that leases its next job: one round trip per job', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const { ts, link, start, exe, requests } = await setup(1);
    const jobs = 8;
    const submitted = await Promise.all(Array.from({ length: jobs }, (_, i) => ts.client.submit({ executable: exe, args: [`job-${i}`], doNotCache: true })));
    const worker = await start();
    const done = await Promise.all(submitted.map((v) => finished(ts, v.id)));
    done.forEach((v, i) => {
      assert.equal(v.state, 'completed', JSON.stringify(v.failure));
      assert.equal(v.stdout.map((l) => l.text).join('\n'), `arg1=job-${i}`);
    });
    // The last result's call waits for work after committing it (the client already has the result);
    // draining ends that wait, and the worker leaves with nothing unsent.
    await worker.drain();
    // The first job is leased alone; each later one arrives in the answer to the call carrying the result
    // before it; the last result's call finds the queue empty. No result travels on its own.
    assert.deepEqual(link.calls, [
      { name: 'lease', completions: 0, leases: 1 },
      ...Array.from({ length: jobs - 1 }, () => ({ name: 'completeAndLease', completions: 1, leases: 1 })),
      { name: 'completeAndLease', completions: 1, leases: 0 },
    ]);
    // On the wire: one lease call, then lease calls carrying the results; no complete call.
    assert.deepEqual(requests, ['POST /v1/workers/:id/lease max,waitMs', ...Array.from({ length: jobs }, () => 'POST /v1/workers/:id/lease completions,max,waitMs')]);
  });

  test('with a controller older than completeAndLease, results travel as complete calls and leases as plain lease calls', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const { ts, link, start, exe, requests } = await setup(1);
    link.olderServer = true;
    const submitted = await Promise.all([0, 1, 2].map((i) => ts.client.submit({ executable: exe, args: [`old-${i}`], doNotCache: true })));
    const worker = await start();
    const done = await Promise.all(submitted.map((v) => finished(ts, v.id)));
    done.forEach((v, i) => assert.equal(v.stdout.map((l) => l.text).join('\n'), `arg1=old-${i}`));
    await worker.drain();
    assert.ok(!requests.some((r) => r.includes('completions')), requests.join('\n'));
    assert.equal(requests.filter((r) => r.startsWith('POST /v1/workers/:id/complete ')).length, 3);
    assert.ok(requests.filter((r) => r.startsWith('POST /v1/workers/:id/lease max,waitMs')).length >= 3);
  });

  test('a result whose answer was lost is sent again; it was committed once, and the worker goes on', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const { ts, link, start, exe } = await setup(1);
    link.loseAnswers = 1;
    const first = await ts.client.submit({ executable: exe, args: ['first'], doNotCache: true });
    const second = await ts.client.submit({ executable: exe, args: ['second'], doNotCache: true });
    await start();
    const [a, b] = [await finished(ts, first.id), await finished(ts, second.id)];
    assert.equal(a.state, 'completed');
    assert.equal(a.stdout.map((l) => l.text).join('\n'), 'arg1=first');
    assert.equal(b.state, 'completed');
    assert.equal(b.stdout.map((l) => l.text).join('\n'), 'arg1=second');
    // The first job ran once and its result, sent twice (the lost answer, then again), committed once. The
    // second job's lease travelled in the lost answer: the worker never held it, so it expired and the job
    // ran on its second attempt.
    assert.equal((await ts.server.scheduler.get(first.id))?.attempt, 1);
    assert.equal((await ts.server.scheduler.get(second.id))?.attempt, 2);
    await waitFor(() => link.calls.filter((c) => c.completions > 0).length >= 3);
    assert.deepEqual(
      link.calls.filter((c) => c.completions > 0).map((c) => c.completions),
      [1, 1, 1],
    );
  });
});

async function waitFor(predicate: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('Worker routes: lease calls carrying results', () => {
  test('malformed lease calls are refused with the reason, and commit nothing', async () => {
    const ts = await startTestServer({ workerSlots: 0, scheduler: { acceptPlatforms: ['x86_64-linux-cpu'] } });
    teardowns.push(() => ts.close());
    const post = async (path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
      const res = await fetch(`${ts.server.url}${path}`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
      return { status: res.status, json: (await res.json()) as Record<string, unknown> };
    };
    const { json: session } = await post('/v1/workers', { name: 'raw', platforms: [{ platform: 'x86_64-linux-cpu', emulated: false }], slots: 1 });
    const lease = `/v1/workers/${String(session.workerId)}/lease`;
    const bytes = Buffer.from('#!/bin/sh\n');
    await ts.client.putBlob(digestOf(bytes), bytes);
    const job = await ts.client.submit({ executable: digestOf(bytes), platform: 'x86_64-linux-cpu', doNotCache: true });
    const { json: leased } = await post(lease, { max: 1, waitMs: 0 });
    const [held] = leased.leases as Lease[];
    assert.equal(held?.jobId, job.id);
    const failed = { state: 'failed', failure: { code: 'INTERNAL', message: 'x' } };

    const refusals: Array<[unknown, RegExp]> = [
      [{ max: 0, waitMs: 0 }, /max must be at least 1 unless completions are sent/],
      [{ max: 0, waitMs: 0, completions: [] }, /max must be at least 1/],
      [{ max: 1, waitMs: 0, completions: [{ jobId: job.id, attempt: 0, outcome: failed }] }, /completions\.0\.attempt/],
      [{ max: 1, waitMs: 0, completions: [{ jobId: job.id, attempt: 1, outcome: { state: 'completed' } }] }, /completions\.0\.outcome/],
      [{ max: 1, waitMs: 0, completions: Array.from({ length: 1025 }, () => ({ jobId: job.id, attempt: 1, outcome: failed })) }, /completions/],
      [{ max: 1, waitMs: 0, completions: { jobId: job.id } }, /completions/],
    ];
    for (const [body, reason] of refusals) {
      const res = await post(lease, body);
      assert.equal(res.status, 400, JSON.stringify(body).slice(0, 200));
      assert.match(String(res.json.detail), reason);
    }
    assert.equal((await ts.server.scheduler.get(job.id))?.state, 'running');

    // Well formed, max 0: the result settles and nothing is leased.
    const ok = await post(lease, { max: 0, waitMs: 0, completions: [{ jobId: job.id, attempt: held?.attempt, outcome: failed }] });
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.json, { settled: [{ jobId: job.id, attempt: 1, status: 'committed' }], leases: [] });
    assert.equal((await ts.server.scheduler.get(job.id))?.state, 'failed');
  });
});

describe('Worker routes: version skew', () => {
  test('a newer worker\'s extra fields are accepted and dropped; a known field of the wrong type is still refused by name', async () => {
    const ts = await startTestServer({ workerSlots: 0, scheduler: { acceptPlatforms: ['x86_64-linux-cpu'] } });
    teardowns.push(() => ts.close());
    const post = async (path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
      const res = await fetch(`${ts.server.url}${path}`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
      return { status: res.status, json: (await res.json()) as Record<string, unknown> };
    };
    const registered = await post('/v1/workers', { name: 'newer', platforms: [{ platform: 'x86_64-linux-cpu', emulated: false, isa: 'x86-64-v4' }], slots: 1, gpus: 0 });
    assert.equal(registered.status, 200, JSON.stringify(registered.json));
    const id = String(registered.json.workerId);
    const bytes = Buffer.from('#!/bin/sh\n');
    await ts.client.putBlob(digestOf(bytes), bytes);
    const job = await ts.client.submit({ executable: digestOf(bytes), platform: 'x86_64-linux-cpu', doNotCache: true });
    const leased = await post(`/v1/workers/${id}/lease`, { max: 1, waitMs: 0, preferLocality: true });
    assert.equal(leased.status, 200, JSON.stringify(leased.json));
    const [held] = leased.json.leases as Lease[];
    assert.equal(held?.jobId, job.id);
    const beat = await post(`/v1/workers/${id}/heartbeat`, { draining: false, held: [{ jobId: job.id, attempt: 1, progress: { percent: 50, atMs: 1, history: [], eta: 3 } }], load: 0.5 });
    assert.equal(beat.status, 200, JSON.stringify(beat.json));

    const stream = { digest: { hash: digestOf('').hash, sizeBytes: 0 }, inlineBase64: '', totalBytes: 0, truncated: false, encoding: 'utf-8' };
    const result = {
      exitCode: 0, signal: null, timedOut: false, limitExceeded: null, stdout: stream, stderr: stream, outputFiles: [],
      wallTimeMs: 1, cpuTimeMs: 1, maxRssKb: 1, emulated: false, worker: 'newer', energyJoules: 12,
    };
    const wrongType = await post(`/v1/workers/${id}/lease`, { max: 0, waitMs: 0, completions: [{ jobId: job.id, attempt: 1, outcome: { state: 'completed', result: { ...result, exitCode: 'zero' } } }] });
    assert.equal(wrongType.status, 400);
    assert.match(String(wrongType.json.detail), /invalid lease request: completions\.0\.outcome.*exitCode/);
    assert.equal((await ts.server.scheduler.get(job.id))?.state, 'running', 'a refused report commits nothing');

    const done = await post(`/v1/workers/${id}/lease`, { max: 0, waitMs: 0, completions: [{ jobId: job.id, attempt: 1, outcome: { state: 'completed', result }, signature: 'x' }] });
    assert.equal(done.status, 200, JSON.stringify(done.json));
    const stored = await ts.server.scheduler.get(job.id);
    assert.equal(stored?.state, 'completed');
    assert.equal(stored?.result?.worker, 'newer');
    assert.equal('energyJoules' in (stored?.result ?? {}), false, 'an unknown field is dropped, not stored');
    assert.equal('encoding' in (stored?.result?.stdout ?? {}), false);
  });
});

describe('Worker routes: long-polls', () => {
  test('a lease call over HTTP waits for work, and stops waiting when its caller hangs up', async () => {
    const ts = await startTestServer({ workerSlots: 0, scheduler: { acceptPlatforms: ['x86_64-linux-cpu'] } });
    teardowns.push(() => ts.close());
    // White-box: lease calls parked in the scheduler (there is no public signal for it).
    const parked = (): number => (ts.server.scheduler as unknown as { waiters: Set<unknown> }).waiters.size;
    const post = (path: string, body: unknown, signal?: AbortSignal): Promise<Response> =>
      fetch(`${ts.server.url}${path}`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' }, ...(signal ? { signal } : {}) });
    const session = (await (await post('/v1/workers', { name: 'poller', platforms: [{ platform: 'x86_64-linux-cpu', emulated: false }], slots: 1 })).json()) as { workerId: string };
    const lease = `/v1/workers/${session.workerId}/lease`;

    const polling = post(lease, { max: 1, waitMs: 20_000 });
    await waitFor(() => parked() === 1);
    const bytes = Buffer.from('#!/bin/sh\n');
    await ts.client.putBlob(digestOf(bytes), bytes);
    const job = await ts.client.submit({ executable: digestOf(bytes), platform: 'x86_64-linux-cpu', doNotCache: true });
    const answer = (await (await polling).json()) as { leases: Lease[] };
    assert.deepEqual(answer.leases.map((l) => l.jobId), [job.id], 'the call waited and got the job submitted while it waited');

    const hangUp = new AbortController();
    const abandoned = post(lease, { max: 1, waitMs: 20_000 }, hangUp.signal).catch((err: unknown) => err);
    await waitFor(() => parked() === 1);
    hangUp.abort();
    assert.equal(((await abandoned) as Error).name, 'AbortError');
    await waitFor(() => parked() === 0);
  });
});

describe('Execution routes: long-polls', () => {
  test('a submit that waits for its result stops waiting when its caller hangs up', async () => {
    // No worker: the job stays queued, and the request waits.
    const ts = await startTestServer({ workerSlots: 0, scheduler: { acceptPlatforms: ['x86_64-linux-cpu'] } });
    teardowns.push(() => ts.close());
    // White-box: whether anyone in this process still follows the job.
    const followed = (id: string): boolean => (ts.server.scheduler.events as unknown as { local: { wants(id: string): boolean } }).local.wants(id);
    const bytes = Buffer.from('#!/bin/sh\n');
    await ts.client.putBlob(digestOf(bytes), bytes);
    const hangUp = new AbortController();
    const waiting = fetch(`${ts.server.url}/v1/executions?wait=1`, {
      method: 'POST',
      body: JSON.stringify({ executable: digestOf(bytes), platform: 'x86_64-linux-cpu', doNotCache: true }),
      headers: { 'content-type': 'application/json' },
      signal: hangUp.signal,
    }).catch((err: unknown) => err);
    let id: string | undefined;
    await waitFor(() => (id = [...(ts.server.scheduler.events as unknown as { local: { jobIds(): Iterable<string> } }).local.jobIds()][0]) !== undefined);
    assert.equal((await ts.server.scheduler.get(id as string))?.state, 'queued');
    hangUp.abort();
    assert.equal(((await waiting) as Error).name, 'AbortError');
    await waitFor(() => !followed(id as string));
  });
});
