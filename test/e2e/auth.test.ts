/**
 * Authentication end to end: a real `remex serve` with client and worker tokens, a real `remex worker`,
 * the real CLI, raw HTTP, WebSocket and gRPC calls. Also: the server's own log output (at trace level)
 * and every result are searched for the tokens, which must appear nowhere.
 */
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { WebSocket } from 'ws';
import type { ProtoGrpcType as HealthProto } from '../../src/api/grpc/generated/health.js';
import type { ProtoGrpcType as ReapiProto } from '../../src/api/grpc/generated/remote_execution.js';
import { reapiProtos } from '../../src/api/grpc/protos.js';
import { compileC, requireTools } from '../helpers/tools.js';
import { eventually, killHard, spawnRemex, waitForOutput } from '../helpers/processes.js';
import type { RemexProcess } from '../helpers/processes.js';
import { newToken, remexCli, startServe } from '../helpers/remex-cli.js';

const ENV_DUMP_C = `
#include <stdio.h>
extern char **environ;
/* Prints its environment, then the content of each file named in its arguments (or that it cannot). */
int main(int argc, char **argv) {
  for (char **e = environ; *e; e++) printf("env %s\\n", *e);
  for (int i = 1; i < argc; i++) {
    FILE *f = fopen(argv[i], "r");
    if (!f) { printf("cannot open %s\\n", argv[i]); continue; }
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    printf("read %s: %s\\n", argv[i], buf);
    fclose(f);
  }
  return 0;
}
`;

const clientToken = newToken();
const rotatedClientToken = newToken();
const workerToken = newToken();
let dir: string;
let clientFile: string;
let workerFile: string;
let serve: { proc: RemexProcess; url: string; grpcPort: number };
let worker: RemexProcess | undefined;

function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

async function status(path: string, init: RequestInit = {}): Promise<{ status: number; body: Record<string, unknown>; challenge: string | null }> {
  const res = await fetch(`${serve.url}${path}`, init);
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {}, challenge: res.headers.get('www-authenticate') };
}

interface WsAttempt {
  status: number;
  reply?: string;
  /** A refused upgrade's answer: its body (parsed), Content-Type and WWW-Authenticate. */
  body?: Record<string, unknown>;
  contentType?: string | undefined;
  challenge?: string | undefined;
}

