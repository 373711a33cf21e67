/**
 * The server's side of live logs without a sandbox: the filesystem LogStore (appends idempotent by offset, a
 * chunk past the end refused with where to resume, logs surviving the store opened again — a restarted
 * controller), the intake (only bytes not stored before are published), and the follower (stored first,
 * then live; a gap in the live chunks filled from the store; the rest from the result once the job ended).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { MemoryBlobStore } from '../../src/cas/memory/memory-blob-store.js';
import { digestOf } from '../../src/core/digest.js';
import type { LogEvent } from '../../src/events/bus-events.js';
import { InMemoryEventBus } from '../../src/events/memory/in-memory-event-bus.js';
import { FsLogStore } from '../../src/logs/fs-log-store.js';
import { followLogs } from '../../src/logs/log-follower.js';
import type { LogBytes } from '../../src/logs/log-follower.js';
import { LogIntake } from '../../src/logs/log-intake.js';
import type { JobRecord } from '../../src/store/ports.js';
import { makeReport, makeSpec } from '../store/fixtures.js';

const OUT = { jobId: 'job-1', attempt: 1, stream: 'stdout' as const };

function scratch(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'remex-logs-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const bytes = (text: string): Buffer => Buffer.from(text);

function job(state: JobRecord['state'], stdoutText?: string): JobRecord {
  return {
    id: OUT.jobId, actionDigest: digestOf('a'), instance: '', platform: 'x86_64-linux-cpu', state, attempt: 1, priority: 0,
    spec: { ...makeSpec(), logs: { ceilingBytes: 1024 } }, createdAtMs: 1, queuedAtMs: 1, startedAtMs: 2, completedAtMs: state === 'running' ? null : 3,
    queueTimeMs: 0, leaseOwner: null, leaseExpiresAtMs: null, cancelRequested: false, cached: false,
    result: stdoutText === undefined ? null : makeReport({ stdoutText }), failure: null, progress: null, noRetry: false, notifyUrl: null, name: null, labels: {},
  };
}

describe('FsLogStore', () => {
  test('appends by offset: a chunk sent again is stored once, one past the end is refused with where to resume', async (t) => {
    const store = new FsLogStore(scratch(t));
    t.after(() => store.close());
    assert.equal(await store.append(OUT, 0, bytes('hello ')), 6);
    assert.equal(await store.append(OUT, 0, bytes('hello ')), 6, 'the same chunk again');
    assert.equal(await store.append(OUT, 3, bytes('lo world')), 11, 'overlapping: only the new bytes');
    assert.equal(await store.append(OUT, 20, bytes('later')), 11, 'past the end: nothing stored');
    assert.equal((await store.read(OUT, 0, 100)).toString(), 'hello world');
    assert.equal((await store.read(OUT, 6, 3)).toString(), 'wor');
    assert.equal((await store.read(OUT, 11, 10)).byteLength, 0);
    assert.equal((await store.read({ ...OUT, stream: 'stderr' }, 0, 10)).byteLength, 0, 'a log never written reads empty');
  });

  test('what was stored survives the store opened again (a restarted controller), and goes with remove', async (t) => {
    const dir = scratch(t);
    const first = new FsLogStore(dir);
    await first.append(OUT, 0, bytes('line 1\n'));
    await first.append({ ...OUT, attempt: 2 }, 0, bytes('second run\n'));
    // No close: as a process that died.
    const again = new FsLogStore(dir);
    t.after(() => again.close());
    assert.equal(await again.size(OUT), 7);
    assert.equal(await again.append(OUT, 7, bytes('line 2\n')), 14, 'the worker goes on where the store is');
    assert.equal((await again.read(OUT, 0, 100)).toString(), 'line 1\nline 2\n');
    assert.equal((await again.read({ ...OUT, attempt: 2 }, 0, 100)).toString(), 'second run\n');
    await again.remove(OUT.jobId);
    assert.equal(await again.size(OUT), 0);
    await first.close();
  });
});

describe('LogIntake', () => {
  test('stores, answers how much it holds, and publishes only the bytes it did not hold', async (t) => {
    const store = new FsLogStore(scratch(t));
    const events = new InMemoryEventBus();
    const intake = new LogIntake(store, events);
    t.after(async () => {
      intake.close();
      await store.close();
    });
    const heard: LogEvent[] = [];
    events.subscribeKind('log', (e) => heard.push(e));
    const acks = await intake.append([
      { ...OUT, offset: 0, data: bytes('abc') },
      { ...OUT, offset: 0, data: bytes('abcdef') },
      { ...OUT, stream: 'stderr', offset: 5, data: bytes('lost before') },
    ]);
    assert.deepEqual(acks, [
      { ...OUT, storedBytes: 6 },
      { ...OUT, stream: 'stderr', storedBytes: 0 },
    ]);
    assert.deepEqual(heard.map((e) => [e.stream, e.offset, Buffer.from(e.data).toString()]), [
      ['stdout', 0, 'abc'],
      ['stdout', 3, 'def'],
    ]);
  });
});

describe('followLogs', () => {
  test('stored first, then live; a gap is filled from the store; at the end the rest comes from the result', async (t) => {
    const logs = new FsLogStore(scratch(t));
    t.after(() => logs.close());
    const events = new InMemoryEventBus();
    const blobs = new MemoryBlobStore();
    let current = job('running');
    await logs.append(OUT, 0, bytes('one\n'));
    const seen: LogBytes[] = [];
    let ended: JobRecord | null | undefined;
    const done = new Promise<void>((resolve, reject) => {
      followLogs({ logs, events, blobs, getJob: async () => current }, OUT.jobId, {
        streams: ['stdout'],
        follow: true,
        onBytes: (b) => seen.push(b),
        onEnd: (j) => {
          ended = j;
          resolve();
        },
        onError: reject,
      });
    });
    const publish = (offset: number, text: string): void => events.publishEvent({ kind: 'log', ...OUT, offset, data: bytes(text), atMs: 1 });
    // Stored but never heard (a bus gap), then a live chunk after it, then one heard twice.
    await logs.append(OUT, 4, bytes('two\n'));
    await logs.append(OUT, 8, bytes('three\n'));
    publish(8, 'three\n');
    publish(8, 'three\n');
    const whole = 'one\ntwo\nthree\nfour\n';
    await blobs.put(digestOf(whole), bytes(whole));
    current = job('completed', whole);
    events.publish(current);
    await done;
    assert.equal(ended?.state, 'completed');
    let next = 0;
    for (const b of seen) {
      assert.equal(b.offset, next, 'no gap, no byte twice');
      next += b.data.byteLength;
    }
    assert.equal(Buffer.concat(seen.map((b) => b.data)).toString(), whole);
  });

  test('an unknown job ends at once with null', async () => {
    const ended = await new Promise<JobRecord | null>((resolve, reject) =>
      followLogs({ logs: new FsLogStore('/nonexistent'), events: new InMemoryEventBus(), blobs: new MemoryBlobStore(), getJob: async () => null }, 'nope', {
        streams: ['stdout', 'stderr'],
        follow: true,
        onBytes: () => reject(new Error('no bytes for an unknown job')),
        onEnd: resolve,
        onError: reject,
      }),
    );
    assert.equal(ended, null);
  });
});
