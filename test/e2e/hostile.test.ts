/**
 * Hostile programs through the whole system (HTTP → scheduler → worker → sandbox), native and emulated:
 * each is contained and reported as a result, the worker goes on serving, and a normal run works after.
 * The sandbox's own battery (test/worker) covers each attack in depth; this proves the system holds.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { Digest } from '../../src/core/digest.js';
import { digestOf } from '../../src/core/digest.js';
import { compileC, requireTools } from '../helpers/tools.js';
import { startTestServer } from '../helpers/server.js';
import type { TestServer } from '../helpers/server.js';

let ts: TestServer;

async function upload(path: string): Promise<Digest> {
  const bytes = readFileSync(path);
  const d = digestOf(bytes);
  await ts.client.putBlob(d, bytes);
  return d;
}

const SMALL = { memoryBytes: 64 * 1024 * 1024, processes: 32, fileSizeBytes: 8 * 1024 * 1024, outputBytes: 64 * 1024 };

for (const isa of ['x86_64', 'aarch64'] as const) {
  describe(`hostile programs through the system (${isa})`, () => {
    const tools = isa === 'x86_64' ? ['bwrap', 'gcc'] : ['bwrap', 'aarch64-linux-gnu-gcc', 'qemu-aarch64-static'];
    before(async () => {
      ts = await startTestServer({ workerSlots: 2 });
    });
    after(async () => {
      await ts?.close();
    });

    const run = async (fixture: string, timeoutMs = 3_000) => {
      const exe = await upload(compileC({ file: `hostile/${fixture}.c` }, isa));
      return ts.client.submit({ executable: exe, timeoutMs, limits: SMALL, doNotCache: true }, { wait: true });
    };

    test('a fork bomb is stopped by the process limit', async (t) => {
      if (!requireTools(t, ...tools)) return;
      const v = await run('fork-bomb');
      assert.ok(v.limitExceeded === 'processes' || v.state === 'timed_out', JSON.stringify(v));
      assert.equal(v.okToCache, false);
    });

    test('a memory bomb is stopped by the memory limit', async (t) => {
      if (!requireTools(t, ...tools)) return;
      const v = await run('memory-bomb');
      assert.equal(v.limitExceeded, 'memory', JSON.stringify(v));
      assert.equal(v.okToCache, false);
    });

    test('an endless stdout flood is truncated and stopped by the timeout', async (t) => {
      if (!requireTools(t, ...tools)) return;
      const v = await run('flood', 1_000);
      assert.equal(v.state, 'timed_out');
      assert.equal(v.truncated, true);
      assert.equal(v.output?.stdout.base64 !== null, true);
      assert.equal(Buffer.from(v.output?.stdout.base64 ?? '', 'base64').byteLength, SMALL.outputBytes);
    });

    test('a double-forked daemon does not outlive its run, and the worker goes on serving', async (t) => {
      if (!requireTools(t, ...tools)) return;
      const v = await run('daemon');
      assert.equal(v.state, 'completed', JSON.stringify(v));
      const hello = await upload(compileC({ file: 'programs/echo.c' }, isa));
      const after = await ts.client.submit({ executable: hello, args: ['still serving'], doNotCache: true }, { wait: true });
      assert.equal(after.code, 0);
      assert.equal(after.stdout[0]?.text, 'arg1=still serving');
      const platforms = await ts.client.platforms();
      const p = platforms.find((x) => x.platform === `${isa}-linux-cpu`);
      assert.equal(p?.running, 0, 'no job is left holding a slot');
    });
  });
}