/** Opens the event relay; resolves with a refused upgrade's status and answer, or 101 and a ping's answer. */
function wsAttempt(headers: Record<string, string>): Promise<WsAttempt> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${serve.url.replace(/^http/, 'ws')}/v1/events`, { headers });
    ws.on('unexpected-response', (_req, res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({
          status: res.statusCode ?? 0,
          body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
          contentType: res.headers['content-type'],
          challenge: res.headers['www-authenticate'],
        });
        ws.terminate();
      });
    });
    ws.on('open', () => ws.send('ping'));
    ws.on('message', (data) => {
      resolve({ status: 101, reply: data.toString() });
      ws.close();
    });
    ws.on('error', (err) => reject(err));
  });
}

/** A problem body without its request id, which differs per request. */
function withoutRequestId(body: Record<string, unknown> | undefined): Record<string, unknown> {
  const { requestId, ...rest } = body ?? {};
  assert.match(String(requestId), /^[0-9a-f-]{36}$/, 'a refusal carries a request id');
  return rest;
}

describe('authentication', () => {
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'remex-auth-'));
    clientFile = join(dir, 'client.tokens');
    workerFile = join(dir, 'worker.tokens');
    writeFileSync(clientFile, `# clients (rotation: old and new)\n${clientToken}\n\n${rotatedClientToken}\n`, { mode: 0o600 });
    writeFileSync(workerFile, `# workers\n${workerToken}\n`, { mode: 0o600 });
    serve = await startServe(['--workers', '0', '--data', join(dir, 'data'), '--client-token-file', clientFile, '--worker-token-file', workerFile], { REMEX_LOG_LEVEL: 'trace' });
  });
  after(async () => {
    if (worker) await killHard(worker);
    if (serve) await killHard(serve.proc);
    rmSync(dir, { recursive: true, force: true });
  });

  test('the start-up says tokens are required', () => {
    assert.match(serve.proc.output(), /remex authentication: tokens required \(2 client tokens, 1 worker token\); no TLS/);
  });

  test('without a valid client token nothing can be submitted or read; /healthz stays open', async () => {
    const submit = await status('/v1/executions', { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    assert.equal(submit.status, 401);
    assert.equal(submit.body.code, 'UNAUTHENTICATED');
    assert.equal(submit.challenge, 'Bearer realm="remex"');
    for (const path of ['/v1/executions/some-id', '/v1/executions', '/v1/platforms', `/v1/blobs/sha256/${'0'.repeat(64)}`, '/v1/nothing-here']) {
      assert.equal((await status(path)).status, 401, path);
    }
    const put = await status(`/v1/blobs/sha256/${'0'.repeat(64)}`, { method: 'PUT', body: 'x', headers: { 'content-type': 'application/octet-stream' } });
    assert.equal(put.status, 401);
    const wrong = await status('/v1/platforms', { headers: bearer(newToken()) });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.detail, 'invalid token');
    assert.equal((await status('/v1/platforms', { headers: { authorization: `Basic ${clientToken}` } })).status, 401);
    assert.equal((await status('/healthz')).status, 200);
    assert.equal((await status('/v1/platforms', { headers: bearer(clientToken) })).status, 200);
    assert.equal((await status('/v1/platforms', { headers: bearer(rotatedClientToken) })).status, 200, 'every token of the file is valid');
  });

  test('a client token is not a worker token, and a worker token is not a client token', async () => {
    const registration = JSON.stringify({ name: 'intruder', platforms: [{ platform: 'x86_64-linux-cpu', emulated: false }], slots: 1 });
    const json = { 'content-type': 'application/json' };
    assert.equal((await status('/v1/workers', { method: 'POST', body: registration, headers: json })).status, 401);
    const asClient = await status('/v1/workers', { method: 'POST', body: registration, headers: { ...json, ...bearer(clientToken) } });
    assert.equal(asClient.status, 403);
    assert.equal(asClient.body.code, 'PERMISSION_DENIED');
    assert.equal((await status('/v1/workers/w-1/lease', { method: 'POST', body: '{"max":1,"waitMs":0}', headers: { ...json, ...bearer(clientToken) } })).status, 403);
    assert.equal((await status('/v1/executions', { method: 'POST', body: '{}', headers: { ...json, ...bearer(workerToken) } })).status, 403);
    assert.equal((await status('/v1/platforms', { headers: bearer(workerToken) })).status, 403);
    assert.equal((await status('/v1/executions/x', { headers: bearer(workerToken) })).status, 403);
    // Workers read and write blobs.
    assert.equal((await status(`/v1/blobs/sha256/${'0'.repeat(64)}`, { headers: bearer(workerToken) })).status, 404);

    const noToken = await remexCli(['worker', '--server', serve.url, '--work-dir', join(dir, 'w0'), '--slots', '1']);
    assert.notEqual(noToken.code, 0);
    assert.match(noToken.stderr, /UNAUTHENTICATED/);
    const clientAsWorker = await remexCli(['worker', '--server', serve.url, '--work-dir', join(dir, 'w1'), '--slots', '1', '--token-file', clientFile]);
    assert.notEqual(clientAsWorker.code, 0);
    assert.match(clientAsWorker.stderr, /PERMISSION_DENIED/);
    const platforms = await status('/v1/platforms', { headers: bearer(clientToken) });
    assert.deepEqual(platforms.body.platforms, [], 'no worker got registered');
  });

  test('the event relay refuses an upgrade without a client token, with the problem JSON the HTTP routes send', async () => {
    for (const headers of [{}, bearer(newToken()), bearer(workerToken)]) {
      const refused = await wsAttempt(headers);
      const http = await status('/v1/events', { headers });
      assert.equal(refused.status, http.status);
      assert.equal(refused.contentType, 'application/problem+json');
      assert.equal(refused.challenge ?? null, http.challenge);
      assert.deepEqual(withoutRequestId(refused.body), withoutRequestId(http.body));
    }
    const none = await wsAttempt({});
    assert.equal(none.status, 401);
    assert.equal(none.challenge, 'Bearer realm="remex"');
    assert.deepEqual(withoutRequestId(none.body), {
      type: 'about:blank',
      title: 'UNAUTHENTICATED',
      status: 401,
      code: 'UNAUTHENTICATED',
      detail: none.body?.detail,
    });
    assert.equal((await wsAttempt(bearer(newToken()))).body?.detail, 'invalid token');
    const asWorker = await wsAttempt(bearer(workerToken));
    assert.equal(asWorker.status, 403);
    assert.equal(asWorker.body?.code, 'PERMISSION_DENIED');
    assert.equal(asWorker.challenge, undefined);
    assert.deepEqual(await wsAttempt(bearer(clientToken)), { status: 101, reply: 'pong' });
  });

  test('gRPC calls need a client token in the authorization metadata; health stays open', async () => {
    const loaded = grpc.loadPackageDefinition(reapiProtos().packageDefinition) as unknown as ReapiProto & HealthProto;
    const address = `127.0.0.1:${serve.grpcPort}`;
    const caps = new loaded.build.bazel.remote.execution.v2.Capabilities(address, grpc.credentials.createInsecure());
    const health = new loaded.grpc.health.v1.Health(address, grpc.credentials.createInsecure());
    const getCaps = (metadata: grpc.Metadata) =>
      new Promise<grpc.ServiceError | null>((resolve) => caps.GetCapabilities({ instance_name: '' }, metadata, (err) => resolve(err)));
    try {
      // Each refusal has the status and the message the HTTP door gives for the same header.
      const none = await getCaps(new grpc.Metadata());
      assert.equal(none?.code, grpc.status.UNAUTHENTICATED);
      assert.equal(none?.details, (await status('/v1/platforms')).body.detail);
      const wrong = new grpc.Metadata();
      const wrongToken = newToken();
      wrong.set('authorization', `Bearer ${wrongToken}`);
      const wrongRefused = await getCaps(wrong);
      assert.equal(wrongRefused?.code, grpc.status.UNAUTHENTICATED);
      assert.equal(wrongRefused?.details, 'invalid token');
      const asWorker = new grpc.Metadata();
      asWorker.set('authorization', `Bearer ${workerToken}`);
      const workerRefused = await getCaps(asWorker);
      assert.equal(workerRefused?.code, grpc.status.PERMISSION_DENIED);
      assert.equal(workerRefused?.details, (await status('/v1/platforms', { headers: bearer(workerToken) })).body.detail);
      const ok = new grpc.Metadata();
      ok.set('authorization', `Bearer ${clientToken}`);
      assert.equal(await getCaps(ok), null);
      const served = await new Promise<string | undefined>((resolve, reject) =>
        health.Check({ service: '' }, (err, res) => (err ? reject(err) : resolve(res?.status as string | undefined))),
      );
      assert.equal(served, 'SERVING');
    } finally {
      caps.close();
      health.close();
    }
  });

  test('with valid tokens everything works end to end; no token reaches the job, the results or any log', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    // The worker gets its token from the file and (unused) from the environment: neither may reach a job.
    worker = spawnRemex(['worker', '--server', serve.url, '--work-dir', join(dir, 'w2'), '--slots', '1', '--name', 'authed', '--platform', 'x86_64-linux-cpu', '--token-file', workerFile], {
      REMEX_WORKER_TOKEN: workerToken,
      REMEX_LOG_LEVEL: 'trace',
    });
    await waitForOutput(worker, /remex worker \S+ serving/);
    await eventually(async () => {
      const r = await status('/v1/platforms', { headers: bearer(clientToken) });
      return (r.body.platforms as unknown[]).length > 0 ? true : undefined;
    }, 10_000, 'the worker on the platform list');

    const envDump = compileC({ code: ENV_DUMP_C, name: 'env-dump' }, 'x86_64');
    const run = await remexCli(['run', '--server', serve.url, '--token-file', clientFile, '--no-cache', envDump, '--', workerFile, clientFile]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /cannot open .*worker\.tokens/);
    assert.match(run.stderr, /worker authed/);
    const viaEnv = await remexCli(['run', '--server', serve.url, '--json', '--no-cache', envDump], { REMEX_TOKEN: rotatedClientToken });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    const platforms = await remexCli(['platforms', '--server', serve.url], { REMEX_TOKEN: clientToken });
    assert.equal(platforms.code, 0, platforms.stderr);
    assert.match(platforms.stdout, /^x86_64-linux-cpu\s+native\s+1/m);
    // The operator's commands take a client token too (decision 0028), from REMEX_TOKEN when no worker token is given.
    const workers = await remexCli(['workers', '--server', serve.url], { REMEX_TOKEN: clientToken });
    assert.equal(workers.code, 0, workers.stderr);
    assert.match(workers.stdout, /authed/);
    const anonymous = await remexCli(['workers', '--server', serve.url]);
    assert.notEqual(anonymous.code, 0, 'no token, no worker list');
    const refused = await remexCli(['run', '--server', serve.url, envDump]);
    assert.equal(refused.code, 125);
    assert.match(refused.stderr, /UNAUTHENTICATED: this server requires authentication/);

    const listed = await fetch(`${serve.url}/v1/executions?limit=100`, { headers: bearer(clientToken) });
    const results = await listed.text();
    assert.match(results, /cannot open/, "the results are listed");
    const everything = [run.stdout, run.stderr, viaEnv.stdout, viaEnv.stderr, platforms.stdout, refused.stderr, results, worker.output(), serve.proc.output()];
    assert.match(serve.proc.output(), /request refused/, 'the refusals above were logged');
    for (const [name, token] of Object.entries({ clientToken, rotatedClientToken, workerToken })) {
      everything.forEach((text, i) => assert.ok(!text.includes(token), `${name} found in output #${i}`));
    }
  });

  test('an open server on a non-loopback address refuses to start unless --insecure-open', async () => {
    const data = join(dir, 'open');
    const refused = await remexCli(['serve', '--host', '0.0.0.0', '--port', '0', '--no-grpc', '--workers', '0', '--data', data]);
    assert.equal(refused.code, 125);
    assert.match(refused.stderr, /refusing to serve 0\.0\.0\.0 without authentication/);
    const open = spawnRemex(['serve', '--host', '0.0.0.0', '--port', '0', '--no-grpc', '--workers', '0', '--data', data, '--insecure-open']);
    try {
      await waitForOutput(open, /remex authentication: OFF \(--insecure-open\)/);
    } finally {
      await killHard(open);
    }
    const loopback = spawnRemex(['serve', '--port', '0', '--no-grpc', '--workers', '0', '--data', data]);
    try {
      await waitForOutput(loopback, /remex authentication: OFF, open to every local user \(127\.0\.0\.1 is loopback only\)/);
    } finally {
      await killHard(loopback);
    }
  });

  test('a malformed token file is refused by line number, without echoing the token', async () => {
    const bad = join(dir, 'bad.tokens');
    writeFileSync(bad, '# ok\nshort-secret\n', { mode: 0o600 });
    const r = await remexCli(['serve', '--port', '0', '--no-grpc', '--workers', '0', '--data', join(dir, 'bad'), '--client-token-file', bad]);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /bad\.tokens line 2: a token must be 16/);
    assert.ok(!r.stderr.includes('short-secret'));
  });
});
