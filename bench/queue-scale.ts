/**
 * 10,000 queued jobs: server RSS, and enqueue and dispatch times as the queue grows and drains. Flat means
 * the last thousand cost about what the first thousand did (ratio near 1); the floor is the same
 * server's own first batch, measured in the same run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RemexClient } from '../src/client/remex-client.js';
import { EMPTY_DIGEST, digestOf } from '../src/core/digest.js';
import type { Lease } from '../src/scheduler/worker-link.js';
import { fmt, intEnv, rssMb, startServe, verdict } from './lib.js';

const JOBS = intEnv('BENCH_QUEUE_JOBS', 10_000);
const BATCH = 1_000;
const IN_FLIGHT = 8;

async function timedBatches(total: number, inFlight: number, op: (i: number) => Promise<void>): Promise<number[]> {
  const perBatchMs: number[] = [];
  for (let start = 0; start < total; start += BATCH) {
    const t = performance.now();
    let next = start;
    const end = Math.min(total, start + BATCH);
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next < end) await op(next++);
      }),
    );
    perBatchMs.push((performance.now() - t) / (end - start));
  }
  return perBatchMs;
}

export async function benchQueueScale(): Promise<boolean> {
  const scratch = mkdtempSync(join(tmpdir(), 'remex-bench-queue-'));
  const serve = await startServe(['--workers', '0', '--accept-platform', 'x86_64-linux-cpu', '--data', join(scratch, 'data')]);
  try {
    const client = new RemexClient(serve.url);
    const exe = digestOf('#!/bin/true\n');
    await client.putBlob(exe, Buffer.from('#!/bin/true\n'));
    const session = await client.request<{ workerId: string }>('POST', '/v1/workers', {
      name: 'bench-noop',
      platforms: [{ platform: 'x86_64-linux-cpu', emulated: false }],
      slots: IN_FLIGHT,
    });
    // A real worker heartbeats; without it the server would declare this one gone mid-bench.
    const heartbeat = setInterval(() => {
      void client.request('POST', `/v1/workers/${session.workerId}/heartbeat`, { draining: false }).catch(() => undefined);
    }, 1_000);
    const empty = { digest: EMPTY_DIGEST, inlineBase64: '', totalBytes: 0, truncated: false };
    const enqueueOne = async (i: number): Promise<void> => {
      await client.submit({ executable: exe, platform: 'x86_64-linux-cpu', args: [String(i)] });
    };
    const dispatchOne = async (): Promise<void> => {
      const { leases } = await client.request<{ leases: Lease[] }>('POST', `/v1/workers/${session.workerId}/lease`, { max: 1, waitMs: 1000 });
      for (const lease of leases) {
        await client.request('POST', `/v1/workers/${session.workerId}/complete`, {
          jobId: lease.jobId,
          attempt: lease.attempt,
          outcome: {
            state: 'completed',
            result: { exitCode: 0, signal: null, timedOut: false, limitExceeded: null, stdout: empty, stderr: empty, outputFiles: [], wallTimeMs: 0, cpuTimeMs: 0, maxRssKb: 0, emulated: false, worker: 'bench-noop' },
          },
        });
      }
    };
    // Warm both paths (JIT, statement caches) on a small queue first, so the first measured batch is not
    // a warm-up in disguise.
    await timedBatches(BATCH, IN_FLIGHT, (i) => enqueueOne(-1 - i));
    await timedBatches(BATCH, IN_FLIGHT, dispatchOne);

    const rssStart = rssMb(serve.child.pid as number);
    const enqueue = await timedBatches(JOBS, IN_FLIGHT, enqueueOne);
    const rssQueued = rssMb(serve.child.pid as number);
    const dispatch = await timedBatches(JOBS, IN_FLIGHT, dispatchOne);
    clearInterval(heartbeat);
    const rssEnd = rssMb(serve.child.pid as number);
    const first = (xs: number[]) => xs[0] as number;
    const last = (xs: number[]) => xs[xs.length - 1] as number;
    const enqueueRatio = last(enqueue) / first(enqueue);
    const dispatchRatio = first(dispatch) / last(dispatch);
    console.log(`  per-batch enqueue ms/job: ${enqueue.map((x) => x.toFixed(2)).join(" ")}`);
    console.log(`  per-batch dispatch ms/job: ${dispatch.map((x) => x.toFixed(2)).join(" ")}`);
    console.log(`queue of ${JOBS} jobs (batches of ${BATCH}, ${IN_FLIGHT} requests in flight)`);
    console.log(`  enqueue per job: first batch ${fmt(first(enqueue))}, last batch ${fmt(last(enqueue))}: ratio ${enqueueRatio.toFixed(2)} (flat ≤ 1.5) ${verdict(enqueueRatio <= 1.5)}`);
    console.log(`  dispatch+complete per job: at ${JOBS} queued ${fmt(first(dispatch))}, at ${BATCH} queued ${fmt(last(dispatch))}: ratio ${dispatchRatio.toFixed(2)} (flat ≤ 1.5) ${verdict(dispatchRatio <= 1.5)}`);
    console.log(`  server RSS: start ${rssStart.toFixed(0)} MB, ${JOBS} queued ${rssQueued.toFixed(0)} MB, drained ${rssEnd.toFixed(0)} MB (target < 300 MB) ${verdict(rssQueued < 300 && rssEnd < 300)}`);
    return enqueueRatio <= 1.5 && dispatchRatio <= 1.5 && rssQueued < 300 && rssEnd < 300;
  } finally {
    await serve.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}
