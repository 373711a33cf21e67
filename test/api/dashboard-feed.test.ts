/**
 * The dashboard's feed on the event relay (a real server, a real WebSocket client) and the charts' ring:
 * job changes batched with their latest state, worker events, the stats history then each new point,
 * an unknown topic refused with a reason; percentiles and the ring's bound without timers.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { WebSocket } from 'ws';
import { LiveStats, percentile } from '../../src/api/live-stats.js';
import type { StatsPoint } from '../../src/api/live-stats.js';
import { EMPTY_DIGEST } from '../../src/core/digest.js';
import type { JobRecord } from '../../src/store/ports.js';
import { startTestServer } from '../helpers/server.js';
import type { TestServer } from '../helpers/server.js';
import { actionDigestOf, makeReport, makeSpec, X86 } from '../store/fixtures.js';

type Frame = Record<string, unknown>;

/** A socket that keeps every frame, and waits for the first one that satisfies a check. */
async function feed(url: string): Promise<{ ws: WebSocket; next: (check: (f: Frame) => boolean) => Promise<Frame> }> {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/events`);
  const frames: Frame[] = [];
  const waiting = new Set<() => void>();
  ws.on('message', (data) => {
    const text = String(data);
    frames.push(text === 'pong' ? { pong: true } : (JSON.parse(text) as Frame));
    for (const wake of [...waiting]) wake();
  });
  await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
  const next = (check: (f: Frame) => boolean) =>
    new Promise<Frame>((resolve) => {
      const look = () => {
        const i = frames.findIndex(check);
        if (i < 0) return;
        waiting.delete(look);
        resolve(frames.splice(i, 1)[0] as Frame);
      };
      waiting.add(look);
      look();
    });
  return { ws, next };
}

describe('the dashboard feed', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ workerSlots: 0, scheduler: { acceptPlatforms: [X86] } });
  });
  after(async () => {
    await ts?.close();
  });

  test('an unknown topic is refused with the topics there are; the socket stays open', async () => {
    const { ws, next } = await feed(ts.server.url);
    ws.send('watch: everything');
    const refused = await next((f) => 'error' in f);
    assert.deepEqual(refused, { error: { code: 'INVALID_ARGUMENT', detail: 'no topic "everything" to watch: expected jobs, workers, stats' } });
    ws.send('watch: stats');
    const history = await next((f) => f.event === 'stats');
    assert.equal(history.bucketMs, 5000);
    assert.ok(Array.isArray(history.points));
    ws.close();
  });

  test('job changes arrive batched as summaries with their latest state; worker events as they happen', async () => {
    const { ws, next } = await feed(ts.server.url);
    ws.send('watch: jobs');
    ws.send('watch: workers');
    // The watch is set up by the time the server answers a ping sent after it.
    ws.send('ping');
    await next((f) => f.pong === true);
    const s = ts.server.scheduler;
    const { workerId } = await s.register({ name: 'feed-worker', platforms: [{ platform: X86, emulated: false }], slots: 1 });
    const registered = await next((f) => f.event === 'worker');
    assert.deepEqual([registered.workerId, registered.state, typeof registered.atMs], [workerId, 'registered', 'number']);
    const spec = { ...makeSpec({ label: 'feed' }), inputRootDigest: EMPTY_DIGEST };
    const { job } = await s.submit({ actionDigest: actionDigestOf(spec), spec, name: 'feed-job', labels: { suite: 'feed' } });
    const [lease] = await s.lease(workerId, 1, 0);
    assert.equal(lease?.jobId, job.id);
    await s.complete(workerId, { jobId: job.id, attempt: 1, outcome: { state: 'completed', result: makeReport({ worker: workerId }) } });
    // Within one batch (200 ms) the three changes are one summary, the latest; across batches the last one is it.
    const done = await next((f) => f.event === 'jobs' && (f.jobs as Array<{ id: string; state: string }>).some((j) => j.id === job.id && j.state === 'completed'));
    const summary = (done.jobs as Array<Record<string, unknown>>).find((j) => j.id === job.id);
    assert.deepEqual(summary, {
      id: job.id,
      state: 'completed',
      platform: X86,
      name: 'feed-job',
      labels: { suite: 'feed' },
      createdAt: new Date(job.createdAtMs).toISOString(),
      attempt: 1,
      worker: workerId,
      code: 0,
      execTime: 12,
    });
    ws.close();
  });
});

describe('the charts ring', () => {
  const job = (createdAtMs: number, completedAtMs: number) => ({ createdAtMs, completedAtMs }) as JobRecord;

  test('each bucket: count, throughput, queue sample and nearest-rank percentiles; an hour kept; listeners told', async () => {
    let depth = { queued: 7, running: 2 };
    let now = 1_000_000;
    const stats = new LiveStats({ sample: async () => depth, logger: pino({ level: 'silent' }), bucketMs: 5000, windowMs: 15_000, now: () => now });
    const heard: StatsPoint[] = [];
    const stop = stats.onPoint((p) => heard.push(p));
    for (let i = 1; i <= 100; i++) stats.observer.jobFinished?.(job(0, i));
    now += 5000;
    const first = await stats.closeBucket();
    assert.deepEqual(first, { atMs: 1_005_000, finished: 100, throughputPerS: 20, queued: 7, running: 2, p50Ms: 50, p95Ms: 95, p99Ms: 99 });
    depth = { queued: 0, running: 0 };
    for (let i = 0; i < 3; i++) {
      now += 5000;
      await stats.closeBucket();
    }
    const history = stats.history();
    assert.equal(history.length, 3, 'three buckets of 5 s make the 15 s window');
    assert.deepEqual(history.map((p) => [p.finished, p.p50Ms, p.queued]), [[0, null, 0], [0, null, 0], [0, null, 0]]);
    assert.equal(heard.length, 4);
    stop();
    stats.close();
  });

  test('percentile is nearest-rank and null for no values', () => {
    assert.equal(percentile([], 0.5), null);
    assert.equal(percentile([42], 0.99), 42);
    assert.equal(percentile([1, 2, 3, 4], 0.5), 2);
    assert.equal(percentile([1, 2, 3, 4], 0.75), 3);
  });
});
