/**
 * Multi-node scheduling on PostgreSQL: no-op jobs enqueued, dispatched and completed through 2 controllers
 * (target ≥ 1,000/s), against the embedded SQLite mode measured in the same run; and dispatch latency —
 * submission to the lease reaching an idle, long-polling worker — on PostgreSQL (target p50 ≤ 5 ms).
 * The workers are protocol clients that complete every lease at once and send the results with their next
 * lease call, as `remex worker` does: the figure is the scheduler's.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { RemexClient } from '../src/client/remex-client.js';
import { EMPTY_DIGEST, digestOf } from '../src/core/digest.js';
import type { Completion, CompletionSettlement, Lease, WorkerSession } from '../src/scheduler/worker-link.js';
import { PostgresStore } from '../src/store/postgres/postgres-store.js';
import { startPostgres } from '../test/helpers/postgres.js';
import { childPids, cpuMs, fmt, intEnv, parentPid, percentile, startServe, verdict } from './lib.js';
import type { ServeProcess } from './lib.js';

const JOBS = intEnv('BENCH_PG_JOBS', 4_000);
const SUBMITTERS_PER_CONTROLLER = 8;
const WORKERS_PER_CONTROLLER = 4;
const LATENCY_SAMPLES = intEnv('BENCH_PG_LATENCY_SAMPLES', 200);
/** Rounds of the throughput comparison; the figure judged is the median. */
const ROUNDS = intEnv('BENCH_PG_ROUNDS', 3);
/** Jobs through each server before anything is measured. */
const WARMUP_JOBS = 4_000;
const PLATFORM = 'x86_64-linux-cpu';
const EXE = Buffer.from('#!/bin/true\n');
const empty = { digest: EMPTY_DIGEST, inlineBase64: '', totalBytes: 0, truncated: false };
const noopResult = { exitCode: 0, signal: null, timedOut: false, limitExceeded: null, stdout: empty, stderr: empty, outputFiles: [], wallTimeMs: 0, cpuTimeMs: 0, maxRssKb: 0, emulated: false, worker: 'bench-noop' };

interface NoopWorker {
  stop(): Promise<void>;
  completed(): number;
}

async function noopWorker(client: RemexClient, onLease?: (lease: Lease, atMs: number) => void): Promise<NoopWorker> {
  const { workerId, features } = await client.request<WorkerSession>('POST', '/v1/workers', { name: 'bench-noop', platforms: [{ platform: PLATFORM, emulated: false }], slots: 16 });
  // A controller without the combined call (an older remex, for a comparison): a complete call per result.
  const combined = features?.includes('complete-and-lease') ?? false;
  let running = true;
  let done = 0;
  const heartbeat = setInterval(() => void client.request('POST', `/v1/workers/${workerId}/heartbeat`, { draining: false }).catch(() => undefined), 1_000);
  const loop = (async () => {
    // As `remex worker` does: the results of finished leases ride with the next lease call.
    let results: Completion[] = [];
    while (running || results.length > 0) {
      if (!combined) {
        await Promise.all(results.map((c) => client.request('POST', `/v1/workers/${workerId}/complete`, c)));
        done += results.length;
        results = [];
        if (!running) break;
      }
      const body = { max: running ? 16 : 0, waitMs: running ? 500 : 0, ...(results.length > 0 ? { completions: results } : {}) };
      const reply = await client.request<{ leases: Lease[]; settled?: CompletionSettlement[] }>('POST', `/v1/workers/${workerId}/lease`, body);
      const at = performance.now();
      for (const lease of reply.leases) onLease?.(lease, at);
      const committed = (reply.settled ?? []).filter((s) => s.status === 'committed').length;
      if (committed !== results.length) throw new Error(`only ${committed} of ${results.length} results committed`);
      done += committed;
      results = reply.leases.map((lease) => ({ jobId: lease.jobId, attempt: lease.attempt, outcome: { state: 'completed', result: noopResult } }));
    }
  })();
  return {
    completed: () => done,
    stop: async () => {
      running = false;
      clearInterval(heartbeat);
      await loop;
    },
  };
}

/** Jobs per second through these controllers, submissions and completions spread over all of them. */
async function throughput(controllers: ServeProcess[], jobs = JOBS): Promise<number> {
  const clients = controllers.map((c) => new RemexClient(c.url));
  const exe = digestOf(EXE);
  // Each controller here keeps its own filesystem CAS (the bench measures scheduling, not blob sharing).
  await Promise.all(clients.map((c) => c.putBlob(exe, EXE)));
  const workers = await Promise.all(clients.flatMap((c) => Array.from({ length: WORKERS_PER_CONTROLLER }, () => noopWorker(c))));
  let next = 0;
  const start = performance.now();
  await Promise.all(
    clients.flatMap((c) =>
      Array.from({ length: SUBMITTERS_PER_CONTROLLER }, async () => {
        while (next < jobs) {
          const i = next++;
          await c.submit({ executable: exe, platform: PLATFORM, args: [String(i)], doNotCache: true });
        }
      }),
    ),
  );
  while (workers.reduce((n, w) => n + w.completed(), 0) < jobs) await new Promise((r) => setTimeout(r, 5));
  const rate = jobs / ((performance.now() - start) / 1000);
  await Promise.all(workers.map((w) => w.stop()));
  return rate;
}

