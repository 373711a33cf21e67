/**
 * Beyond one machine, killed for real: controllers (`remex serve --workers 0`) sharing a real PostgreSQL and
 * an S3-compatible bucket, `remex worker` processes joining over HTTP, SIGKILLs at random. Nothing is lost:
 * every execution ends completed, with the result of its own program, committed once.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RemexClient } from '../../src/client/remex-client.js';
import type { ExecutionView } from '../../src/api/execution-view.js';
import type { Digest } from '../../src/core/digest.js';
import { digestOf } from '../../src/core/digest.js';
import { postgresUnavailable, startPostgres } from '../helpers/postgres.js';
import type { TestPostgres } from '../helpers/postgres.js';
import { eventually, killHard, spawnRemex, startServeProcess, waitForOutput } from '../helpers/processes.js';
import type { RemexProcess } from '../helpers/processes.js';
import { startS3 } from '../helpers/s3.js';
import type { TestS3 } from '../helpers/s3.js';
import { IN_CI, compileC, requireTools } from '../helpers/tools.js';

// Short enough that killed workers' jobs come back quickly; long enough that a worker stalled by this
// heavily loaded 2-core machine keeps its leases. Random kills can hit one job many times: 10 attempts.
const LEASE_SECONDS = '3';
const MAX_ATTEMPTS = '10';

interface Cluster {
  pg: TestPostgres;
  s3: TestS3;
  dir: string;
  controllers: Array<{ proc: RemexProcess; url: string }>;
  workers: RemexProcess[];
}

let cluster: Cluster | undefined;

function controllerArgs(c: Cluster, name: string): string[] {
  return ['--database', c.pg.url, '--blobs', c.s3.url('cas/'), '--workers', '0', '--lease-timeout', LEASE_SECONDS, '--max-attempts', MAX_ATTEMPTS, '--data', join(c.dir, name)];
}

function s3Env(c: Cluster): Record<string, string> {
  const creds = c.s3.credentials as { accessKeyId: string; secretAccessKey: string } | undefined;
  return creds ? { AWS_ACCESS_KEY_ID: creds.accessKeyId, AWS_SECRET_ACCESS_KEY: creds.secretAccessKey, AWS_REGION: 'us-east-1' } : {};
}

async function startController(c: Cluster, name: string): Promise<{ proc: RemexProcess; url: string }> {
  return startServeProcess(controllerArgs(c, name), s3Env(c));
}

function startWorker(c: Cluster, name: string, servers: string[]): RemexProcess {
  return spawnRemex(['worker', '--server', servers.join(','), '--slots', '2', '--name', name, '--work-dir', join(c.dir, `w-${name}-${Date.now()}`), '--platform', 'x86_64-linux-cpu']);
}

async function upload(client: RemexClient, path: string): Promise<Digest> {
  const bytes = readFileSync(path);
  const d = digestOf(bytes);
  await client.putBlob(d, bytes);
  return d;
}

/**
 * The execution once it has ended. On a timeout the error says where it stood and what the cluster's
 * processes last printed, since a stuck execution cannot be examined after the test has torn them down.
 */
async function finalState(client: RemexClient, id: string, timeoutMs: number): Promise<ExecutionView> {
  let last: ExecutionView | undefined;
  try {
    return await eventually(async () => {
      last = await client.getExecution(id);
      return last.state === 'queued' || last.state === 'running' ? undefined : last;
    }, timeoutMs, `execution ${id} to finish`);
  } catch (err) {
    const procs = cluster ? [...cluster.controllers.map((c) => c.proc), ...cluster.workers] : [];
    const tails = procs.map((p) => `--- remex ${p.child.spawnargs[2]} pid ${p.child.pid}:\n${p.output().slice(-4000)}`).join('\n');
    throw new Error(`${(err as Error).message}; last seen: ${JSON.stringify(last)}\n${tails}`, { cause: err });
  }
}

