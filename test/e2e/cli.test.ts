/** `remex run` and `remex platforms` as a user runs them: a real CLI process against a real server. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { compileC, requireTools } from '../helpers/tools.js';
import { remexCli } from '../helpers/remex-cli.js';
import type { CliResult } from '../helpers/remex-cli.js';
import { startTestServer } from '../helpers/server.js';
import type { TestServer } from '../helpers/server.js';

function remex(args: string[], opts: { stdinFile?: string; env?: Record<string, string> } = {}): Promise<CliResult> {
  return remexCli(args, opts.env, opts.stdinFile ? readFileSync(opts.stdinFile) : undefined);
}

let ts: TestServer;
let dir: string;

describe('remex CLI', () => {
  before(async () => {
    ts = await startTestServer({ workerSlots: 2 });
    dir = mkdtempSync(join(tmpdir(), 'remex-cli-'));
  });
  after(async () => {
    await ts?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('remex run detects aarch64, forwards args and redirected stdin, and exits with the program\'s code', async (t) => {
    if (!requireTools(t, 'bwrap', 'aarch64-linux-gnu-gcc', 'qemu-aarch64-static')) return;
    const hello = compileC({ file: 'programs/echo.c' }, 'aarch64');
    const input = join(dir, 'input.txt');
    writeFileSync(input, 'line from file\n');
    const r = await remex(['run', '--server', ts.server.url, '--env', 'EXIT_CODE=5', hello, '--', 'a', 'b'], { stdinFile: input });
    assert.equal(r.code, 5, r.stderr);
    assert.equal(r.stdout, 'arg1=a\narg2=b\nline from file\n');
    assert.match(r.stderr, /^to stderr$/m);
    assert.match(r.stderr, /remex: ran on aarch64-linux-cpu, emulated \(qemu-user\)/);
  });

  test('REMEX_SERVER gives the address; --json prints the result object', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const hello = compileC({ file: 'programs/echo.c' }, 'x86_64');
    const r = await remex(['run', '--json', hello, '--', 'j'], { env: { REMEX_SERVER: ts.server.url } });
    assert.equal(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout) as { platform: string; code: number; stdout: Array<{ text: string }>; emulated: boolean };
    assert.equal(result.platform, 'x86_64-linux-cpu');
    assert.equal(result.code, 0);
    assert.equal(result.emulated, false);
    assert.deepEqual(result.stdout, [{ text: 'arg1=j' }]);
  });

  test('--file sends extra inputs', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const cat = compileC({ file: 'programs/cat-file.c' }, 'x86_64');
    const data = join(dir, 'data.txt');
    writeFileSync(data, 'extra input\n');
    const r = await remex(['run', '--server', ts.server.url, '-q', '--file', `${data}:in/data.txt`, cat, '--', 'in/data.txt']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'extra input\n');
    assert.equal(r.stderr, '');
  });

  test('a timeout exits 124 and a signal exits 128+N, with output before them kept', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const sleepy = compileC({ file: 'programs/sleepy.c' }, 'x86_64');
    const timedOut = await remex(['run', '--server', ts.server.url, '--timeout', '0.5', sleepy]);
    assert.equal(timedOut.code, 124, timedOut.stderr);
    assert.equal(timedOut.stdout, 'started\n');
    assert.match(timedOut.stderr, /timed out/);
    const die = compileC({ file: 'programs/die.c' }, 'x86_64');
    const killed = await remex(['run', '--server', ts.server.url, die, '--', '11']);
    assert.equal(killed.code, 128 + 11, killed.stderr);
    assert.equal(killed.stdout, 'about to die\n');
  });

  test('a failure of remex itself exits 125 with a clear message', async (t) => {
    if (!requireTools(t, 'gcc')) return;
    const hello = compileC({ file: 'programs/echo.c' }, 'x86_64');
    const unreachable = await remex(['run', '--server', 'http://127.0.0.1:1', hello]);
    assert.equal(unreachable.code, 125);
    assert.match(unreachable.stderr, /UNAVAILABLE: cannot reach remex/);
    const notExecutable = join(dir, 'notes.txt');
    writeFileSync(notExecutable, 'just text');
    const bad = await remex(['run', '--server', ts.server.url, notExecutable]);
    assert.equal(bad.code, 125);
    assert.match(bad.stderr, /not an executable|platform/i);
  });

  test('remex platforms lists native and emulated platforms', async (t) => {
    if (!requireTools(t, 'bwrap', 'qemu-aarch64-static')) return;
    const r = await remex(['platforms', '--server', ts.server.url]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^x86_64-linux-cpu\s+native\s+1\s+\d+\/2/m);
    assert.match(r.stdout, /^aarch64-linux-cpu\s+emulated/m);
    const json = await remex(['platforms', '--json', '--server', ts.server.url]);
    assert.ok((JSON.parse(json.stdout) as unknown[]).length >= 2);
  });
});
