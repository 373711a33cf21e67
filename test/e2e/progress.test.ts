/**
 * Progress from inside the sandbox, end to end (issue 13): a real program, native and under qemu-user,
 * appends lines to the file `REMEX_PROGRESS` names; the worker reads them, its heartbeats carry the latest
 * to the server, and the job's view shows it while the program runs and when it has ended. A malformed
 * line is ignored; a job that did not ask for a channel has none.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { ExecutionView } from '../../src/api/execution-view.js';
import { digestOf } from '../../src/core/digest.js';
import { eventually } from '../helpers/processes.js';
import { remexCli } from '../helpers/remex-cli.js';
import { startTestServer } from '../helpers/server.js';
import type { TestServer } from '../helpers/server.js';
import { compileC, requireTools } from '../helpers/tools.js';

let ts: TestServer;

const PLATFORMS = [
  { isa: 'x86_64', triple: 'x86_64-linux-cpu', tools: ['gcc'] },
  { isa: 'aarch64', triple: 'aarch64-linux-cpu', tools: ['aarch64-linux-gnu-gcc', 'qemu-aarch64-static'] },
] as const;

describe('progress from inside the sandbox', () => {
  before(async () => {
    // A short lease: heartbeats every 250 ms carry progress to the server.
    ts = await startTestServer({ workerSlots: 2, scheduler: { leaseTimeoutMs: 1_000, heartbeatIntervalMs: 250, workerSilenceMs: 1_000, reaperIntervalMs: 250 } });
  });
  after(async () => {
    await ts?.close();
  });

  for (const p of PLATFORMS) {
    test(`${p.isa}: the latest progress shows while it runs and after; the malformed line is ignored`, async (t) => {
      if (!requireTools(t, 'bwrap', ...p.tools)) return;
      const bytes = readFileSync(compileC({ file: 'programs/progress.c' }, p.isa));
      const exe = digestOf(bytes);
      await ts.client.putBlob(exe, bytes);
      // 3 s between reports: the first one is still the latest while this test looks, however loaded the machine.
      const submitted = await ts.client.submit({ executable: exe, platform: p.triple, args: ['3000'], progress: true, doNotCache: true, name: `progress-${p.isa}` });
      const midway = await eventually(
        async () => {
          const v = await ts.client.getExecution(submitted.id);
          return v.state === 'running' && v.progress?.percent === 10 ? v : undefined;
        },
        15_000,
        'the first progress report while the program runs',
      );
      assert.equal(midway.progress?.message, 'warming up');
      assert.deepEqual(midway.progress?.history, []);
      // A new process, started while the job runs: it shows the latest report there is by then.
      const status = await remexCli(['status', submitted.id, '--server', ts.server.url]);
      assert.match(status.stdout, /^progress\s+(10% warming up|55\.5% triad \(triad_mbps=48532\.5\)|100% done) \(/m);

      const done: ExecutionView = await ts.client.submit({ executable: exe, platform: p.triple, progress: true, doNotCache: true }, { wait: true });
      assert.equal(done.state, 'completed');
      assert.deepEqual(
        { percent: done.progress?.percent, message: done.progress?.message, metrics: done.progress?.metrics, history: done.progress?.history.map((h) => h.percent) },
        { percent: 100, message: 'done', metrics: undefined, history: [10, 55.5] },
        'the last line (without its newline) read after the program ended; the malformed one skipped',
      );
      assert.match(Buffer.from(done.output?.stdout.base64 ?? '', 'base64').toString(), /^channel at \/work\/\.remex-progress$/m);
      assert.deepEqual(done.outputFiles, [], 'the channel is never an output');
      const first = await eventually(async () => {
        const v = await ts.client.getExecution(submitted.id);
        return v.state === 'completed' ? v : undefined;
      }, 15_000, 'the first job to end');
      assert.equal(first.progress?.percent, 100);
      assert.ok(first.progress?.history.some((h) => h.percent === 55.5) || first.progress?.history.some((h) => h.percent === 10));
    });
  }

  test('follow on the WebSocket: each state with its time, each progress report, then the result', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const bytes = readFileSync(compileC({ file: 'programs/progress.c' }, 'x86_64'));
    const exe = digestOf(bytes);
    await ts.client.putBlob(exe, bytes);
    const submitted = await ts.client.submit({ executable: exe, args: ['1200'], progress: true, doNotCache: true });
    const frames: Array<Record<string, unknown>> = [];
    const ws = ts.client.openEvents();
    await new Promise<void>((resolve, reject) => {
      ws.on('open', () => ws.send(`follow: ${submitted.id}`));
      ws.on('message', (data) => {
        const frame = JSON.parse(data.toString()) as Record<string, unknown>;
        frames.push(frame);
        if (frame.event === undefined) resolve(); // the result: the follow ends
      });
      ws.on('error', reject);
      setTimeout(() => reject(new Error(`no result; frames: ${JSON.stringify(frames)}`)), 20_000).unref();
    });
    ws.close();
    const states = frames.filter((f) => f.event === 'state');
    assert.ok(states.some((f) => f.state === 'running' && f.id === submitted.id && typeof f.atMs === 'number'), JSON.stringify(frames));
    const percents = frames.filter((f) => f.event === 'progress').map((f) => f.percent);
    assert.ok(percents.includes(10) && percents.includes(100), `progress frames: ${JSON.stringify(percents)}`);
    assert.deepEqual(percents, [...percents].sort((a, b) => (a as number) - (b as number)), 'in order');
    const last = frames[frames.length - 1] as unknown as ExecutionView;
    assert.deepEqual([last.id, last.state, last.progress?.percent], [submitted.id, 'completed', 100]);

    const unknown = ts.client.openEvents();
    const refusal = await new Promise<Record<string, unknown>>((resolve) => {
      unknown.on('open', () => unknown.send('follow: no-such-job'));
      unknown.on('message', (data) => resolve(JSON.parse(data.toString()) as Record<string, unknown>));
    });
    unknown.close();
    assert.deepEqual(refusal, { error: { code: 'NOT_FOUND', detail: 'no execution no-such-job' } });
  });

  test('a job that does not ask for a channel has none', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const bytes = readFileSync(compileC({ file: 'programs/progress.c' }, 'x86_64'));
    const exe = digestOf(bytes);
    await ts.client.putBlob(exe, bytes);
    const v = await ts.client.submit({ executable: exe }, { wait: true });
    assert.equal(Buffer.from(v.output?.stdout.base64 ?? '', 'base64').toString(), 'no progress channel\n');
    assert.equal(v.progress, null);
  });
});
