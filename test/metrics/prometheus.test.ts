/**
 * Metrics and logs end to end: a real `remex serve` with client and worker tokens and a real `remex worker`,
 * scraped by a real Prometheus (Debian's) that the test asks PromQL questions; the scrape passes
 * `promtool check metrics`; /metrics takes a client token (and `--metrics-port` none); one execution's log
 * lines all carry its trace id; no token or secret appears in any log line of either process, at trace level.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ExecutionView } from '../../src/api/execution-view.js';
import { RemexClient } from '../../src/client/remex-client.js';
import { digestOf } from '../../src/core/digest.js';
import { eventually, killHard, spawnRemex, waitForOutput } from '../helpers/processes.js';
import type { RemexProcess } from '../helpers/processes.js';
import { newToken, startServe } from '../helpers/remex-cli.js';
import { compileC, IN_CI, which } from '../helpers/tools.js';

const TOOLS = ['bwrap', 'gcc', 'aarch64-linux-gnu-gcc', 'prometheus', 'promtool'];
const missing = TOOLS.filter((tool) => !which(tool));
if (missing.length > 0 && IN_CI) throw new Error(`missing tools: ${missing.join(', ')} (run scripts/setup.sh as root)`);

const HELLO_C = '#include <stdio.h>\nint main(void) { puts("hello metrics"); return 0; }\n';
const AARCH64 = 'aarch64-linux-cpu';

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (typeof address !== 'object' || !address) throw new Error('no port');
  return address.port;
}

function run(cmd: string, args: string[], stdin: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, output }));
    child.stdin.end(stdin);
  });
}

describe('metrics scraped by a real Prometheus, and the logs', { skip: missing.length > 0 ? `missing tools: ${missing.join(', ')}` : false }, () => {
  let dir: string;
  let serve: { proc: RemexProcess; url: string };
  let worker: RemexProcess;
  let prometheus: ChildProcess | undefined;
  let prometheusUrl: string;
  let metricsPort: number;
  const clientToken = newToken();
  const workerToken = newToken();
  const webhookSecret = `whsec-${newToken()}`;
  let client: RemexClient;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'remex-metrics-'));
    writeFileSync(join(dir, 'client.tokens'), `${clientToken}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'worker.tokens'), `${workerToken}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'webhook.secret'), `${webhookSecret}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'scrape.token'), clientToken, { mode: 0o600 });
    serve = await startServe([
      '--data', join(dir, 'data'),
      '--workers', '1',
      '--platform', 'x86_64-linux-cpu',
      // aarch64 jobs are accepted but nobody serves them: they stay queued for the gauge.
      '--accept-platform', AARCH64,
      '--client-token-file', join(dir, 'client.tokens'),
      '--worker-token-file', join(dir, 'worker.tokens'),
      '--webhook-secret-file', join(dir, 'webhook.secret'),
      '--metrics-port', '0',
      '--log-level', 'trace',
      '--log-format', 'json',
    ]);
    metricsPort = Number((await waitForOutput(serve.proc, /"metricsPort":(\d+)/))[1]);
    worker = spawnRemex(['worker', '--server', serve.url, '--work-dir', join(dir, 'worker'), '--slots', '1', '--platform', 'x86_64-linux-cpu', '--token-file', join(dir, 'worker.tokens'), '--log-level', 'trace', '--log-format', 'json']);
    await waitForOutput(worker, /remex worker \S+ serving/);
    client = new RemexClient(serve.url, { token: clientToken });

    const port = await freePort();
    prometheusUrl = `http://127.0.0.1:${port}`;
    const config = [
      'global: { scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }',
      'scrape_configs:',
      '  - job_name: remex',
      '    metrics_path: /metrics',
      `    authorization: { type: Bearer, credentials_file: ${join(dir, 'scrape.token')} }`,
      `    static_configs: [{ targets: ['${new URL(serve.url).host}'] }]`,
      '',
    ].join('\n');
    writeFileSync(join(dir, 'prometheus.yml'), config);
    prometheus = spawn('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: 'ignore' });
  });

  after(async () => {
    if (prometheus && prometheus.exitCode === null) {
      const exited = new Promise((resolve) => prometheus?.once('exit', resolve));
      prometheus.kill('SIGTERM');
      await exited;
    }
    if (worker) await killHard(worker);
    if (serve) await killHard(serve.proc);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A PromQL instant query's single value, once Prometheus has one matching `want`. */
  async function promValue(query: string, want: (v: number) => boolean): Promise<number> {
    return eventually(async () => {
      const res = await fetch(`${prometheusUrl}/api/v1/query?query=${encodeURIComponent(query)}`);
      const body = (await res.json()) as { status: string; data: { result: Array<{ value: [number, string] }> } };
      const value = body.data.result.length === 1 ? Number(body.data.result[0]?.value[1]) : undefined;
      return value !== undefined && want(value) ? value : undefined;
    }, 60_000, `Prometheus to answer ${query}`);
  }

  test('Prometheus scrapes /metrics with the client token and answers the aarch64 queue depth', async () => {
    const exe = readFileSync(compileC({ code: HELLO_C, name: 'hello-metrics' }, 'aarch64', { static: true }));
    const digest = digestOf(exe);
    await client.putBlob(digest, exe);
    for (let i = 0; i < 3; i++) {
      const v = await client.submit({ executable: digest, args: [`queued-${i}`] });
      assert.equal(v.state, 'queued');
      assert.equal(v.platform, AARCH64);
    }
    assert.equal(await promValue('up{job="remex"}', (v) => v === 1), 1);
    assert.equal(await promValue(`remex_jobs_queued{platform="${AARCH64}"}`, (v) => v === 3), 3);
    // The local pool and the remote worker both serve x86_64 natively; nobody serves aarch64.
    assert.equal(await promValue('sum(remex_workers{platform="x86_64-linux-cpu",state="active",mode="native"})', (v) => v === 2), 2);
    assert.equal(await promValue(`sum(remex_worker_slots_free{platform="${AARCH64}"}) or vector(0)`, () => true), 0);
  });

  test('one execution: timeline in order, traceparent answered, its trace id on every log line about it', async () => {
    const exe = readFileSync(compileC({ code: HELLO_C, name: 'hello-metrics' }, 'x86_64'));
    const digest = digestOf(exe);
    await client.putBlob(digest, exe);
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const traceparent = `00-${traceId}-00f067aa0ba902b7-01`;
    const res = await fetch(`${serve.url}/v1/executions?wait=1`, {
      method: 'POST',
      headers: { authorization: `Bearer ${clientToken}`, 'content-type': 'application/json', traceparent },
      body: JSON.stringify({ executable: digest, args: ['traced'], doNotCache: true }),
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('traceparent'), traceparent);
    const view = (await res.json()) as ExecutionView;
    assert.equal(view.state, 'completed');
    assert.deepEqual(view.timeline.map((e) => e.phase), ['queued', 'leased', 'staged', 'running', 'outputs_stored', 'completed']);
    for (let i = 1; i < view.timeline.length; i++) {
      const [prev, cur] = [view.timeline[i - 1], view.timeline[i]] as [ExecutionView['timeline'][number], ExecutionView['timeline'][number]];
      assert.ok(cur.atMs >= prev.atMs, 'ordered');
      assert.equal(prev.durationMs, cur.atMs - prev.atMs);
    }

    // Every line of either process that names this job names its trace too; the submit names the request.
    const lines = await eventually(async () => {
      const found = [...serve.proc.output().split('\n'), ...worker.output().split('\n')].filter((l) => l.includes(`"jobId":"${view.id}"`));
      return found.some((l) => l.includes('execution finished')) ? found : undefined;
    }, 10_000, 'the execution\'s log lines');
    assert.ok(lines.length >= 4, lines.join('\n'));
    for (const line of lines) assert.ok(line.includes(`"traceId":"${traceId}"`), line);
    assert.ok(lines.some((l) => l.includes('execution submitted') && l.includes('"requestId":"')), 'the submit line names its request');
    assert.ok(await promValue('sum(remex_executions_total{outcome="completed"})', (v) => v >= 1));
  });

  test('/metrics refuses a missing or a worker token; --metrics-port serves it without; promtool check metrics passes', async () => {
    const none = await fetch(`${serve.url}/metrics`);
    assert.equal(none.status, 401);
    const asWorker = await fetch(`${serve.url}/metrics`, { headers: { authorization: `Bearer ${workerToken}` } });
    assert.equal(asWorker.status, 403);
    const authed = await fetch(`${serve.url}/metrics`, { headers: { authorization: `Bearer ${clientToken}` } });
    assert.equal(authed.status, 200);
    assert.match(authed.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await authed.text();
    assert.match(text, /^remex_jobs_queued\{platform="aarch64-linux-cpu"\} 3$/m);
    // Outcomes come from the job states, and cached beside them.
    assert.match(text, /^remex_executions_total\{platform="x86_64-linux-cpu",outcome="timed_out"\} 0$/m);
    assert.match(text, /^remex_executions_total\{platform="x86_64-linux-cpu",outcome="cached"\} 0$/m);
    assert.match(text, /^remex_http_requests_total\{method="POST",route="\/v1\/executions",code="200"\} \d+$/m);
    assert.match(text, /^remex_cas_bytes_in_total \d+$/m);
    assert.doesNotMatch(text, /jobId|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/, 'no job ids in labels');

    const separate = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    assert.equal(separate.status, 200);
    const separateText = await separate.text();
    assert.match(separateText, /^remex_jobs_queued\{platform="aarch64-linux-cpu"\} 3$/m);
    assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/v1/executions`)).status, 404, 'only /metrics on that port');

    const checked = await run('promtool', ['check', 'metrics'], separateText);
    assert.equal(checked.code, 0, checked.output);
  });

  test('no token or secret in any log line of the server or the worker (trace level)', async () => {
    // A refused request with a token that is not one of the server's, logged as refused.
    const wrong = newToken();
    assert.equal((await fetch(`${serve.url}/v1/platforms`, { headers: { authorization: `Bearer ${wrong}` } })).status, 401);
    await waitForOutput(serve.proc, /request refused/);
    const logs = `${serve.proc.output()}\n${worker.output()}`;
    assert.ok(logs.split('\n').length > 20, 'the processes did log');
    for (const [what, secret] of [['client token', clientToken], ['worker token', workerToken], ['webhook secret', webhookSecret], ['refused token', wrong]] as const) {
      assert.ok(!logs.includes(secret), `the ${what} is in the logs`);
    }
  });
});
