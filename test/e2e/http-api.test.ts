/**
 * The HTTP front door end to end: a real server, real bubblewrap sandbox, real qemu-user, real
 * cross-compiled binaries.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { WebSocket } from 'ws';
import { executionRequestSchema, MAX_INPUT_FILES } from '../../src/api/execution-request.js';
import type { ExecutionView } from '../../src/api/execution-view.js';
import type { Digest } from '../../src/core/digest.js';
import { digestOf } from '../../src/core/digest.js';
import { RemexError } from '../../src/core/errors.js';
import { compileC, requireTools } from '../helpers/tools.js';
import { startTestServer } from '../helpers/server.js';
import type { TestServer } from '../helpers/server.js';

let ts: TestServer;

async function upload(bytes: Buffer): Promise<Digest> {
  const d = digestOf(bytes);
  await ts.client.putBlob(d, bytes);
  return d;
}

async function uploadBinary(path: string): Promise<Digest> {
  return upload(readFileSync(path));
}

async function post(path: string, body: string, contentType = 'application/json'): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${ts.server.url}${path}`, { method: 'POST', body, headers: { 'content-type': contentType } });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

function text(lines: Array<{ text: string }>): string {
  return lines.map((l) => l.text).join('\n');
}

describe('HTTP API', () => {
  before(async () => {
    ts = await startTestServer({ workerSlots: 2 });
  });
  after(async () => {
    await ts?.close();
  });

  test('runs a native binary with args, stdin and env; reports exit code and usage', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const exe = await uploadBinary(compileC({ file: 'programs/echo.c' }, 'x86_64'));
    const v = await ts.client.submit({ executable: exe, args: ['a', 'b c'], stdin: 'from stdin\n', env: { EXIT_CODE: '7' } }, { wait: true });
    assert.equal(v.state, 'completed');
    assert.equal(v.platform, 'x86_64-linux-cpu');
    assert.equal(v.code, 7);
    assert.equal(v.emulated, false);
    assert.equal(text(v.stdout), 'arg1=a\narg2=b c\nfrom stdin');
    assert.equal(text(v.stderr), 'to stderr');
    assert.equal(v.timedOut, false);
    assert.equal(v.okToCache, true);
    assert.ok((v.execTime ?? -1) >= 0 && (v.maxRssKb ?? 0) > 0);
    assert.equal(typeof v.queueTimeMs, 'number');
  });

  test('runs a dynamically linked aarch64 binary under qemu-user and says it was emulated', async (t) => {
    if (!requireTools(t, 'bwrap', 'aarch64-linux-gnu-gcc', 'qemu-aarch64-static')) return;
    const exe = await uploadBinary(compileC({ file: 'programs/echo.c' }, 'aarch64'));
    const v = await ts.client.submit({ executable: exe, args: ['x'], stdin: 'in' }, { wait: true });
    assert.equal(v.state, 'completed', JSON.stringify(v.failure));
    assert.equal(v.platform, 'aarch64-linux-cpu');
    assert.equal(v.emulated, true);
    assert.equal(v.code, 0);
    assert.equal(text(v.stdout), 'arg1=x\nin');
  });

  test('riscv64 and arm binaries run too, each on its own platform', async (t) => {
    if (!requireTools(t, 'bwrap', 'riscv64-linux-gnu-gcc', 'arm-linux-gnueabihf-gcc', 'qemu-riscv64-static', 'qemu-arm-static')) return;
    for (const [isa, platform] of [['riscv64', 'riscv64-linux-cpu'], ['arm', 'arm-linux-cpu']] as const) {
      const exe = await uploadBinary(compileC({ file: 'programs/echo.c' }, isa));
      const v = await ts.client.submit({ executable: exe, args: [isa], env: { EXIT_CODE: '3' } }, { wait: true });
      assert.equal(v.platform, platform);
      assert.equal(v.code, 3, JSON.stringify(v));
      assert.equal(v.emulated, true);
      assert.equal(text(v.stdout), `arg1=${isa}`);
    }
  });

  test('platforms are listed live with native/emulated, workers, slots and queue depth', async (t) => {
    if (!requireTools(t, 'bwrap', 'qemu-aarch64-static')) return;
    const platforms = await ts.client.platforms();
    const native = platforms.find((p) => p.platform === 'x86_64-linux-cpu');
    const arm = platforms.find((p) => p.platform === 'aarch64-linux-cpu');
    assert.ok(native && arm, JSON.stringify(platforms));
    assert.equal(native.emulated, false);
    assert.equal(arm.emulated, true);
    assert.equal(native.workers, 1);
    assert.equal(native.slots, 2);
    assert.equal(typeof native.queued, 'number');
  });

  test('input files by path and output files come back by digest', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const exe = await uploadBinary(compileC({ file: 'programs/cat-file.c' }, 'x86_64'));
    const data = await upload(Buffer.from('input data\n'));
    const v = await ts.client.submit({ executable: exe, args: ['dir/in.txt'], files: { 'dir/in.txt': data }, outputPaths: ['out.txt'] }, { wait: true });
    assert.equal(v.code, 0, JSON.stringify(v));
    assert.equal(text(v.stdout), 'input data');
    assert.equal(v.outputFiles.length, 1);
    const out = v.outputFiles[0] as (typeof v.outputFiles)[number];
    assert.equal(out.path, 'out.txt');
    assert.equal((await ts.client.getBlob(out.digest)).toString(), 'made\n');
  });

  test('a repeated identical execution is answered from the cache; doNotCache runs again', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const exe = await uploadBinary(compileC({ file: 'programs/echo.c' }, 'x86_64'));
    const first = await ts.client.submit({ executable: exe, args: ['cache-me'] }, { wait: true });
    assert.equal(first.cached, false);
    const second = await ts.client.submit({ executable: exe, args: ['cache-me'] }, { wait: true });
    assert.equal(second.cached, true);
    assert.notEqual(second.id, first.id);
    assert.deepEqual(second.stdout, first.stdout);
    const third = await ts.client.submit({ executable: exe, args: ['cache-me'], doNotCache: true }, { wait: true });
    assert.equal(third.cached, false);
  });

  test('a timeout is reported with the output before it, and never cached', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const exe = await uploadBinary(compileC({ file: 'programs/sleepy.c' }, 'x86_64'));
    const v = await ts.client.submit({ executable: exe, timeoutMs: 500 }, { wait: true });
    assert.equal(v.state, 'timed_out');
    assert.equal(v.timedOut, true);
    assert.equal(v.okToCache, false);
    assert.equal(text(v.stdout), 'started');
    const again = await ts.client.submit({ executable: exe, timeoutMs: 500 }, { wait: true });
    assert.equal(again.cached, false);
    assert.equal(again.state, 'timed_out');
  });

  test('time waiting in the queue does not count against the execution timeout', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const exe = await uploadBinary(compileC({ file: 'programs/sleepy.c' }, 'x86_64'));
    // Two sleepers take both slots for ~1.2 s; a job with a 600 ms timeout waits behind them, then runs in 100 ms.
    const blockers = [1200, 1201].map((ms) => ts.client.submit({ executable: exe, args: [String(ms)], doNotCache: true }));
    await Promise.all(blockers);
    const v = await ts.client.submit({ executable: exe, args: ['100'], timeoutMs: 600, doNotCache: true }, { wait: true });
    assert.equal(v.state, 'completed', JSON.stringify(v));
    assert.ok(v.queueTimeMs >= 600, `queued ${v.queueTimeMs} ms`);
  });

  test('a running execution can be cancelled', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const exe = await uploadBinary(compileC({ file: 'programs/sleepy.c' }, 'x86_64'));
    const started = await ts.client.submit({ executable: exe, doNotCache: true, timeoutMs: 30_000 });
    const deadline = Date.now() + 10_000;
    while ((await ts.client.getExecution(started.id)).state !== 'running' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await ts.client.cancel(started.id);
    let v: ExecutionView = await ts.client.getExecution(started.id);
    while (v.state === 'running' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      v = await ts.client.getExecution(started.id);
    }
    assert.equal(v.state, 'cancelled');
  });

  test('results reach WebSocket subscribers, even when ready before the subscription', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const exe = await uploadBinary(compileC({ file: 'programs/echo.c' }, 'x86_64'));
    const done = await ts.client.submit({ executable: exe, args: ['ws'], doNotCache: true }, { wait: true });
    const ws = new WebSocket(ts.client.eventsUrl);
    const frames: string[] = [];
    await new Promise<void>((resolve, reject) => {
      ws.on('open', () => {
        ws.send('ping');
        ws.send(`subscribe: ${done.id}`);
      });
      ws.on('message', (data) => {
        frames.push(data.toString());
        if (frames.length === 2) resolve();
      });
      ws.on('error', reject);
    });
    ws.close();
    assert.equal(frames[0], 'pong');
    const result = JSON.parse(frames[1] as string) as Record<string, unknown>;
    for (const field of ['guid', 'code', 'stdout', 'stderr', 'execTime', 'timedOut', 'truncated', 'okToCache', 'id', 'platform', 'emulated', 'signal', 'cpuTimeMs', 'maxRssKb', 'queueTimeMs', 'worker']) {
      assert.ok(field in result, `result frame lacks ${field}`);
    }
    assert.equal(result.guid, done.id);
    assert.deepEqual(result.stdout, [{ text: 'arg1=ws' }]);
  });

  test('a WebSocket subscriber waiting for a running execution gets its result', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const exe = await uploadBinary(compileC({ file: 'programs/sleepy.c' }, 'x86_64'));
    const queued = await ts.client.submit({ executable: exe, args: ['300'], doNotCache: true });
    const ws = new WebSocket(ts.client.eventsUrl);
    const frame = await new Promise<Record<string, unknown>>((resolve, reject) => {
      ws.on('open', () => ws.send(`subscribe: ${queued.id}`));
      ws.on('message', (data) => resolve(JSON.parse(data.toString()) as Record<string, unknown>));
      ws.on('error', reject);
    });
    ws.close();
    assert.equal(frame.id, queued.id);
    assert.equal(frame.code, 0);
    assert.equal(frame.state, 'completed');
  });
});

describe('HTTP API: bad input gets a clear error and stores nothing', () => {
  before(async () => {
    ts = await startTestServer({ workerSlots: 1, maxBlobBytes: 1024 * 1024 });
  });
  after(async () => {
    await ts?.close();
  });

  test('a blob whose bytes do not match its digest is refused and not stored', async () => {
    const real = digestOf('the real bytes');
    const res = await fetch(`${ts.server.url}/v1/blobs/sha256/${real.hash}`, {
      method: 'PUT',
      body: 'other bytes!!!',
      headers: { 'content-type': 'application/octet-stream' },
    });
    assert.equal(res.status, 400);
    const body = (await res.json()) as { code: string; detail: string };
    assert.equal(body.code, 'INVALID_ARGUMENT');
    assert.match(body.detail, /does not match/);
    assert.deepEqual(await ts.client.findMissing([real]), [real]);
    assert.equal((await fetch(`${ts.server.url}/v1/blobs/sha256/${real.hash}`, { method: 'HEAD' })).status, 404);
  });

  test('a malformed hash in a blob URL is refused', async () => {
    const res = await fetch(`${ts.server.url}/v1/blobs/sha256/NOTAHASH`, { method: 'HEAD' });
    assert.equal(res.status, 400);
  });

  test('an oversized blob is refused with 413 before it is read', async () => {
    const big = Buffer.alloc(2 * 1024 * 1024, 1);
    const d = digestOf(big);
    await assert.rejects(ts.client.putBlob(d, big), (err: unknown) => err instanceof RemexError && err.code === 'RESOURCE_EXHAUSTED');
    assert.deepEqual(await ts.client.findMissing([d]), [d]);
  });

  test('HEAD and find-missing tell which blobs are present', async () => {
    const d = digestOf('present');
    await ts.client.putBlob(d, Buffer.from('present'));
    const head = await fetch(`${ts.server.url}/v1/blobs/sha256/${d.hash}`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(d.sizeBytes));
    const absent = digestOf('absent');
    assert.deepEqual(await ts.client.findMissing([d, absent]), [absent]);
  });

  test('an execution naming a missing blob fails at once with the missing digests', async () => {
    const exe = digestOf('never uploaded');
    const input = digestOf('nor this');
    const err = await ts.client.submit({ executable: exe, platform: 'x86_64-linux-cpu', files: { a: input } }).then(
      () => assert.fail('accepted'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof RemexError);
    assert.equal(err.code, 'FAILED_PRECONDITION');
    assert.deepEqual((err.details as { missing: Digest[] }).missing.map((d) => d.hash).sort(), [exe.hash, input.hash].sort());
  });

  test('an unknown platform, and one no worker could ever serve, are errors at once', async () => {
    const exe = digestOf('x');
    await ts.client.putBlob(exe, Buffer.from('x'));
    for (const platform of ['sparc-linux-cpu', 'x86_64-windows-cpu', 'bogus', 'x86_64-linux-gpu']) {
      const err = await ts.client.submit({ executable: exe, platform }).then(() => assert.fail(`accepted ${platform}`), (e: unknown) => e);
      assert.ok(err instanceof RemexError && err.code === 'FAILED_PRECONDITION', `${platform}: ${String(err)}`);
    }
    const queued = (await ts.client.platforms()).reduce((n, p) => n + p.queued, 0);
    assert.equal(queued, 0);
  });

  test('a PE executable is refused with a clear message when no platform is given', async () => {
    const pe = Buffer.alloc(512);
    pe.write('MZ', 0);
    pe.writeUInt32LE(0x80, 0x3c);
    pe.write('PE\0\0', 0x80, 'latin1');
    pe.writeUInt16LE(0x8664, 0x84);
    const d = digestOf(pe);
    await ts.client.putBlob(d, pe);
    const err = await ts.client.submit({ executable: d }).then(() => assert.fail('accepted'), (e: unknown) => e);
    assert.ok(err instanceof RemexError && err.code === 'INVALID_ARGUMENT');
    assert.match(err.message, /PE|Windows/);
  });

  test('path traversal in input paths is refused', async () => {
    const exe = digestOf('y');
    await ts.client.putBlob(exe, Buffer.from('y'));
    for (const path of ['../escape', 'a/../../escape', '/etc/passwd', 'a//b', './a', 'a/./b']) {
      const err = await ts.client
        .submit({ executable: exe, platform: 'x86_64-linux-cpu', files: { [path]: exe } })
        .then(() => assert.fail(`accepted ${path}`), (e: unknown) => e);
      assert.ok(err instanceof RemexError && err.code === 'INVALID_ARGUMENT', `${path}: ${String(err)}`);
    }
    const err = await ts.client.submit({ executable: exe, platform: 'x86_64-linux-cpu', executableName: '../x' }).then(() => assert.fail('accepted'), (e: unknown) => e);
    assert.ok(err instanceof RemexError && err.code === 'INVALID_ARGUMENT');
  });

  test('malformed JSON, unknown fields and wrong types get 400 with a problem body', async () => {
    for (const body of ['{not json', '{"executable": 5}', '{"executable":{"hash":"ab","sizeBytes":1}}', '{"executable":{"hash":"' + 'a'.repeat(64) + '","sizeBytes":1},"surprise":1}']) {
      const res = await post('/v1/executions', body);
      assert.equal(res.status, 400, body);
      assert.equal(res.json.code, 'INVALID_ARGUMENT', body);
      assert.equal(typeof res.json.detail, 'string');
    }
  });

  test('more input files than MAX_INPUT_FILES are refused with 400 naming the limit, and nothing is queued', async () => {
    const exe = digestOf('y');
    const file = { hash: exe.hash, sizeBytes: exe.sizeBytes };
    const files = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`in/${i}`, file]));
    const before = (await ts.client.listExecutions({ limit: 1000 })).executions.length;
    const res = await post('/v1/executions', JSON.stringify({ executable: file, platform: 'x86_64-linux-cpu', files: files(MAX_INPUT_FILES + 1) }));
    assert.equal(res.status, 400);
    assert.equal(res.json.code, 'INVALID_ARGUMENT');
    assert.match(String(res.json.detail), new RegExp(`files: at most ${MAX_INPUT_FILES} files per execution, not ${MAX_INPUT_FILES + 1}`));
    assert.equal((await ts.client.listExecutions({ limit: 1000 })).executions.length, before);
    assert.equal(executionRequestSchema.safeParse({ executable: file, files: files(MAX_INPUT_FILES) }).success, true, 'the limit itself is accepted');
  });

  test('an oversized JSON request is refused with 413', async () => {
    const res = await post('/v1/executions', JSON.stringify({ args: ['x'.repeat(40 * 1024 * 1024)] }));
    assert.equal(res.status, 413);
    assert.equal(res.json.code, 'RESOURCE_EXHAUSTED');
  });

  test('limits above the server maximum are refused, not lowered', async () => {
    const exe = digestOf('z');
    await ts.client.putBlob(exe, Buffer.from('z'));
    const err = await ts.client
      .submit({ executable: exe, platform: 'x86_64-linux-cpu', limits: { memoryBytes: 1e15 } })
      .then(() => assert.fail('accepted'), (e: unknown) => e);
    assert.ok(err instanceof RemexError && err.code === 'INVALID_ARGUMENT');
  });

  test('an unknown execution id is 404', async () => {
    const err = await ts.client.getExecution('no-such-id').then(() => assert.fail('found'), (e: unknown) => e);
    assert.ok(err instanceof RemexError && err.code === 'NOT_FOUND');
  });
});

describe('HTTP API: the worker protocol keeps failure codes typed', () => {
  before(async () => {
    ts = await startTestServer({ workerSlots: 0 });
  });
  after(async () => {
    await ts?.close();
  });

  /** Registers a raw-HTTP worker, submits a job for it and leases that job. */
  async function leasedJob(): Promise<{ workerId: string; jobId: string; attempt: number }> {
    const reg = await post('/v1/workers', JSON.stringify({ name: 'raw', platforms: [{ platform: 'x86_64-linux-cpu', emulated: false }], slots: 1 }));
    assert.equal(reg.status, 200, JSON.stringify(reg.json));
    const workerId = reg.json.workerId as string;
    const exe = await upload(Buffer.from(`program ${Math.random()}`));
    const queued = await ts.client.submit({ executable: exe, platform: 'x86_64-linux-cpu', doNotCache: true });
    const leased = await post(`/v1/workers/${workerId}/lease`, JSON.stringify({ max: 1, waitMs: 5000 }));
    const leases = leased.json.leases as Array<{ jobId: string; attempt: number }>;
    assert.equal(leases[0]?.jobId, queued.id);
    return { workerId, jobId: queued.id, attempt: leases[0].attempt };
  }

  test('a known failure code is stored as sent; an unknown one is stored as INTERNAL with the code kept in its message', async () => {
    for (const [sent, stored] of [
      [{ code: 'FAILED_PRECONDITION', message: 'inputs vanished' }, { code: 'FAILED_PRECONDITION', message: 'inputs vanished' }],
      [{ code: 'SOME_NEWER_CODE', message: 'said a newer worker' }, { code: 'INTERNAL', message: 'SOME_NEWER_CODE: said a newer worker' }],
    ] as const) {
      const { workerId, jobId, attempt } = await leasedJob();
      const done = await post(`/v1/workers/${workerId}/complete`, JSON.stringify({ jobId, attempt, outcome: { state: 'failed', failure: sent } }));
      assert.equal(done.status, 200, JSON.stringify(done.json));
      const v: ExecutionView = await ts.client.getExecution(jobId);
      assert.equal(v.state, 'failed');
      assert.deepEqual(v.failure, stored);
    }
  });

  test('a run report naming an unknown limit kind is refused with a problem body', async () => {
    const { workerId, jobId, attempt } = await leasedJob();
    const stream = { digest: digestOf(''), inlineBase64: '', totalBytes: 0, truncated: false };
    const result = {
      exitCode: null, signal: 'SIGKILL', timedOut: false, limitExceeded: 'patience', stdout: stream, stderr: stream, outputFiles: [],
      wallTimeMs: 1, cpuTimeMs: 1, maxRssKb: 1, emulated: false, worker: 'raw',
    };
    const refused = await post(`/v1/workers/${workerId}/complete`, JSON.stringify({ jobId, attempt, outcome: { state: 'completed', result } }));
    assert.equal(refused.status, 400);
    assert.equal(refused.json.code, 'INVALID_ARGUMENT');
    assert.match(String(refused.json.detail), /^invalid completion: outcome/);
    assert.equal((await ts.client.getExecution(jobId)).state, 'running');
  });
});
