/**
 * TLS end to end, with a private CA made by openssl at run time: `remex serve --tls-cert --tls-key`
 * serves HTTPS, WSS and gRPC over TLS; a remote worker and the CLI trust the CA with --ca-file (or
 * REMEX_CA_FILE); without it they fail with a message that says what to do.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { ProtoGrpcType as ReapiProto } from '../../src/api/grpc/generated/remote_execution.js';
import { reapiProtos } from '../../src/api/grpc/protos.js';
import { RemexClient } from '../../src/client/remex-client.js';
import { compileC, requireTools, which } from '../helpers/tools.js';
import { eventually, killHard, spawnRemex, waitForOutput } from '../helpers/processes.js';
import type { RemexProcess } from '../helpers/processes.js';
import { newToken, remexCli, startServe } from '../helpers/remex-cli.js';
import { makeTestPki } from '../helpers/tls.js';
import type { TestPki } from '../helpers/tls.js';

const clientToken = newToken();
const workerToken = newToken();
let dir: string;
let pki: TestPki;
let clientFile: string;
let workerFile: string;
let serve: { proc: RemexProcess; url: string; grpcPort: number };
let worker: RemexProcess | undefined;

describe('TLS', () => {
  before(async () => {
    if (!which('openssl')) return; // each test then skips (or fails in CI) through requireTools
    dir = mkdtempSync(join(tmpdir(), 'remex-tls-'));
    pki = makeTestPki();
    clientFile = join(dir, 'client.token');
    workerFile = join(dir, 'worker.token');
    writeFileSync(clientFile, `${clientToken}\n`, { mode: 0o600 });
    writeFileSync(workerFile, `${workerToken}\n`, { mode: 0o600 });
    serve = await startServe([
      '--workers', '0', '--data', join(dir, 'data'),
      '--tls-cert', pki.certFile, '--tls-key', pki.keyFile,
      '--client-token-file', clientFile, '--worker-token-file', workerFile,
    ]);
  });
  after(async () => {
    if (worker) await killHard(worker);
    if (serve) await killHard(serve.proc);
    pki?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('serves https:// and grpcs://, and says TLS is on', (t) => {
    if (!requireTools(t, 'openssl')) return;
    assert.match(serve.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.match(serve.proc.output(), /and grpcs:\/\/127\.0\.0\.1:\d+/);
    assert.match(serve.proc.output(), /remex authentication: tokens required .*; TLS on/);
  });

  test('a worker and `remex run` over HTTPS/WSS with --ca-file work end to end', async (t) => {
    if (!requireTools(t, 'openssl', 'bwrap', 'gcc')) return;
    worker = spawnRemex(['worker', '--server', serve.url, '--ca-file', pki.caFile, '--token-file', workerFile, '--work-dir', join(dir, 'w'), '--slots', '1', '--name', 'tls-worker', '--platform', 'x86_64-linux-cpu']);
    await waitForOutput(worker, /remex worker \S+ serving/);
    const client = new RemexClient(serve.url, { token: clientToken, ca: pki.caPem });
    await eventually(async () => ((await client.platforms()).length > 0 ? true : undefined), 10_000, 'the worker registered over TLS');
    client.close();

    const echo = compileC({ file: 'programs/echo.c' }, 'x86_64');
    const r = await remexCli(['run', '--server', serve.url, '--ca-file', pki.caFile, '--token-file', clientFile, '--no-cache', echo, '--', 'over', 'tls']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'arg1=over\narg2=tls\n');
    assert.match(r.stderr, /worker tls-worker/);
    const platforms = await remexCli(['platforms', '--server', serve.url], { REMEX_CA_FILE: pki.caFile, REMEX_TOKEN: clientToken });
    assert.equal(platforms.code, 0, platforms.stderr);
    assert.match(platforms.stdout, /^x86_64-linux-cpu\s+native\s+1/m);
  });

  test('without the CA the CLI fails with a clear error and sends nothing', async (t) => {
    if (!requireTools(t, 'openssl', 'gcc')) return;
    const echo = compileC({ file: 'programs/echo.c' }, 'x86_64');
    const r = await remexCli(['run', '--server', serve.url, '--token-file', clientFile, echo]);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /UNAVAILABLE: cannot reach remex at https:\/\/127\.0\.0\.1:\d+: TLS: .*certificate/);
    assert.match(r.stderr, /give the CA with --ca-file or REMEX_CA_FILE/);
    assert.ok(!serve.proc.output().includes(clientToken));
  });

  test('a key that is not the certificate\'s is refused at start-up, in words', async (t) => {
    if (!requireTools(t, 'openssl')) return;
    const r = await remexCli(['serve', '--port', '0', '--no-grpc', '--workers', '0', '--data', join(dir, 'bad'), '--tls-cert', pki.certFile, '--tls-key', join(pki.dir, 'ca.key')]);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /--tls-key .*ca\.key is not the key of the certificate in .*server\.pem/);
  });

  test('gRPC over TLS with the CA and a client token', async (t) => {
    if (!requireTools(t, 'openssl')) return;
    const loaded = grpc.loadPackageDefinition(reapiProtos().packageDefinition) as unknown as ReapiProto;
    const address = `127.0.0.1:${serve.grpcPort}`;
    const Capabilities = loaded.build.bazel.remote.execution.v2.Capabilities;
    const secure = new Capabilities(address, grpc.credentials.createSsl(pki.caPem));
    const plain = new Capabilities(address, grpc.credentials.createInsecure(), { 'grpc.initial_reconnect_backoff_ms': 100 });
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${clientToken}`);
    const call = (c: InstanceType<typeof Capabilities>) =>
      new Promise<grpc.ServiceError | null>((resolve) => c.GetCapabilities({ instance_name: '' }, metadata, { deadline: Date.now() + 5_000 }, (err) => resolve(err)));
    try {
      assert.equal(await call(secure), null);
      const refused = await call(plain);
      assert.ok(refused && (refused.code === grpc.status.UNAVAILABLE || refused.code === grpc.status.DEADLINE_EXCEEDED), `plaintext to a TLS port: ${refused?.code}`);
    } finally {
      secure.close();
      plain.close();
    }
  });
});
