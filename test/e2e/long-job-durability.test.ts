/**
 * A running long job survives a restart of its controller (issue 13, item 7): its worker keeps running it
 * and reports to the next controller. Each job is submitted `--no-retry`, so a lease lost on the way would
 * end it `failed: LOST`: completing on attempt 1 proves it ran once, through the restart. Real processes,
 * killed with SIGKILL:
 *   - embedded: a `remex worker` attached to `remex serve` (SQLite); the serve is killed and started again on
 *     the same data directory and port;
 *   - PostgreSQL (+ S3): two controllers, the worker talks to the first; the first is killed.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { RemexClient } from '../../src/client/remex-client.js';
import type { ExecutionView } from '../../src/api/execution-view.js';
import { postgresUnavailable, startPostgres } from '../helpers/postgres.js';
import { eventually, killHard, processesWithMarker, spawnRemex, startServeProcess, waitForOutput } from '../helpers/processes.js';
import type { RemexProcess } from '../helpers/processes.js';
import { remexCli } from '../helpers/remex-cli.js';
import { startS3 } from '../helpers/s3.js';
import { IN_CI, compileC, requireTools } from '../helpers/tools.js';

/** A port free now (the restarted serve must come back where its worker looks for it). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

async function serveOn(port: number, args: string[], env: Record<string, string> = {}): Promise<RemexProcess> {
  const proc = spawnRemex(['serve', '--port', String(port), '--grpc-port', '0', ...args], env);
  await waitForOutput(proc, /remex listening on http:\/\//);
  return proc;
}

async function finished(client: RemexClient, id: string, timeoutMs: number, procs: RemexProcess[]): Promise<ExecutionView> {
  try {
    return await eventually(async () => {
      const v = await client.getExecution(id).catch(() => undefined);
      return v === undefined || v.state === 'queued' || v.state === 'running' ? undefined : v;
    }, timeoutMs, `job ${id} ended`);
  } catch (err) {
    throw new Error(`${String(err)}\n${procs.map((p) => p.output().slice(-3000)).join('\n---\n')}`, { cause: err });
  }
}

/** Submits sleepy (3 s, marked) `--no-retry` and waits until its program runs on the worker. */
async function submitRunning(server: string): Promise<{ id: string; marker: string }> {
  const sleepy = compileC({ file: 'programs/sleepy.c' }, 'x86_64');
  const marker = `remex-long-durable-${randomUUID()}`;
  const submitted = await remexCli(['submit', '--server', server, '--no-retry', '--name', 'durable', sleepy, '--', '3000', marker]);
  assert.equal(submitted.code, 0, submitted.stderr);
  // The program running proves the worker holds the lease (not merely that it was handed out).
  await eventually(async () => ((await processesWithMarker(marker)).length > 0 ? true : undefined), 20_000, 'the program running on the worker');
  return { id: submitted.stdout.trim(), marker };
}

test('embedded: a running job survives SIGKILL and restart of remex serve; its worker reports to the restarted one', async (t) => {
  if (!requireTools(t, 'bwrap', 'gcc')) return;
  const dir = mkdtempSync(join(tmpdir(), 'remex-long-durable-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const serveArgs = ['--workers', '0', '--accept-platform', 'x86_64-linux-cpu', '--lease-timeout', '10', '--data', join(dir, 'data')];
  const first = await serveOn(port, serveArgs);
  t.after(() => killHard(first));
  const url = `http://127.0.0.1:${port}`;
  const worker = spawnRemex(['worker', '--server', url, '--slots', '1', '--name', 'keeps-running', '--work-dir', join(dir, 'w'), '--platform', 'x86_64-linux-cpu']);
  t.after(() => killHard(worker));
  await waitForOutput(worker, /remex worker \S+ serving/);

  const { id, marker } = await submitRunning(url);
  await killHard(first);
  assert.ok((await processesWithMarker(marker)).length > 0, 'the run goes on without its controller');
  const second = await serveOn(port, serveArgs);
  t.after(() => killHard(second));

  const client = new RemexClient(url);
  t.after(() => client.close());
  const v = await finished(client, id, 60_000, [worker, second]);
  assert.equal(v.state, 'completed', JSON.stringify(v.failure));
  assert.equal(v.code, 0);
  assert.equal(v.attempt, 1, 'run once: the lease outlived the controller');
  assert.equal(v.worker, 'keeps-running');
});

test('PostgreSQL: a running job survives SIGKILL of the controller its worker talks to; the worker reports to the other', async (t) => {
  if (!requireTools(t, 'bwrap', 'gcc')) return;
  const missing = postgresUnavailable();
  if (missing) {
    if (IN_CI) throw new Error(missing);
    t.skip(missing);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'remex-long-durable-pg-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const pg = await startPostgres();
  t.after(() => pg.stop());
  const s3 = await startS3();
  t.after(() => s3.stop());
  const creds = s3.credentials as { accessKeyId: string; secretAccessKey: string } | undefined;
  const env: Record<string, string> = creds ? { AWS_ACCESS_KEY_ID: creds.accessKeyId, AWS_SECRET_ACCESS_KEY: creds.secretAccessKey, AWS_REGION: 'us-east-1' } : {};
  const controller = (name: string) =>
    startServeProcess(['--database', pg.url, '--blobs', s3.url('cas/'), '--workers', '0', '--accept-platform', 'x86_64-linux-cpu', '--lease-timeout', '10', '--data', join(dir, name)], env);
  const a = await controller('a');
  t.after(() => killHard(a.proc));
  const b = await controller('b');
  t.after(() => killHard(b.proc));
  // It talks to A (listed first) until A is gone.
  const worker = spawnRemex(['worker', '--server', `${a.url},${b.url}`, '--slots', '1', '--name', 'keeps-running', '--work-dir', join(dir, 'w'), '--platform', 'x86_64-linux-cpu']);
  t.after(() => killHard(worker));
  await waitForOutput(worker, /remex worker \S+ serving/);

  const { id, marker } = await submitRunning(a.url);
  await killHard(a.proc);
  assert.ok((await processesWithMarker(marker)).length > 0, 'the run goes on without its controller');

  const viaB = new RemexClient(b.url);
  t.after(() => viaB.close());
  const v = await finished(viaB, id, 60_000, [worker, b.proc]);
  assert.equal(v.state, 'completed', JSON.stringify(v.failure));
  assert.equal(v.code, 0);
  assert.equal(v.attempt, 1, 'run once: the lease outlived the controller');
  assert.match(worker.output(), /controller unreachable; moving to the next one/);
});
