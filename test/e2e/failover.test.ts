/**
 * Failover: `--server` lists several controllers; workers and the CLI move on when one is unreachable,
 * and `remex run` re-attaches to its execution by id. Real processes; a controller is killed with
 * SIGKILL for real. Two controllers share a job store by sharing one data directory (SQLite in WAL mode
 * takes several processes), which stands in for the PostgreSQL store of multi-node mode.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RemexClient } from '../../src/client/remex-client.js';
import { compileC, requireTools } from '../helpers/tools.js';
import { eventually, killHard, processesWithMarker, spawnRemex, waitForOutput } from '../helpers/processes.js';
import type { RemexProcess } from '../helpers/processes.js';
import { remexCli, startServe } from '../helpers/remex-cli.js';
import { startTestServer } from '../helpers/server.js';
import type { TestServer } from '../helpers/server.js';

/** An address nothing listens on. */
async function deadAddress(): Promise<string> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

/** A TCP proxy to `target`; `cut()` closes it and every connection through it, as a dying controller would. */
async function startProxy(target: string): Promise<{ url: string; cut(): void }> {
  const { hostname, port } = new URL(target);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((downstream) => {
    const upstream = net.connect(Number(port), hostname);
    for (const s of [downstream, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        sockets.delete(s);
        downstream.destroy();
        upstream.destroy();
      });
    }
    downstream.pipe(upstream);
    upstream.pipe(downstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    cut: () => {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

async function runningExecution(client: RemexClient): Promise<string | undefined> {
  const { executions } = await client.request<{ executions: Array<{ id: string; state: string }> }>('GET', '/v1/executions?limit=5');
  return executions.find((e) => e.state === 'running')?.id;
}

describe('failover between controllers', () => {
  let dir: string;
  let dead: string;
  let live: TestServer;
  let worker: RemexProcess | undefined;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'remex-failover-'));
    dead = await deadAddress();
    live = await startTestServer({ workerSlots: 0, scheduler: { heartbeatIntervalMs: 200 } });
  });
  after(async () => {
    if (worker) await killHard(worker);
    await live?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a worker whose first controller is dead registers on the next', async (t) => {
    if (!requireTools(t, 'bwrap')) return;
    worker = spawnRemex(['worker', '--server', `${dead},${live.server.url}`, '--slots', '2', '--name', 'mover', '--work-dir', join(dir, 'w'), '--platform', 'x86_64-linux-cpu']);
    await waitForOutput(worker, /remex worker \S+ serving/);
    assert.match(worker.output(), /controller unreachable; moving to the next one/);
    const platforms = await live.client.platforms();
    assert.equal(platforms.find((p) => p.platform === 'x86_64-linux-cpu')?.workers, 1);
  });

  test('remex run and remex platforms skip a dead controller; all dead fails at once', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const echo = compileC({ file: 'programs/echo.c' }, 'x86_64');
    const r = await remexCli(['run', '--server', `${dead},${live.server.url}`, '--no-cache', echo, '--', 'failover']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'arg1=failover\n');
    assert.match(r.stderr, new RegExp(`${dead} unreachable \\(.*ECONNREFUSED.*\\); using ${live.server.url}`));
    const platforms = await remexCli(['platforms'], { REMEX_SERVER: `${dead}, ${live.server.url}` });
    assert.equal(platforms.code, 0, platforms.stderr);
    assert.match(platforms.stdout, /^x86_64-linux-cpu\s+native\s+1/m);

    const started = Date.now();
    const other = await deadAddress();
    const none = await remexCli(['run', '--server', `${dead},${other}`, echo]);
    assert.equal(none.code, 125);
    assert.match(none.stderr, new RegExp(`UNAVAILABLE: cannot reach remex at ${dead}: .*ECONNREFUSED.*; ${other}: .*ECONNREFUSED`));
    assert.ok(Date.now() - started < 5_000, 'no controller ever answered: no waiting');
  });

  test('remex run re-attaches to its execution by id when its controller connection drops', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const sleepy = compileC({ file: 'programs/sleepy.c' }, 'x86_64');
    const proxy = await startProxy(live.server.url);
    const run = remexCli(['run', '--server', `${proxy.url},${live.server.url}`, '--no-cache', sleepy, '--', '1500']);
    const id = await eventually(() => runningExecution(live.client), 15_000, 'the execution running');
    proxy.cut();
    const r = await run;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'started\n');
    assert.match(r.stderr, new RegExp(`${proxy.url} unreachable .*; using ${live.server.url}`));
    const v = await live.client.getExecution(id);
    assert.equal(v.state, 'completed');
    assert.equal(v.attempt, 1, 'the execution ran once: the client re-attached, it did not resubmit');
  });
});

describe('SIGKILL of a controller mid-run', () => {
  test('its worker moves to the other controller, commits the result there, and the client gets it', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const dir = mkdtempSync(join(tmpdir(), 'remex-failover-kill-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const data = join(dir, 'shared');
    const a = await startServe(['--workers', '0', '--data', data]);
    t.after(() => killHard(a.proc));
    const b = await startServe(['--workers', '0', '--data', data]);
    t.after(() => killHard(b.proc));
    const servers = `${a.url},${b.url}`;
    const w = spawnRemex(['worker', '--server', servers, '--slots', '1', '--name', 'survivor', '--work-dir', join(dir, 'w'), '--platform', 'x86_64-linux-cpu']);
    t.after(() => killHard(w));
    await waitForOutput(w, /remex worker \S+ serving/);

    const sleepy = compileC({ file: 'programs/sleepy.c' }, 'x86_64');
    // sleepy ignores its second argument: it marks the program's process, to see it running on the worker.
    const marker = `remex-failover-${randomUUID()}`;
    const run = remexCli(['run', '--server', servers, '--no-cache', sleepy, '--', '2000', marker]);
    const viaB = new RemexClient(b.url);
    const id = await eventually(() => runningExecution(viaB), 15_000, 'the execution running');
    // "running" is stored when the job is handed to the worker's waiting lease call, before the answer
    // reaches it: killing A in between would lose the lease with it (then it expires and the job runs
    // again, which is a different test). The program running proves the worker has its lease.
    await eventually(async () => ((await processesWithMarker(marker)).length > 0 ? true : undefined), 15_000, 'the program running on the worker');
    await killHard(a.proc);

    const r = await run;
    assert.equal(r.code, 0, `${r.stderr}\nworker:\n${w.output()}`);
    assert.equal(r.stdout, 'started\n');
    assert.match(r.stderr, new RegExp(`${a.url} unreachable .*; using ${b.url}`));
    assert.match(r.stderr, /worker survivor/);
    assert.match(w.output(), /controller unreachable; moving to the next one/);
    const v = await viaB.getExecution(id);
    assert.equal(v.state, 'completed');
    assert.equal(v.attempt, 1, 'the lease survived the controller: the run was not repeated');
    const platforms = await viaB.platforms();
    assert.equal(platforms.find((p) => p.platform === 'x86_64-linux-cpu')?.workers, 1, 'the worker is registered once, on the survivor');
    viaB.close();
  });
});
