/**
 * Live logs of long jobs (issue 13), end to end with a real sandbox and real programs, natively and under
 * qemu-user: lines reach `GET /v1/executions/<id>/logs?follow=1`, `remex logs --follow` and the WebSocket's
 * `follow` while the program still runs (it holds after its lines until the test cancels it, so "before it
 * ends" is by construction, not by timing); a follower who comes late gets the earlier lines first; a flood
 * past the job's ceiling is cut there and marked, and the job completes; an unknown job is a 404.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { digestOf } from '../../src/core/digest.js';
import type { LogFrame } from '../../src/client/remex-client.js';
import { remexCli } from '../helpers/remex-cli.js';
import { startTestServer } from '../helpers/server.js';
import type { TestServer } from '../helpers/server.js';
import { compileC, requireTools } from '../helpers/tools.js';

let ts: TestServer;

const PLATFORMS = [
  { isa: 'x86_64', triple: 'x86_64-linux-cpu', tools: ['gcc'] },
  { isa: 'aarch64', triple: 'aarch64-linux-cpu', tools: ['aarch64-linux-gnu-gcc', 'qemu-aarch64-static'] },
] as const;

async function upload(isa: string): Promise<ReturnType<typeof digestOf>> {
  const bytes = readFileSync(compileC({ file: 'programs/log-lines.c' }, isa));
  const exe = digestOf(bytes);
  await ts.client.putBlob(exe, bytes);
  return exe;
}

/** The text of the log frames of one stream, in order, checking that offsets follow each other with no gap or overlap. */
function textOf(frames: readonly LogFrame[], stream: 'stdout' | 'stderr'): string {
  let next = 0;
  let text = '';
  for (const f of frames) {
    if (f.event !== 'log' || f.stream !== stream) continue;
    assert.equal(f.offset, next, `${stream} frames follow each other`);
    next += Buffer.byteLength(f.data);
    text += f.data;
  }
  return text;
}

const lines = (n: number, from = 0): string => Array.from({ length: n }, (_, i) => `line ${from + i}\n`).join('');

