/**
 * The behavioural suite of the EventBus port. Every adapter runs it unchanged:
 * `eventBusConformance('postgres', factory)` is all a new backend's test file needs. A networked adapter
 * gives two buses on one network (two controllers); each property is checked on the publishing bus (at
 * once, synchronously) and on the other (eventually). A single-process adapter gives one bus twice.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { InvalidArgumentError } from '../../src/core/errors.js';
import type { JobState } from '../../src/core/model.js';
import { MAX_LOG_CHUNK_BYTES, MAX_PROGRESS_METRICS } from '../../src/events/bus-events.js';
import type { BusEvent, JobScopedEvent, LogEvent, ProgressEvent, WorkerEvent } from '../../src/events/bus-events.js';
import type { EventBus } from '../../src/events/event-bus.js';
import type { JobRecord, Store } from '../../src/store/ports.js';
import { actionDigestOf, makeReport, makeSpec, X86 } from '../store/fixtures.js';

export interface EventBusHandle {
  /** Holds the jobs the tests publish: a networked bus reads a job changed elsewhere from it. */
  store: Store;
  /** The bus the tests publish on. */
  bus: EventBus;
  /** Another controller's bus on the same network; `bus` itself for a single-process adapter. */
  peer: EventBus;
  /** Closes both buses and the store, and deletes what they kept. */
  cleanup(): Promise<void>;
}

export type EventBusFactory = () => Promise<EventBusHandle>;

const T0 = 1_700_000_000_000;
const REMOTE_TIMEOUT_MS = 5_000;

export async function waitUntil(what: string, predicate: () => boolean, timeoutMs = REMOTE_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(5);
  }
}

let seq = 0;

export async function queuedJob(store: Store, label = 'job'): Promise<JobRecord> {
  const spec = makeSpec({ label: `${label}-${++seq}-${Math.random()}` });
  const id = `${label}-${seq}-${Math.random().toString(36).slice(2)}`;
  const { job } = await store.jobs.enqueue({ id, actionDigest: actionDigestOf(spec), instance: '', priority: 0, spec, nowMs: T0, mergeable: true });
  return job;
}

export function progress(jobId: string, percent: number, o: Partial<ProgressEvent> = {}): ProgressEvent {
  return { kind: 'progress', jobId, attempt: 1, percent, atMs: T0, ...o };
}

export function log(jobId: string, offset: number, data: Uint8Array, o: Partial<LogEvent> = {}): LogEvent {
  return { kind: 'log', jobId, attempt: 1, stream: 'stdout', offset, data, atMs: T0, ...o };
}

export function worker(workerId: string, state: WorkerEvent['state']): WorkerEvent {
  return { kind: 'worker', workerId, state, atMs: T0 };
}

/** A stream's bytes as the log events of it tell them; fails on a gap or an overlap. */
export function joined(events: readonly LogEvent[], from = 0): Buffer {
  let at = from;
  const parts: Buffer[] = [];
  for (const e of events) {
    assert.equal(e.offset, at, `a log chunk at ${e.offset} where ${at} was next`);
    parts.push(Buffer.from(e.data));
    at += e.data.byteLength;
  }
  return Buffer.concat(parts);
}

/** Comparable form of an event: a log chunk's bytes as a Buffer, whatever Uint8Array the bus gave. */
function plain(e: BusEvent): unknown {
  return e.kind === 'log' ? { ...e, data: Buffer.from(e.data) } : e;
}

