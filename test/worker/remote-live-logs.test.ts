/**
 * Live logs from a worker linked over HTTP (`remex worker`'s HttpWorkerLink and the `POST
 * /v1/workers/<id>/logs` route), with a real sandbox and program: the lines reach a follower on the server
 * while the program runs, and an answer lost after the server stored a chunk (a dying connection) makes the
 * worker send it again — stored and heard once. The route refuses a chunk over the bound. A worker whose
 * lease was revoked and given to another cannot append to the job's log. A backlog larger than one call
 * when the program ends is left to the result: a follower still gets every byte once.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import pino from 'pino';
import { FsBlobStore } from '../../src/cas/fs/fs-blob-store.js';
import { RemoteBlobStore } from '../../src/cas/remote/remote-blob-store.js';
import { HttpWorkerLink } from '../../src/client/http-worker-link.js';
import { RemexClient } from '../../src/client/remex-client.js';
import type { LogFrame } from '../../src/client/remex-client.js';
import { digestOf } from '../../src/core/digest.js';
import { UnavailableError } from '../../src/core/errors.js';
import type { LogAck, LogChunk } from '../../src/scheduler/worker-link.js';
import { detectPlatformSupport } from '../../src/worker/emulation.js';
import { BwrapSandbox } from '../../src/worker/sandbox/bwrap/bwrap-sandbox.js';
import { Worker } from '../../src/worker/worker.js';
import { startTestServer } from '../helpers/server.js';
import { compileC, requireTools } from '../helpers/tools.js';

/** The real link, counting the bytes it sends. */
class CountingLink extends HttpWorkerLink {
  sentBytes = 0;

  override async appendLogs(workerId: string, chunks: readonly LogChunk[]): Promise<LogAck[]> {
    for (const c of chunks) this.sentBytes += c.data.byteLength;
    return super.appendLogs(workerId, chunks);
  }
}

/** The real link; the answer of the second appendLogs call is lost after the server acted on it. */
class LosingLink extends HttpWorkerLink {
  calls = 0;

  override async appendLogs(workerId: string, chunks: readonly LogChunk[]): Promise<LogAck[]> {
    const acks = await super.appendLogs(workerId, chunks);
    if (++this.calls === 2) throw new UnavailableError('connection reset before the answer arrived');
    return acks;
  }
}

/**
 * A server with no slots of its own and one real worker (real sandbox) linked to it over HTTP through
 * `makeLink`, with the log-lines program uploaded; all undone when the test ends (the worker leaves before
 * the server closes: its lease call would hold the server open).
 */
async function remoteWorker<L extends HttpWorkerLink>(
  t: TestContext,
  name: string,
  makeLink: (client: RemexClient) => L,
  logOptions: { logBytesPerCall?: number; logPollMs?: number } = {},
) {
  const ts = await startTestServer({ workerSlots: 0, scheduler: { acceptPlatforms: ['x86_64-linux-cpu'] } });
  const workDir = mkdtempSync(join(tmpdir(), 'remex-remote-logs-'));
  const teardowns: Array<() => Promise<void> | void> = [() => ts.close(), () => rmSync(workDir, { recursive: true, force: true })];
  t.after(async () => {
    for (const undo of teardowns.reverse()) await undo();
  });
  const client = new RemexClient(ts.server.url);
  const link = makeLink(client);
  const sandbox = await BwrapSandbox.create({});
  const worker = new Worker({
    name,
    slots: 1,
    workRoot: join(workDir, 'runs'),
    link,
    blobs: new RemoteBlobStore(client, new FsBlobStore({ root: join(workDir, 'cache'), maxBlobBytes: 1 << 30, fsync: false })),
    sandbox,
    platforms: (await detectPlatformSupport({})).filter((p) => p.platform === 'x86_64-linux-cpu'),
    logger: pino({ level: process.env.REMEX_TEST_LOG ?? 'silent' }),
    ...logOptions,
  });
  await worker.start();
  teardowns.push(async () => {
    await worker.drain();
    await sandbox.close();
  });
  const bytes = readFileSync(compileC({ file: 'programs/log-lines.c' }, 'x86_64'));
  const exe = digestOf(bytes);
  await ts.client.putBlob(exe, bytes);
  return { ts, client, link, worker, exe };
}

