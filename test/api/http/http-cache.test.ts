/**
 * Bazel's HTTP cache protocol on a real `remex` server (/cas/… and /ac/…), and blob PUTs as a new user
 * makes them with curl: no Content-Type (`curl -T`) or a form one (`curl --data-binary`).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import type { ActionResult, ActionResultOut } from '../../../src/api/grpc/messages.js';
import { reapiProtos } from '../../../src/api/grpc/protos.js';
import { digestOf } from '../../../src/core/digest.js';
import { requireTools } from '../../helpers/tools.js';
import { startTestServer } from '../../helpers/server.js';
import type { TestServer } from '../../helpers/server.js';

const run = promisify(execFile);
const codec = reapiProtos().codec<ActionResult, ActionResultOut>('build.bazel.remote.execution.v2.ActionResult');
const ACTION = 'a'.repeat(64);

describe('HTTP cache protocol', () => {
  let ts: TestServer;
  let scratch: string;
  before(async () => {
    ts = await startTestServer({ workerSlots: 0 });
    scratch = mkdtempSync(join(tmpdir(), 'remex-http-cache-'));
  });
  after(async () => {
    await ts.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  test('curl -T and curl --data-binary store a blob at /v1/blobs/sha256/<hex>, verified', async (t) => {
    if (!requireTools(t, 'curl')) return;
    const data = Buffer.from('uploaded the way a new user would\n');
    const d = digestOf(data);
    const file = join(scratch, 'blob.txt');
    writeFileSync(file, data);
    const put = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-T', file, `${ts.server.url}/v1/blobs/sha256/${d.hash}`]);
    assert.equal(put.stdout, '201');
    assert.deepEqual(Buffer.from(await (await fetch(`${ts.server.url}/v1/blobs/sha256/${d.hash}`)).arrayBuffer()), data);

    const other = Buffer.from('and with --data-binary, which says application/x-www-form-urlencoded');
    const od = digestOf(other);
    const form = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--data-binary', other.toString(), '-X', 'PUT', `${ts.server.url}/v1/blobs/sha256/${od.hash}`]);
    assert.equal(form.stdout, '201');
    // Bytes of another digest are still refused, and nothing is stored.
    const wrong = await run('curl', ['-sS', '-w', '\n%{http_code}', '-T', file, `${ts.server.url}/v1/blobs/sha256/${'0'.repeat(64)}`]);
    assert.match(wrong.stdout, /does not match its digest[\s\S]*\n400$/);
    assert.equal((await fetch(`${ts.server.url}/v1/blobs/sha256/${'0'.repeat(64)}`, { method: 'HEAD' })).status, 404);
    // JSON routes keep their parser.
    const fm = await fetch(`${ts.server.url}/v1/blobs/find-missing`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ digests: [d] }) });
    assert.deepEqual(await fm.json(), { missing: [] });
  });

  test('/cas/<sha256>: PUT, HEAD, GET; a body of another hash is refused and not stored', async () => {
    const data = Buffer.from('an output file Bazel uploads');
    const d = digestOf(data);
    const url = `${ts.server.url}/cas/${d.hash}`;
    assert.equal((await fetch(url, { method: 'HEAD' })).status, 404);
    assert.equal((await fetch(url, { method: 'PUT', body: data })).status, 200);
    const head = await fetch(url, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(data.byteLength));
    assert.deepEqual(Buffer.from(await (await fetch(url)).arrayBuffer()), data);
    const bad = await fetch(`${ts.server.url}/cas/${'1'.repeat(64)}`, { method: 'PUT', body: data });
    assert.equal(bad.status, 400);
    assert.equal((await fetch(`${ts.server.url}/cas/${'1'.repeat(64)}`, { method: 'HEAD' })).status, 404);
    assert.equal((await fetch(`${ts.server.url}/cas/NOTAHASH`)).status, 400);
  });

  test('/ac/<sha256>: an ActionResult whose blobs are present is stored and served back', async () => {
    const out = Buffer.from('the output');
    const od = digestOf(out);
    await fetch(`${ts.server.url}/cas/${od.hash}`, { method: 'PUT', body: out });
    const result = codec.encode({ output_files: [{ path: 'bazel-out/k8-fastbuild/bin/out.txt', digest: { hash: od.hash, size_bytes: od.sizeBytes }, is_executable: true }], exit_code: 0 });
    const url = `${ts.server.url}/ac/${ACTION}`;
    assert.equal((await fetch(url)).status, 404);
    assert.equal((await fetch(url, { method: 'PUT', body: result })).status, 200);
    assert.equal((await fetch(url, { method: 'HEAD' })).status, 200);
    const got = codec.decode(Buffer.from(await (await fetch(url)).arrayBuffer()));
    assert.deepEqual(
      got.output_files.map((f) => [f.path, f.digest?.hash, Number(f.digest?.size_bytes), f.is_executable]),
      [['bazel-out/k8-fastbuild/bin/out.txt', od.hash, od.sizeBytes, true]],
    );
    assert.equal(got.exit_code, 0);
  });

  test('an AC PUT that is not an ActionResult, or names blobs not in the CAS, is refused and stores nothing', async () => {
    const key = 'b'.repeat(64);
    const url = `${ts.server.url}/ac/${key}`;
    for (const body of [Buffer.from('this is plain text, not a protobuf'), Buffer.from([0xff, 0xff, 0xff, 0xff])]) {
      const res = await fetch(url, { method: 'PUT', body });
      assert.equal(res.status, 400);
      assert.match(((await res.json()) as { detail: string }).detail, /needs a serialized build\.bazel\.remote\.execution\.v2\.ActionResult/);
    }
    const absent = digestOf(Buffer.from('never uploaded'));
    const missing = codec.encode({ output_files: [{ path: 'out', digest: { hash: absent.hash, size_bytes: absent.sizeBytes } }] });
    const res = await fetch(url, { method: 'PUT', body: missing });
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { code: string }).code, 'FAILED_PRECONDITION');
    assert.equal((await fetch(url)).status, 404);
  });
});