async function dispatchLatency(controllers: ServeProcess[]): Promise<number[]> {
  const [a, b] = controllers.map((c) => new RemexClient(c.url)) as [RemexClient, RemexClient];
  const exe = digestOf(EXE);
  const submittedAt = new Map<string, number>();
  const samples: number[] = [];
  let resolveSeen: (() => void) | undefined;
  // The idle worker waits on controller B; jobs are submitted to A: the wake-up crosses controllers.
  const worker = await noopWorker(b, (lease, at) => {
    const t0 = submittedAt.get(lease.spec.command.arguments[1] ?? '');
    if (t0 !== undefined) samples.push(at - t0);
    resolveSeen?.();
  });
  for (let i = 0; i < LATENCY_SAMPLES + 10; i++) {
    const seen = new Promise<void>((r) => (resolveSeen = r));
    const tag = `lat${i}`;
    submittedAt.set(tag, performance.now());
    await a.submit({ executable: exe, platform: PLATFORM, args: [tag], doNotCache: true });
    await seen;
  }
  await worker.stop();
  return samples.slice(10);
}

/**
 * The floor: no-op jobs through a naive loop straight against PostgreSQL, on remex's own schema and
 * statements' shape (insert one queued row; claim the head of the queue with SKIP LOCKED; complete it),
 * 16 loops at once, no HTTP, no batching.
 */
async function naiveLoop(url: string, round: number): Promise<number> {
  const schema = `bench_naive_${round}`;
  const store = await PostgresStore.open({ url, schema, poolSize: 1 });
  await store.close();
  const pool = new pg.Pool({ connectionString: url, max: 16 });
  const jobs = `"${schema}".jobs`;
  const spec = JSON.stringify({ platform: PLATFORM, command: { arguments: ['noop'] } });
  const result = JSON.stringify(noopResult);
  let next = 0;
  const start = performance.now();
  try {
    await Promise.all(
      Array.from({ length: 16 }, async (_, loop) => {
        while (next < JOBS) {
          const i = next++;
          const now = Date.now();
          await pool.query(
            `INSERT INTO ${jobs} (id, instance, action_hash, action_size, platform, state, priority, mergeable, spec, created_at, queued_at)
              VALUES ($1, '', $2, 0, $3, 'queued', 0, false, $4, $5, $5)`,
            [`naive-${i}`, String(i).padStart(64, '0'), PLATFORM, spec, now],
          );
          const { rows } = await pool.query<{ id: string }>(
            `WITH head AS (SELECT seq FROM ${jobs} WHERE state = 'queued' AND platform = $1 ORDER BY priority, seq LIMIT 1 FOR UPDATE SKIP LOCKED)
              UPDATE ${jobs} AS j SET state = 'running', attempt = j.attempt + 1, lease_owner = $2, lease_expires_at = $3, started_at = $3
              FROM head WHERE j.seq = head.seq RETURNING j.id`,
            [PLATFORM, `naive-worker-${loop}`, now],
          );
          for (const row of rows) {
            await pool.query(`UPDATE ${jobs} SET state = 'completed', result = $1, completed_at = $2, lease_owner = NULL WHERE id = $3 AND state = 'running'`, [
              result,
              now,
              row.id,
            ]);
          }
        }
      }),
    );
    return JOBS / ((performance.now() - start) / 1000);
  } finally {
    await pool.end();
  }
}

/** Transactions committed in the database so far (statements outside a transaction count one each). */
async function commits(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string }>('SELECT xact_commit AS n FROM pg_stat_database WHERE datname = current_database()');
    return Number(rows[0]?.n ?? 0);
  } finally {
    await client.end();
  }
}

/** The PostgreSQL server's processes: the postmaster and everything it forked (backends, walwriter …). */
async function postgresPids(url: string): Promise<number[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const postmaster = parentPid(rows[0]?.pid ?? 0);
    if (postmaster === undefined) throw new Error('cannot find the PostgreSQL server process (is it on this machine?)');
    return [postmaster, ...childPids(postmaster)];
  } finally {
    await client.end();
  }
}

/** CPU used by these processes while `fn` runs, in ms (processes that exit meanwhile are not counted). */
async function cpuDuring<T>(pids: () => Promise<number[]> | number[], fn: () => Promise<T>): Promise<{ out: T; ms: number }> {
  const before = new Map((await pids()).map((pid) => [pid, cpuMs(pid)]));
  const out = await fn();
  let ms = 0;
  for (const pid of await pids()) ms += cpuMs(pid) - (before.get(pid) ?? 0);
  return { out, ms };
}