export function eventBusConformance(name: string, factory: EventBusFactory): void {
  describe(`EventBus conformance: ${name}`, () => {
    let h: EventBusHandle;
    let networked: boolean;
    /** Both sides, publishing one first; on a single-process bus, once. */
    let sides: Array<{ side: string; bus: EventBus }>;
    /** Resolves once everything published on `h.bus` before it (other than job changes) reached `h.peer`. */
    let settled: () => Promise<void>;

    beforeEach(async () => {
      h = await factory();
      networked = h.peer !== h.bus;
      sides = networked
        ? [
            { side: 'publisher', bus: h.bus },
            { side: 'peer', bus: h.peer },
          ]
        : [{ side: 'publisher', bus: h.bus }];
      let marks = 0;
      settled = async () => {
        // Events of one kind arrive in their publish order: once a marker is heard, all before it were.
        const id = `marker-${++marks}`;
        let heard = false;
        const stop = h.peer.subscribeKind('worker', (e) => (heard ||= e.workerId === id));
        h.bus.publishEvent(worker(id, 'registered'));
        await waitUntil(`the peer hears marker ${id}`, () => heard);
        stop();
      };
    });
    afterEach(async () => {
      await h.cleanup();
    });

    test('a job change reaches every subscriber of that job, its followers and the listeners of job changes, on every controller; no other job’s', async () => {
      const job = await queuedJob(h.store);
      const other = await queuedJob(h.store, 'other');
      const heard = sides.map(() => ({ changes: [] as JobRecord[], twice: [] as JobRecord[], followed: [] as JobScopedEvent[], kind: [] as JobRecord[], otherJob: 0 }));
      sides.forEach(({ bus }, i) => {
        const got = heard[i] as (typeof heard)[number];
        bus.subscribe(job.id, (j) => got.changes.push(j));
        bus.subscribe(job.id, (j) => got.twice.push(j));
        bus.subscribeJobEvents(job.id, (e) => got.followed.push(e));
        bus.subscribeKind('job', (e) => e.job.id === job.id && got.kind.push(e.job));
        bus.subscribe(other.id, () => got.otherJob++);
      });
      h.bus.publish(job);
      const local = heard[0] as (typeof heard)[number];
      assert.deepEqual([local.changes, local.twice, local.kind], [[job], [job], [job]], 'delivered at once on the publishing bus');
      assert.deepEqual(local.followed, [{ kind: 'job', job }]);
      for (const [i, got] of heard.entries()) {
        await waitUntil(`${sides[i]?.side} hears the change`, () => got.changes.length === 1 && got.twice.length === 1 && got.followed.length === 1 && got.kind.length === 1);
        assert.deepEqual(got.changes[0], job);
      }
      h.bus.publishEvent({ kind: 'job', job: other });
      await waitUntil('the other job is heard everywhere', () => heard.every((got) => got.otherJob === 1));
      for (const got of heard) assert.equal(got.changes.length, 1, 'a change of another job reaches only its own subscribers');
    });

    test('progress and log events reach the followers of their job and the listeners of their kind, on every controller; worker events reach listeners of workers only', async () => {
      const jobId = 'job-with-output';
      const events: BusEvent[] = [progress(jobId, 12, { message: 'stage 1', metrics: { triad_mbps: 48532.5 } }), log(jobId, 0, Buffer.from('hello\n')), log(jobId, 6, Buffer.from('oops\n'), { stream: 'stderr' }), worker('w-1', 'draining')];
      for (const { side, bus } of sides) {
        const followed: JobScopedEvent[] = [];
        const byKind: BusEvent[] = [];
        const otherJob: JobScopedEvent[] = [];
        const changes: JobRecord[] = [];
        bus.subscribeJobEvents(jobId, (e) => followed.push(e));
        bus.subscribeJobEvents('another-job', (e) => otherJob.push(e));
        bus.subscribe(jobId, (j) => changes.push(j));
        for (const kind of ['progress', 'log', 'worker'] as const) bus.subscribeKind(kind, (e) => byKind.push(e));
        for (const event of events) h.bus.publishEvent(event);
        await settled();
        assert.deepEqual(followed.map(plain), events.slice(0, 3).map(plain), `${side}: the job's followers hear its progress and log, in order`);
        assert.deepEqual(byKind.filter((e) => !(e.kind === 'worker' && e.workerId.startsWith('marker-'))).map(plain), events.map(plain), `${side}: kind listeners hear every event of their kinds`);
        assert.deepEqual(otherJob, [], `${side}: nothing of another job`);
        assert.deepEqual(changes, [], `${side}: job-change subscribers hear only changes`);
      }
    });

    test('listeners of every job change published here hear only this controller’s', async () => {
      const here: JobRecord[] = [];
      const elsewhere: JobRecord[] = [];
      h.bus.subscribeAll((j) => here.push(j));
      if (networked) h.peer.subscribeAll((j) => elsewhere.push(j));
      const job = await queuedJob(h.store);
      const followedOnPeer: JobRecord[] = [];
      h.peer.subscribe(job.id, (j) => followedOnPeer.push(j));
      h.bus.publish(job);
      assert.deepEqual(here, [job]);
      await waitUntil('the peer hears the change', () => followedOnPeer.length === 1);
      assert.deepEqual(elsewhere, []);
    });

    test('unsubscribing stops delivery, also from inside a listener, of itself or of another', async () => {
      const job = await queuedJob(h.store);
      for (const { side, bus } of sides) {
        const calls: string[] = [];
        const stopFirst = bus.subscribeJobEvents(job.id, (e) => {
          calls.push(`first:${e.kind}`);
          stopFirst();
          stopThird(); // called after this one: must not be called now
        });
        const stopSecond = bus.subscribeJobEvents(job.id, (e) => calls.push(`second:${e.kind}`));
        const stopThird = bus.subscribeJobEvents(job.id, (e) => calls.push(`third:${e.kind}`));
        const stopKind = bus.subscribeKind('progress', (e) => {
          calls.push(`kind:${e.percent}`);
          stopKind();
        });
        h.bus.publishEvent(progress(job.id, 1));
        await settled();
        assert.deepEqual(calls, ['first:progress', 'second:progress', 'kind:1'], side);
        stopSecond();
        h.bus.publishEvent(progress(job.id, 2));
        h.bus.publish(job);
        await settled();
        await sleep(networked ? 100 : 0); // a job change elsewhere is re-read: give a wrong delivery time to show
        assert.deepEqual(calls, ['first:progress', 'second:progress', 'kind:1'], `${side}: nothing after unsubscribing`);
      }
    });

    test('a listener that throws stops no other', async () => {
      const job = await queuedJob(h.store);
      for (const { side, bus } of sides) {
        const heard: string[] = [];
        bus.subscribe(job.id, () => {
          throw new Error('a broken subscriber');
        });
        bus.subscribe(job.id, () => heard.push('change'));
        bus.subscribeJobEvents(job.id, () => {
          throw new Error('a broken follower');
        });
        bus.subscribeJobEvents(job.id, (e) => heard.push(`follower:${e.kind}`));
        bus.subscribeKind('log', () => {
          throw new Error('a broken kind listener');
        });
        bus.subscribeKind('log', () => heard.push('kind:log'));
        h.bus.publishEvent(log(job.id, 0, Buffer.from('x')));
        h.bus.publish(job);
        await waitUntil(`${side} hears both`, () => heard.length === 4);
        assert.deepEqual(heard.slice().sort(), ['change', 'follower:job', 'follower:log', 'kind:log'], side);
      }
    });

    test('events of one job arrive in order: progress as published, log chunks by offset, its changes never back in time nor twice', async () => {
      const job = await queuedJob(h.store, 'ordered');
      const heard = sides.map(() => ({ progress: [] as number[], log: [] as LogEvent[], states: [] as JobState[] }));
      sides.forEach(({ bus }, i) => {
        const got = heard[i] as (typeof heard)[number];
        bus.subscribeJobEvents(job.id, (e) => {
          if (e.kind === 'progress') got.progress.push(e.percent);
          else if (e.kind === 'log') got.log.push(e);
          else got.states.push(e.job.state);
        });
      });
      h.bus.publish(job);
      const [running] = await h.store.jobs.claim({ platforms: [X86], workerId: 'w', max: 1, leaseMs: 60_000, nowMs: T0 });
      assert.ok(running);
      h.bus.publish(running);
      const output = randomBytes(50_000);
      const percents = Array.from({ length: 40 }, (_, i) => i * 2.5);
      let offset = 0;
      for (const [i, percent] of percents.entries()) {
        const size = [1, 700, 1_234, 3][i % 4] as number;
        if (offset < output.length) h.bus.publishEvent(log(job.id, offset, output.subarray(offset, (offset += size))));
        h.bus.publishEvent(progress(job.id, percent));
      }
      if (offset < output.length) h.bus.publishEvent(log(job.id, offset, output.subarray(offset)));
      const done = await h.store.jobs.finish({ id: job.id, attempt: 1, workerId: 'w', outcome: { state: 'completed', result: makeReport() }, nowMs: T0 + 1 });
      assert.ok(done);
      h.bus.publish(done);
      await settled();
      for (const [i, got] of heard.entries()) {
        const side = sides[i]?.side;
        await waitUntil(`${side} sees the job completed`, () => got.states.at(-1) === 'completed');
        assert.deepEqual(got.progress, percents, `${side}: progress in publish order`);
        assert.ok(joined(got.log).equals(output), `${side}: the output, whole and in order`);
        const order: JobState[] = ['queued', 'running', 'completed'];
        assert.deepEqual(got.states, [...new Set(got.states)], `${side}: a change delivered twice: ${got.states.join(',')}`);
        assert.deepEqual(got.states, order.filter((s) => got.states.includes(s)), `${side}: out of order: ${got.states.join(',')}`);
      }
      assert.deepEqual(heard[0]?.states, ['queued', 'running', 'completed'], 'the publishing bus delivers every change it publishes');
    });

    test('a log chunk of the largest size arrives whole on every controller, with its offset', async () => {
      const data = randomBytes(MAX_LOG_CHUNK_BYTES);
      const heard = sides.map(() => [] as LogEvent[]);
      sides.forEach(({ bus }, i) => bus.subscribeKind('log', (e) => heard[i]?.push(e)));
      h.bus.publishEvent(log('big', 1_000_000, data, { stream: 'stderr', attempt: 2 }));
      await settled();
      for (const [i, got] of heard.entries()) {
        assert.ok(joined(got, 1_000_000).equals(data), `${sides[i]?.side}: the bytes, in order`);
        for (const e of got) assert.deepEqual([e.jobId, e.stream, e.attempt], ['big', 'stderr', 2]);
      }
    });

    test('an event outside its bounds is refused at publish and reaches nobody', async () => {
      const heard: BusEvent[] = [];
      for (const { bus } of sides) for (const kind of ['progress', 'log', 'worker'] as const) bus.subscribeKind(kind, (e) => heard.push(e));
      const metrics = Object.fromEntries(Array.from({ length: MAX_PROGRESS_METRICS + 1 }, (_, i) => [`m${i}`, i]));
      const bad: BusEvent[] = [
        log('j', 0, Buffer.alloc(MAX_LOG_CHUNK_BYTES + 1)),
        log('j', 0, Buffer.alloc(0)),
        log('j', -1, Buffer.from('x')),
        log('j', 0, Buffer.from('x'), { stream: 'stdin' as LogEvent['stream'] }),
        progress('j', 101),
        progress('j', Number.NaN),
        progress('j', 5, { message: 'x'.repeat(10_000) }),
        progress('j', 5, { metrics }),
        progress('j', 5, { metrics: { __proto__x: 1 } }),
        progress('j', 5, { metrics: { ok: Number.POSITIVE_INFINITY } }),
        progress('', 5),
        progress('j', 5, { attempt: 0 }),
        worker('w', 'asleep' as WorkerEvent['state']),
        { kind: 'gossip' } as unknown as BusEvent,
      ];
      for (const event of bad) assert.throws(() => h.bus.publishEvent(event), InvalidArgumentError, JSON.stringify(plain(event)).slice(0, 120));
      await settled();
      assert.deepEqual(heard.filter((e) => !(e.kind === 'worker' && e.workerId.startsWith('marker-'))), []);
    });
  });
}
