/**
 * The dashboard under load (issue 16): the jobs page's first page with 100,000 jobs in the store (server
 * time, Fastify's inject: no network, no browser), and the live feed at 500 executions/s watched by the
 * real dashboard in Chromium — the lag between the last execution's commit and its row showing completed.
 * Floors from the same run: /healthz's server time, and the lag of one execution on an idle server.
 *
 *   npm run bench -- dashboard      (BENCH_DASHBOARD_JOBS, BENCH_FEED_RATE, BENCH_FEED_SECONDS to change)
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { chromium } from 'playwright-core';
import type { Page } from 'playwright-core';
import { digestOf, EMPTY_DIGEST } from '../src/core/digest.js';
import { DEFAULT_LIMITS } from '../src/core/limits.js';
import type { ExecutionSpec, RunReport } from '../src/core/model.js';
import { DEFAULT_MAX_BLOB_BYTES, DEFAULT_POLICY, startServer } from '../src/server/server.js';
import type { RunningServer } from '../src/server/server.js';
import { fmt, intEnv, percentile, verdict } from './lib.js';

const JOBS = intEnv('BENCH_DASHBOARD_JOBS', 100_000);
const RATE = intEnv('BENCH_FEED_RATE', 500);
const SECONDS = intEnv('BENCH_FEED_SECONDS', 10);
const PLATFORM = 'x86_64-linux-cpu';
const CHROMIUM = process.env.REMEX_CHROMIUM ?? '/usr/bin/chromium';
const FIRST_PAGE_TARGET_MS = 100;
const LAG_TARGET_MS = 1000;

function spec(i: number): ExecutionSpec {
  return {
    platform: PLATFORM,
    command: { arguments: ['./bench', String(i)], environmentVariables: [], outputPaths: [], workingDirectory: '' },
    inputRootDigest: EMPTY_DIGEST,
    stdinDigest: null,
    timeoutMs: 60_000,
    limits: { ...DEFAULT_LIMITS },
    doNotCache: true,
  };
}

const text = 'done\n';
const REPORT: RunReport = {
  exitCode: 0,
  signal: null,
  timedOut: false,
  limitExceeded: null,
  stdout: { digest: digestOf(text), inlineBase64: Buffer.from(text).toString('base64'), totalBytes: text.length, truncated: false },
  stderr: { digest: EMPTY_DIGEST, inlineBase64: '', totalBytes: 0, truncated: false },
  outputFiles: [],
  wallTimeMs: 3,
  cpuTimeMs: 1,
  maxRssKb: 1024,
  emulated: false,
  worker: 'bench-worker',
};

async function submit(server: RunningServer, i: number): Promise<string> {
  const { job } = await server.scheduler.submit({ actionDigest: digestOf(`bench ${i}`), spec: spec(i), name: `bench-${i % 100}`, labels: { suite: i % 2 ? 'odd' : 'even' } });
  return job.id;
}

/** Leases every queued job to the worker and completes it, as a worker with many slots would. */
async function drainQueue(server: RunningServer, workerId: string): Promise<void> {
  const s = server.scheduler;
  for (;;) {
    const leases = await s.lease(workerId, 1000, 0);
    if (leases.length === 0) return;
    for (const l of leases) await s.complete(workerId, { jobId: l.jobId, attempt: l.attempt, outcome: { state: 'completed', result: REPORT } });
  }
}