describe('live logs over the worker protocol', () => {
  test('a remote worker\'s lines reach a follower while the program runs; a chunk sent again is stored once', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const { ts, client, link, worker, exe } = await remoteWorker(t, 'remote-logs', (c) => new LosingLink(c));
    const job = await ts.client.submit({ executable: exe, args: ['6', '150', 'hold'], logs: true, doNotCache: true });
    const want = Array.from({ length: 6 }, (_, i) => `line ${i}\n`).join('');
    let text = '';
    let next = 0;
    for await (const frame of ts.client.logs(job.id, { follow: true, stream: 'stdout' })) {
      if (frame.event !== 'log') continue;
      assert.equal(frame.offset, next, 'no gap, no byte twice');
      next += Buffer.byteLength(frame.data);
      text += frame.data;
      if (text === want) break;
    }
    assert.equal((await ts.client.getExecution(job.id)).state, 'running');
    assert.ok(link.calls >= 3, 'the call whose answer was lost was followed by others');
    await ts.client.cancel(job.id);
    const all: LogFrame[] = [];
    for await (const frame of ts.client.logs(job.id, { follow: true, stream: 'stdout' })) all.push(frame);
    assert.equal(all.filter((f) => f.event === 'log').map((f) => (f.event === 'log' ? f.data : '')).join(''), want);

    // The route checks what it is given.
    const workerId = worker.id as string;
    const tooBig = Buffer.alloc(64 * 1024 + 1).toString('base64');
    await assert.rejects(client.request('POST', `/v1/workers/${workerId}/logs`, { chunks: [{ jobId: job.id, attempt: 1, stream: 'stdout', offset: 0, data: tooBig }] }), { code: 'INVALID_ARGUMENT' });
    await assert.rejects(client.request('POST', `/v1/workers/${workerId}/logs`, { chunks: [{ jobId: job.id, attempt: 1, stream: 'stdin', offset: 0, data: 'eA==' }] }), { code: 'INVALID_ARGUMENT' });
  });

  test('a worker appends only to runs it holds the lease of: after its lease went to another, its chunks are refused', async (t) => {
    const ts = await startTestServer({ workerSlots: 0, scheduler: { acceptPlatforms: ['x86_64-linux-cpu'] } });
    t.after(() => ts.close());
    const client = new RemexClient(ts.server.url);
    const offer = { platforms: [{ platform: 'x86_64-linux-cpu', emulated: false }], slots: 1 };
    const a = new HttpWorkerLink(client);
    const b = new HttpWorkerLink(client);
    const { workerId: aId } = await a.register({ id: 'worker-a', name: 'a', ...offer });
    const bytes = Buffer.from('#!/bin/sh\n');
    await ts.client.putBlob(digestOf(bytes), bytes);
    const job = await ts.client.submit({ executable: digestOf(bytes), platform: 'x86_64-linux-cpu', logs: true, doNotCache: true });
    const [leaseA] = await a.lease(aId, 1, 5_000);
    assert.equal(leaseA?.jobId, job.id);
    const chunk = (attempt: number, offset: number, text: string): LogChunk => ({ jobId: job.id, attempt, stream: 'stdout', offset, data: Buffer.from(text) });
    assert.deepEqual(await a.appendLogs(aId, [chunk(1, 0, 'from a\n')]), [{ jobId: job.id, attempt: 1, stream: 'stdout', storedBytes: 7 }]);

    // A's lease is revoked (it is gone) and the job goes to B.
    await a.unregister(aId);
    const { workerId: bId } = await b.register({ id: 'worker-b', name: 'b', ...offer });
    const [leaseB] = await b.lease(bId, 1, 5_000);
    assert.equal(leaseB?.attempt, 2);
    const lost = { jobId: job.id, stream: 'stdout', storedBytes: 0, leaseLost: true };
    assert.deepEqual(await a.appendLogs(aId, [chunk(1, 7, 'late a\n')]), [{ ...lost, attempt: 1 }], 'its old run');
    assert.deepEqual(await a.appendLogs(aId, [chunk(2, 0, 'as b?\n')]), [{ ...lost, attempt: 2 }], "B's run");
    assert.deepEqual(await b.appendLogs(bId, [chunk(2, 0, 'from b\n')]), [{ jobId: job.id, attempt: 2, stream: 'stdout', storedBytes: 7 }]);
    const frames: LogFrame[] = [];
    for await (const frame of ts.client.logs(job.id, { stream: 'stdout' })) frames.push(frame);
    assert.deepEqual(frames.filter((f) => f.event === 'log').map((f) => (f.event === 'log' ? [f.attempt, f.data] : [])), [[2, 'from b\n']]);

    // Nor to a job that ended.
    await b.complete(bId, { jobId: job.id, attempt: 2, outcome: { state: 'failed', failure: { code: 'INTERNAL', message: 'the test ends it' } } });
    assert.deepEqual(await b.appendLogs(bId, [chunk(2, 7, 'after\n')]), [{ ...lost, attempt: 2 }]);
  });

  test('a flood whose backlog is larger than one call when the program ends is left to the result; a follower gets every byte once', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    // One call carries 64 KiB; the first look at the files is long after the flood's end.
    const { ts, link, exe } = await remoteWorker(t, 'remote-flood', (c) => new CountingLink(c), { logBytesPerCall: 64 * 1024, logPollMs: 60_000 });
    const flood = 1024 * 1024;
    const job = await ts.client.submit({ executable: exe, args: ['flood', String(flood)], logs: true, doNotCache: true });
    const frames: LogFrame[] = [];
    for await (const frame of ts.client.logs(job.id, { follow: true, stream: 'stdout' })) frames.push(frame);
    let next = 0;
    for (const f of frames) {
      if (f.event !== 'log') continue;
      assert.equal(f.offset, next, 'no gap, no byte twice');
      next += Buffer.byteLength(f.data);
    }
    assert.equal(next, flood);
    assert.equal(frames.at(-1)?.event, 'end');
    assert.ok(link.sentBytes < flood, `the backlog was left to the result (${link.sentBytes} bytes sent live)`);
    const done = await ts.client.getExecution(job.id);
    assert.equal(done.state, 'completed');
    assert.equal(done.output?.stdout.digest.sizeBytes, flood);
  });
});