describe('live logs of long jobs', () => {
  before(async () => {
    ts = await startTestServer({ workerSlots: 2 });
  });
  after(async () => {
    await ts?.close();
  });

  for (const p of PLATFORMS) {
    test(`${p.isa}: lines are followed while the program runs, a late reader gets them from the store, then the end`, async (t) => {
      if (!requireTools(t, 'bwrap', ...p.tools)) return;
      const exe = await upload(p.isa);
      // Ten lines over about two seconds, then it holds until cancelled.
      const job = await ts.client.submit({ executable: exe, platform: p.triple, args: ['10', '200', 'hold'], logs: true, doNotCache: true });
      const frames: LogFrame[] = [];
      const follow = ts.client.logs(job.id, { follow: true });
      for await (const frame of follow) {
        frames.push(frame);
        if (textOf(frames, 'stdout') === lines(10)) break;
      }
      assert.equal((await ts.client.getExecution(job.id)).state, 'running', 'every line was seen while the program still ran');
      assert.equal(textOf(frames, 'stderr'), 'note 0\nnote 5\n');

      // A reader who comes now gets what was logged, from the store, and the job as it stands.
      const late: LogFrame[] = [];
      for await (const frame of ts.client.logs(job.id)) late.push(frame);
      assert.equal(textOf(late, 'stdout'), lines(10));
      assert.deepEqual(late.at(-1), { event: 'end', id: job.id, state: 'running', attempt: 1 });
      const tail: LogFrame[] = [];
      for await (const frame of ts.client.logs(job.id, { stream: 'stdout', offset: Buffer.byteLength(lines(7)) })) tail.push(frame);
      assert.deepEqual(tail.filter((f) => f.event === 'log').map((f) => f.event === 'log' && f.data).join(''), lines(3, 7));

      // `remex logs` (no --follow) prints them tagged.
      const cli = await remexCli(['logs', job.id, '--server', ts.server.url]);
      assert.equal(cli.code, 0, cli.stderr);
      assert.ok(cli.stdout.includes('stdout| line 0\nstdout| line 1\n'), cli.stdout);
      assert.match(cli.stdout, /^stderr\| note 5$/m);

      await ts.client.cancel(job.id);
      const rest: LogFrame[] = [];
      for await (const frame of ts.client.logs(job.id, { follow: true })) rest.push(frame);
      const end = rest.at(-1);
      assert.equal(end?.event === 'end' && end.state, 'cancelled');
      // Once ended, the output comes from the result in the CAS, whole.
      assert.equal(textOf(rest, 'stdout'), lines(10));
    });
  }

  test('remex logs --follow prints the lines tagged as they come and exits when the job ends', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const exe = await upload('x86_64');
    const job = await ts.client.submit({ executable: exe, args: ['8', '150'], logs: true, doNotCache: true });
    const cli = await remexCli(['logs', job.id, '--follow', '--stream', 'stdout', '--server', ts.server.url]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal(cli.stdout, lines(8).replace(/^/gm, 'stdout| ').replace(/stdout\| $/, ''));
    assert.equal((await ts.client.getExecution(job.id)).state, 'completed');
  });

  test('WebSocket follow: the lines logged before it joined, then live log frames, then the result', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const exe = await upload('x86_64');
    const job = await ts.client.submit({ executable: exe, args: ['6', '150', 'hold'], logs: true, doNotCache: true });
    // Joins after the first lines are stored.
    for await (const frame of ts.client.logs(job.id, { follow: true, stream: 'stdout' })) if (frame.event === 'log' && frame.data.includes('line 1\n')) break;
    const ws = new WebSocket(`${ts.server.url.replace(/^http/, 'ws')}/v1/events`);
    t.after(() => ws.close());
    const frames: Array<Record<string, unknown>> = [];
    let cancelled = false;
    const ended = new Promise<void>((resolve, reject) => {
      ws.on('message', (data) => {
        const frame = JSON.parse(data.toString()) as Record<string, unknown>;
        frames.push(frame);
        const logged = frames.filter((f) => f.event === 'log' && f.stream === 'stdout').map((f) => f.data).join('');
        // Every line seen: the program holds until cancelled, which ends the follow with its result.
        if (logged === lines(6) && !cancelled) {
          cancelled = true;
          void ts.client.cancel(job.id).catch(reject);
        }
        if (frame.event === undefined && frame.id === job.id) resolve();
      });
      ws.on('error', reject);
    });
    await new Promise((resolve) => ws.once('open', resolve));
    ws.send(`follow: ${job.id}`);
    await ended;
    const logs = frames.filter((f) => f.event === 'log');
    assert.ok(logs.length > 0);
    for (const f of logs) assert.deepEqual(Object.keys(f).sort(), ['attempt', 'data', 'event', 'id', 'offset', 'stream']);
    assert.equal(textOf(logs as unknown as LogFrame[], 'stdout'), lines(6));
    assert.equal(frames.at(-1)?.state, 'cancelled', 'the result ends the follow');
    assert.ok(frames.findIndex((f) => f.event === 'state') < frames.findIndex((f) => f.event === 'log'), 'where the job stands comes first');
  });

  test('a flood past the job\'s ceiling is cut there and marked; the job goes on and completes', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const exe = await upload('x86_64');
    const done = await ts.client.submit({ executable: exe, args: ['flood', '1048576'], logs: true, logCeilingBytes: 65_536, doNotCache: true }, { wait: true });
    assert.equal(done.state, 'completed');
    assert.equal(done.code, 0);
    assert.equal(done.output?.stdout.truncated, true);
    assert.equal(done.output?.stdout.totalBytes, 1_048_576);
    assert.equal(done.output?.stdout.digest.sizeBytes, 65_536);
    assert.equal(Buffer.from(done.output?.stderr.base64 ?? '', 'base64').toString(), 'done\n', 'the program ran on to its end');
    const frames: LogFrame[] = [];
    for await (const frame of ts.client.logs(done.id)) frames.push(frame);
    assert.equal(textOf(frames, 'stdout').length, 65_536);
    assert.deepEqual(frames.at(-1), {
      event: 'end', id: done.id, state: 'completed', attempt: 1,
      stdout: { totalBytes: 1_048_576, keptBytes: 65_536, truncated: true },
      stderr: { totalBytes: 5, keptBytes: 5, truncated: false },
    });
    const cli = await remexCli(['logs', done.id, '--stream', 'stderr', '--server', ts.server.url]);
    assert.equal(cli.stdout, 'stderr| done\n');
    // A ceiling above the server's maximum is refused, not lowered (HTTP and remex submit).
    await assert.rejects(ts.client.submit({ executable: exe, logs: true, logCeilingBytes: 2 ** 31 }), { code: 'INVALID_ARGUMENT' });
    const refused = await remexCli(['submit', compileC({ file: 'programs/log-lines.c' }, 'x86_64'), '--log-ceiling-mib', '2048', '--server', ts.server.url]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /logCeilingBytes 2147483648 is above this server's maximum 1073741824/);
  });

  test('an unknown job is a 404 on HTTP and a clear error from remex logs', async () => {
    const res = await fetch(`${ts.server.url}/v1/executions/no-such-job/logs?follow=1`);
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as { code: string }).code, 'NOT_FOUND');
    const cli = await remexCli(['logs', 'no-such-job', '--server', ts.server.url]);
    assert.notEqual(cli.code, 0);
    assert.match(cli.stderr, /no execution no-such-job/);
  });
});