async function serverTimes(server: RunningServer, url: string, n: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const res = await server.http.inject({ method: 'GET', url });
    times.push(performance.now() - t);
    if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode} ${res.body}`);
  }
  return times;
}

/** When (epoch ms) the page shows job `id` completed. */
async function seenCompleted(page: Page, id: string): Promise<number> {
  const selector = `tr[data-id="${id}"][data-state="completed"]`;
  await page.waitForSelector(selector, { timeout: 60_000 });
  return page.evaluate((sel) => {
    // The row's arrival was stamped by the observer installed before the run.
    const stamps = (globalThis as unknown as { seenAt: Map<string, number> }).seenAt;
    return stamps.get(sel) ?? Date.now();
  }, selector);
}

/** Stamps the time a selector first matches, from a MutationObserver in the page (no polling delay). */
async function watchFor(page: Page, id: string): Promise<void> {
  const selector = `tr[data-id="${id}"][data-state="completed"]`;
  await page.evaluate((sel) => {
    const g = globalThis as unknown as { seenAt?: Map<string, number>; document: { querySelector(s: string): unknown; body: unknown }; MutationObserver: new (cb: () => void) => { observe(n: unknown, o: object): void; disconnect(): void } };
    g.seenAt ??= new Map();
    const stamps = g.seenAt;
    const observer = new g.MutationObserver(() => {
      if (g.document.querySelector(sel)) {
        stamps.set(sel, Date.now());
        observer.disconnect();
      }
    });
    observer.observe(g.document.body, { subtree: true, childList: true, attributes: true });
  }, selector);
}

export async function benchDashboard(): Promise<boolean> {
  const scratch = mkdtempSync(join(tmpdir(), 'remex-bench-dashboard-'));
  const server = await startServer({
    host: '127.0.0.1',
    port: 0,
    dataDir: join(scratch, 'data'),
    workerSlots: 0,
    maxBlobBytes: DEFAULT_MAX_BLOB_BYTES,
    policy: DEFAULT_POLICY,
    scheduler: { acceptPlatforms: [PLATFORM], workerSilenceMs: 600_000 },
    logger: pino({ level: 'warn' }),
  });
  const browser = existsSync(CHROMIUM) ? await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] }) : undefined;
  try {
    const { workerId } = await server.scheduler.register({ name: 'bench-worker', platforms: [{ platform: PLATFORM, emulated: false }], slots: 1000 });
    const fillStart = performance.now();
    for (let done = 0; done < JOBS; done += 1000) {
      for (let i = done; i < Math.min(JOBS, done + 1000); i++) await submit(server, i);
      await drainQueue(server, workerId);
    }
    console.log(`  filled the store with ${JOBS} completed executions in ${((performance.now() - fillStart) / 1000).toFixed(1)} s`);

    await serverTimes(server, '/v1/executions?limit=50', 20); // warm-up
    const floor = await serverTimes(server, '/healthz', 50);
    const first = await serverTimes(server, '/v1/executions?limit=50', 50);
    const byState = await serverTimes(server, '/v1/executions?state=completed&platform=x86_64-linux-cpu&limit=50', 20);
    const byLabel = await serverTimes(server, '/v1/executions?label=suite=odd&limit=50', 20);
    const p95 = percentile(first, 95);
    console.log(`jobs page with ${JOBS} executions in the store (server time, 50 a page)`);
    console.log(`  /healthz (floor): p50 ${fmt(percentile(floor, 50))}, p95 ${fmt(percentile(floor, 95))}`);
    console.log(`  first page: p50 ${fmt(percentile(first, 50))}, p95 ${fmt(p95)} (${(percentile(first, 50) / percentile(floor, 50)).toFixed(1)}× the floor) — target ≤ ${FIRST_PAGE_TARGET_MS} ms ${verdict(p95 <= FIRST_PAGE_TARGET_MS)}`);
    console.log(`  first page by state and platform: p50 ${fmt(percentile(byState, 50))}; by label: p50 ${fmt(percentile(byLabel, 50))} (for information)`);
    let met = p95 <= FIRST_PAGE_TARGET_MS;

    if (!browser) {
      console.log(`  live feed: ${CHROMIUM} is missing — not measured ${verdict(false)}`);
      return false;
    }
    const page = await browser.newPage();
    await page.goto(`${server.url}/#/jobs`);
    await page.waitForSelector('#live-state.ok');
    await page.waitForSelector('#jobs tbody tr');

    // The floor: one execution on an idle server.
    const idleLags: number[] = [];
    for (let i = 0; i < 5; i++) {
      const id = await submit(server, JOBS + i);
      await watchFor(page, id);
      await drainQueue(server, workerId);
      const committedAt = Date.now();
      idleLags.push((await seenCompleted(page, id)) - committedAt);
    }

    // The load: RATE executions a second, for SECONDS (in ticks of at most 20 ms); the last one is watched for.
    const total = RATE * SECONDS;
    const base = JOBS + 10;
    const started = performance.now();
    let issued = 0;
    while (issued < total - 1) {
      const due = Math.min(total - 1, Math.floor(((performance.now() - started) / 1000) * RATE));
      for (; issued < due; issued++) await submit(server, base + issued);
      await drainQueue(server, workerId);
      // Sleep only when ahead of the schedule: a generator that falls behind catches up at once.
      if (issued >= Math.floor(((performance.now() - started) / 1000) * RATE)) await new Promise((r) => setTimeout(r, 20));
    }
    const lastId = await submit(server, base + issued);
    await watchFor(page, lastId);
    await drainQueue(server, workerId);
    const committedAt = Date.now();
    const elapsedS = (performance.now() - started) / 1000;
    const seenAt = await seenCompleted(page, lastId);
    const lag = seenAt - committedAt;
    const rate = total / elapsedS;
    console.log(`live feed: ${total} executions at ${rate.toFixed(0)}/s (asked ${RATE}/s), watched by the dashboard's jobs page in Chromium`);
    console.log(`  idle lag of one execution (floor): median ${fmt(percentile(idleLags, 50))}`);
    console.log(`  lag of the last one under load: ${fmt(lag)} (${(lag / Math.max(1, percentile(idleLags, 50))).toFixed(1)}× the floor) — target ≤ ${LAG_TARGET_MS} ms at ≥ ${RATE}/s ${verdict(lag <= LAG_TARGET_MS && rate >= RATE * 0.95)}`);
    met = met && lag <= LAG_TARGET_MS && rate >= RATE * 0.95;
    return met;
  } finally {
    await browser?.close();
    await server.close();
    rmSync(scratch, { recursive: true, force: true });
  }
}

