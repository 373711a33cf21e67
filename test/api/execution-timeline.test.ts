/**
 * Where an execution's time went: the timeline of GET /v1/executions/<id> and REAPI's
 * ExecutedActionMetadata for a real run (real gRPC client, real bubblewrap worker), the timeline's rules on
 * made-up jobs (cached, queued, a worker's clock behind the server's), and trace context parsing.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Metadata } from '@grpc/grpc-js';
import { executionTimeline } from '../../src/api/execution-timeline.js';
import type { TimelineEntry } from '../../src/api/execution-timeline.js';
import type { ExecutedActionMetadataOut, OperationOut } from '../../src/api/grpc/messages.js';
import { newTraceContext, parseTraceparent, traceContextOf } from '../../src/core/trace-context.js';
import type { JobRecord } from '../../src/store/ports.js';
import { actionDigestOf, makeReport, makeSpec, X86 } from '../store/fixtures.js';
import { compileC, requireTools } from '../helpers/tools.js';
import { collect, makeAction, msg, responseOf, startGrpcHarness, uploadTree } from './grpc/harness.js';
import type { GrpcHarness } from './grpc/harness.js';

const T0 = 1_700_000_000_000;

function job(overrides: Partial<JobRecord>): JobRecord {
  const spec = makeSpec();
  return {
    id: 'j1', actionDigest: actionDigestOf(spec), instance: '', platform: X86, state: 'queued', attempt: 0, priority: 0, spec,
    createdAtMs: T0, queuedAtMs: T0, startedAtMs: null, completedAtMs: null, queueTimeMs: 0, leaseOwner: null, leaseExpiresAtMs: null,
    cancelRequested: false, cached: false, result: null, failure: null, progress: null, noRetry: false, notifyUrl: null, name: null, labels: {},
    ...overrides,
  };
}

function assertOrdered(timeline: TimelineEntry[]): void {
  timeline.forEach((e, i) => {
    const next = timeline[i + 1];
    if (next) {
      assert.ok(next.atMs >= e.atMs, `${next.phase} before ${e.phase}`);
      assert.equal(e.durationMs, next.atMs - e.atMs);
    } else {
      assert.equal(e.durationMs, undefined, 'the last phase has no duration');
    }
  });
}

describe('execution timeline rules', () => {
  test('a queued job has one phase, a running one two, without a duration on the current one', () => {
    assert.deepEqual(executionTimeline(job({})), [{ phase: 'queued', atMs: T0 }]);
    assert.deepEqual(executionTimeline(job({ state: 'running', attempt: 1, startedAtMs: T0 + 40 })), [
      { phase: 'queued', atMs: T0, durationMs: 40 },
      { phase: 'leased', atMs: T0 + 40 },
    ]);
  });

  test('a cached result ran nothing now: queued then completed; a failure before any run: no worker phases', () => {
    assert.deepEqual(executionTimeline(job({ state: 'completed', cached: true, completedAtMs: T0, result: makeReport() })), [
      { phase: 'queued', atMs: T0, durationMs: 0 },
      { phase: 'completed', atMs: T0 },
    ]);
    const failed = executionTimeline(job({ state: 'failed', attempt: 1, startedAtMs: T0 + 5, completedAtMs: T0 + 9, failure: { code: 'NOT_FOUND', message: 'gone' } }));
    assert.deepEqual(failed.map((e) => e.phase), ['queued', 'leased', 'completed']);
    assertOrdered(failed);
  });

  test('a worker clock behind the server\'s never puts a phase before the one it follows', () => {
    const behind = T0 - 500;
    const report = makeReport({ times: { stagingStartedAtMs: behind + 100, stagedAtMs: behind + 110, programStartedAtMs: behind + 120, programEndedAtMs: behind + 200, outputsStoredAtMs: behind + 210 } });
    const timeline = executionTimeline(job({ state: 'completed', attempt: 1, startedAtMs: T0 + 10, completedAtMs: T0 + 300, result: report }));
    assert.deepEqual(timeline.map((e) => e.phase), ['queued', 'leased', 'staged', 'running', 'outputs_stored', 'completed']);
    assertOrdered(timeline);
  });
});

describe('trace context', () => {
  test('a valid traceparent is kept; malformed ones are ignored (a new trace instead)', () => {
    const t = parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
    assert.deepEqual(t, { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', sampled: true });
    for (const bad of [
      undefined,
      '',
      'garbage',
      'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra',
      `00-${'a'.repeat(600)}`,
    ]) {
      assert.equal(parseTraceparent(bad), undefined, String(bad));
    }
    const fresh = traceContextOf('nonsense');
    assert.match(fresh.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    assert.notEqual(newTraceContext().traceId, fresh.traceId);
  });
});

describe('timeline of a real run, over HTTP and in REAPI ExecutedActionMetadata', () => {
  let h: GrpcHarness;
  before(async () => {
    h = await startGrpcHarness({}, { workerSlots: 1, localPlatforms: [X86] });
  });
  after(async () => {
    await h?.close();
  });

  test('phases in order in GET /v1/executions/<operation>, the worker\'s marks in ExecutedActionMetadata, the trace from metadata', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const exe = readFileSync(compileC({ code: '#include <stdio.h>\nint main(void) { puts("timed"); return 0; }\n', name: 'timeline-hello' }, 'x86_64'));
    const root = await uploadTree(h, { hello: { data: exe, executable: true } });
    const { action } = await makeAction(h, { args: ['./hello'], inputRoot: root, doNotCache: true });
    const metadata = new Metadata();
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    metadata.set('traceparent', traceparent);
    const operations: OperationOut[] = await collect(h.clients.exec.execute({ instance_name: '', action_digest: msg(action), skip_cache_lookup: true }, metadata));
    const last = operations[operations.length - 1] as OperationOut;
    const result = responseOf(last).result;
    assert.ok(result);
    const meta = result.execution_metadata as ExecutedActionMetadataOut;
    const ms = (name: keyof ExecutedActionMetadataOut): number => {
      const ts = meta[name] as { seconds: string | number; nanos: number } | null;
      assert.ok(ts, `${String(name)} is set`);
      return Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6);
    };
    const order: Array<keyof ExecutedActionMetadataOut> = [
      'queued_timestamp', 'worker_start_timestamp', 'input_fetch_start_timestamp', 'input_fetch_completed_timestamp', 'execution_start_timestamp',
      'execution_completed_timestamp', 'output_upload_start_timestamp', 'output_upload_completed_timestamp', 'worker_completed_timestamp',
    ];
    const stamps = order.map(ms);
    stamps.forEach((s, i) => assert.ok(i === 0 || s >= (stamps[i - 1] as number), `${String(order[i])} before ${String(order[i - 1])}: ${stamps.join()}`));

    const view = await h.ts.client.getExecution(last.name);
    assert.equal(view.traceId, '0af7651916cd43dd8448eb211c80319c');
    assert.deepEqual(view.timeline.map((e) => e.phase), ['queued', 'leased', 'staged', 'running', 'outputs_stored', 'completed']);
    assertOrdered(view.timeline);
    // The same marks, one door to the other.
    const at = (phase: string): number => view.timeline.find((e) => e.phase === phase)?.atMs ?? -1;
    assert.equal(at('staged'), ms('input_fetch_completed_timestamp'));
    assert.equal(at('running'), ms('execution_start_timestamp'));
    assert.equal(at('outputs_stored'), ms('output_upload_completed_timestamp'));
  });
});