describe('multi-node: controllers on PostgreSQL + S3, workers over the network', () => {
  before(async () => {
    const missing = postgresUnavailable();
    if (missing) {
      if (IN_CI) throw new Error(missing);
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'remex-multinode-'));
    cluster = { pg: await startPostgres(), s3: await startS3(), dir, controllers: [], workers: [] };
  });
  after(async () => {
    if (!cluster) return;
    await Promise.all([...cluster.workers, ...cluster.controllers.map((c) => c.proc)].map((p) => killHard(p)));
    await cluster.pg.stop();
    await cluster.s3.stop();
    rmSync(cluster.dir, { recursive: true, force: true });
  });

  test('1,000 executions through 2 controllers and 4 workers killed at random: none lost, each committed once', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc') || !cluster) return;
    const c = cluster;
    c.controllers.push(await startController(c, 'a'), await startController(c, 'b'));
    const urls = c.controllers.map((x) => x.url);
    for (let i = 0; i < 4; i++) c.workers.push(startWorker(c, `w${i}`, i % 2 === 0 ? urls : [...urls].reverse()));
    await Promise.all(c.workers.map((w) => waitForOutput(w, /remex worker/)));

    const clients = urls.map((u) => new RemexClient(u));
    const exe = await upload(clients[0] as RemexClient, compileC({ file: 'programs/echo.c' }, 'x86_64'));
    const ids: string[] = [];
    const submitting = (async () => {
      for (let i = 0; i < 1000; i += 20) {
        const batch = await Promise.all(
          Array.from({ length: 20 }, (_, j) => (clients[(i + j) % 2] as RemexClient).submit({ executable: exe, args: [`n${i + j}`], doNotCache: true })),
        );
        ids.push(...batch.map((b) => b.id));
      }
    })();
    // Chaos: every 1.5 s a random worker is SIGKILLed and replaced, while submissions and runs go on.
    let kills = 0;
    const chaos = setInterval(() => {
      const i = Math.floor(Math.random() * c.workers.length);
      const victim = c.workers[i] as RemexProcess;
      victim.child.kill('SIGKILL');
      kills++;
      c.workers[i] = startWorker(c, `w${i}r${kills}`, kills % 2 === 0 ? urls : [...urls].reverse());
    }, 1_500);
    try {
      await submitting;
      await eventually(async () => {
        const pending = (await clients[0]!.platforms()).find((p) => p.platform === 'x86_64-linux-cpu');
        return pending && pending.queued === 0 && pending.running === 0 ? true : undefined;
      }, 240_000, 'the queue to drain');
    } finally {
      clearInterval(chaos);
    }
    assert.ok(kills >= 3, `only ${kills} kills happened`);
    assert.equal(ids.length, 1000);
    for (let i = 0; i < ids.length; i++) {
      const v = await (clients[i % 2] as RemexClient).getExecution(ids[i] as string);
      assert.equal(v.state, 'completed', `${v.id}: ${v.state} ${JSON.stringify(v.failure)}`);
      assert.equal(v.code, 0);
      assert.deepEqual(v.stdout, [{ text: `arg1=n${i}` }], `execution ${i} carries its own program's result`);
    }
    // Metrics: each controller counts the results it committed (together, each execution once); the fleet
    // gauges and the store's connection pool show on either.
    const scrapes = await Promise.all(urls.map(async (u) => (await fetch(`${u}/metrics`)).text()));
    const completed = scrapes.map((text) => Number(/^remex_executions_total\{platform="x86_64-linux-cpu",outcome="completed"\} (\d+)$/m.exec(text)?.[1] ?? 0));
    assert.equal(completed.reduce((a, b) => a + b, 0), 1000, `completed per controller: ${completed.join(', ')}`);
    for (const text of scrapes) {
      assert.match(text, /^remex_jobs_queued\{platform="x86_64-linux-cpu"\} 0$/m);
      assert.match(text, /^remex_store_connections\{state="idle"\} \d+$/m);
    }
    // Each controller heard job changes of the other over NOTIFY, and measured how late they came.
    for (const text of scrapes) assert.match(text, /^remex_event_bus_lag_seconds_count [1-9]\d*$/m);
  });

  test('SIGKILL of one controller mid-run: its workers move to the other, every client gets its result', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc') || !cluster) return;
    const c = cluster;
    if (c.controllers.length < 2) c.controllers.push(await startController(c, 'a2'), await startController(c, 'b2'));
    const [a, b] = c.controllers as [{ proc: RemexProcess; url: string }, { proc: RemexProcess; url: string }];
    const both = new RemexClient(`${a.url},${b.url}`);
    const exe = await upload(both, compileC({ file: 'programs/sleepy.c' }, 'x86_64'));
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push((await both.submit({ executable: exe, args: [String(300 + i)], doNotCache: true })).id);
    await eventually(async () => ((await both.platforms()).find((p) => p.platform === 'x86_64-linux-cpu')?.running ?? 0) > 0 || undefined, 30_000, 'runs to start');
    await killHard(a.proc);
    for (const id of ids) {
      const v = await finalState(both, id, 60_000);
      assert.equal(v.state, 'completed', `${id}: ${JSON.stringify(v.failure)}`);
      assert.equal(v.code, 0);
    }
    c.controllers.splice(0, 1, await startController(c, 'a3'));
  });

  test('a PostgreSQL restart during a run: controllers recover and nothing is lost', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc') || !cluster) return;
    const c = cluster;
    if (!c.pg.restart) return t.diagnostic('external PostgreSQL: restart not possible here');
    const client = new RemexClient(c.controllers.map((x) => x.url).join(','));
    const exe = await upload(client, compileC({ file: 'programs/sleepy.c' }, 'x86_64'));
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push((await client.submit({ executable: exe, args: [String(100 + i)], doNotCache: true })).id);
    await c.pg.restart();
    for (let i = 0; i < 10; i++) ids.push(await eventually(async () => (await client.submit({ executable: exe, args: [String(50 + i)], doNotCache: true })).id, 30_000, 'submit after restart'));
    for (const id of ids) {
      const v = await finalState(client, id, 90_000);
      assert.equal(v.state, 'completed', `${id}: ${JSON.stringify(v.failure)}`);
    }
  });

  test("a running job's earlier log is read on a controller that did not take it in (decision 0043)", async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc') || !cluster) return;
    const c = cluster;
    // No worker knows B: whoever runs the job sends its log elsewhere.
    const [a, b] = [await startController(c, 'logs-a'), await startController(c, 'logs-b')];
    c.controllers.push(a, b);
    const worker = startWorker(c, 'logs-w', [a.url]);
    c.workers.push(worker);
    await waitForOutput(worker, /remex worker/);
    const [onA, onB] = [new RemexClient(a.url), new RemexClient(b.url)];
    const exe = await upload(onA, compileC({ file: 'programs/log-lines.c' }, 'x86_64'));
    const job = await onA.submit({ executable: exe, args: ['6', '150', 'hold'], logs: true, doNotCache: true });
    const want = Array.from({ length: 6 }, (_, i) => `line ${i}\n`).join('');
    let seen = '';
    for await (const frame of onA.logs(job.id, { follow: true, stream: 'stdout' })) {
      if (frame.event === 'log') seen += frame.data;
      if (seen === want) break;
    }
    // The program holds after its lines: still running, and B has them from the shared store.
    const stored: string[] = [];
    for await (const frame of onB.logs(job.id, { stream: 'stdout' })) if (frame.event === 'log') stored.push(frame.data);
    assert.equal(stored.join(''), want);
    assert.equal((await onB.getExecution(job.id)).state, 'running');
    await onB.cancel(job.id);
    const frames = [];
    for await (const frame of onB.logs(job.id, { follow: true, stream: 'stdout' })) frames.push(frame);
    assert.equal(frames.map((f) => (f.event === 'log' ? f.data : '')).join(''), want, 'each line once');
    assert.equal(frames.at(-1)?.event, 'end');
  });
});