export async function benchPostgresDispatch(): Promise<boolean> {
  const scratch = mkdtempSync(join(tmpdir(), 'remex-bench-pg-'));
  const pg = await startPostgres();
  const common = ['--workers', '0', '--accept-platform', PLATFORM, '--no-grpc'];
  const started: ServeProcess[] = [];
  const serve = async (args: string[]): Promise<ServeProcess> => {
    const p = await startServe(args);
    started.push(p);
    return p;
  };
  try {
    const sqlite = await serve([...common, '--data', join(scratch, 'sqlite')]);
    const controllers = [await serve([...common, '--database', pg.url, '--data', join(scratch, 'a')]), await serve([...common, '--database', pg.url, '--data', join(scratch, 'b')])];
    const controllerPids = controllers.map((c) => c.child.pid ?? 0);
    // Servers measured warm, as they run: code compiled, connections open, statements prepared.
    await throughput([sqlite], WARMUP_JOBS);
    await throughput(controllers, WARMUP_JOBS);
    // Rounds of SQLite, the floor and PostgreSQL back to back: on a shared machine the load drifts, and
    // each round's ratios compare figures taken within seconds of each other.
    const rounds: Array<{ sqlite: number; naive: number; pg: number }> = [];
    const cpu = { sqlite: 0, controllers: 0, database: 0, client: 0 };
    let commitsPerJob = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const { out: sqliteRate, ms: sqliteCpuMs } = await cpuDuring(() => [sqlite.child.pid ?? 0], () => throughput([sqlite]));
      const naiveRate = await naiveLoop(pg.url, round);
      const commitsBefore = await commits(pg.url);
      const { out: measured, ms: controllersCpuMs } = await cpuDuring(
        () => controllerPids,
        () => cpuDuring(() => postgresPids(pg.url), () => cpuDuring(() => [process.pid], () => throughput(controllers))),
      );
      const { out: inner, ms: pgCpuMs } = measured;
      const { out: pgRate, ms: clientCpuMs } = inner;
      // The statistics collector reports with a delay of up to a second.
      await new Promise((r) => setTimeout(r, 1_500));
      commitsPerJob += ((await commits(pg.url)) - commitsBefore) / JOBS / ROUNDS;
      rounds.push({ sqlite: sqliteRate, naive: naiveRate, pg: pgRate });
      cpu.sqlite += sqliteCpuMs / ROUNDS;
      cpu.controllers += controllersCpuMs / ROUNDS;
      cpu.database += pgCpuMs / ROUNDS;
      cpu.client += clientCpuMs / ROUNDS;
    }
    const latency = await dispatchLatency(controllers);

    const p50 = percentile(latency, 50);
    const median = (values: number[]): number => percentile(values, 50);
    const pgRate = median(rounds.map((r) => r.pg));
    const all = (pick: (r: { sqlite: number; naive: number; pg: number }) => number, digits = 0): string => rounds.map((r) => pick(r).toFixed(digits)).join(', ');
    console.log(
      `no-op jobs (${JOBS} per round, ${ROUNDS} rounds after ${WARMUP_JOBS} to warm up; submit → lease → complete;` +
        ` ${SUBMITTERS_PER_CONTROLLER} submitters and ${WORKERS_PER_CONTROLLER} workers per controller)`,
    );
    console.log(`  embedded SQLite, 1 controller: ${median(rounds.map((r) => r.sqlite)).toFixed(0)}/s  [${all((r) => r.sqlite)}]`);
    console.log(`  PostgreSQL, 2 controllers:     ${pgRate.toFixed(0)}/s  [${all((r) => r.pg)}] (target ≥ 1000/s, median) ${verdict(pgRate >= 1000)}`);
    console.log(`  ratio to SQLite, per round: ${all((r) => r.pg / r.sqlite, 2)} (median ${median(rounds.map((r) => r.pg / r.sqlite)).toFixed(2)})`);
    console.log(
      `  (floor: a naive insert/claim/complete loop straight against PostgreSQL, 16 at once: ${all((r) => r.naive)}/s;` +
        ` remex of it, per round: ${all((r) => r.pg / r.naive, 2)})`,
    );
    console.log(`  (PostgreSQL transactions per job, all controllers: ${commitsPerJob.toFixed(2)})`);
    const perJob = (ms: number) => `${((ms / JOBS) * 1000).toFixed(0)} µs`;
    console.log(
      `  CPU per job (mean of rounds): SQLite controller ${perJob(cpu.sqlite)}; PostgreSQL controllers ${perJob(cpu.controllers)} + PostgreSQL server ${perJob(cpu.database)}` +
        ` + this bench's clients and no-op workers ${perJob(cpu.client)} (all on this machine's ${availableParallelism()} cores)`,
    );
    console.log(`dispatch latency on PostgreSQL, submit on A → idle worker on B (${latency.length} samples)`);
    console.log(`  p50 ${fmt(p50)} (target ≤ 5 ms) ${verdict(p50 <= 5)}; p99 ${fmt(percentile(latency, 99))}`);
    return pgRate >= 1000 && p50 <= 5;
  } finally {
    // Every controller goes, also when a measurement threw.
    await Promise.all(started.map((p) => p.stop()));
    await pg.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}