test('embedded mode: SIGKILL remex serve with 500 jobs queued or running; after restart all complete', async (t) => {
  if (!requireTools(t, 'bwrap', 'gcc')) return;
  const dataDir = mkdtempSync(join(tmpdir(), 'remex-restart500-'));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const first = await startServeProcess(['--data', dataDir, '--workers', '2']);
  const client = new RemexClient(first.url);
  const exe = await upload(client, compileC({ file: 'programs/echo.c' }, 'x86_64'));
  const ids: string[] = [];
  for (let i = 0; i < 500; i += 50) {
    const batch = await Promise.all(Array.from({ length: 50 }, (_, j) => client.submit({ executable: exe, args: [`e${i + j}`], doNotCache: true })));
    ids.push(...batch.map((b) => b.id));
  }
  await killHard(first.proc);
  const second = await startServeProcess(['--data', dataDir, '--workers', '2']);
  t.after(() => killHard(second.proc));
  const client2 = new RemexClient(second.url);
  for (let i = 0; i < ids.length; i++) {
    const v = await finalState(client2, ids[i] as string, 120_000);
    assert.equal(v.state, 'completed', `${ids[i]}: ${JSON.stringify(v.failure)}`);
    assert.deepEqual(v.stdout, [{ text: `arg1=e${i}` }]);
  }
});
