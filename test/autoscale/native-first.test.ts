/**
 * Native first, emulation as a choice, with the real controller: aarch64 is served natively by a pool whose
 * machines take long to come (here: never), and by emulation by a local-process pool of real `remex worker`
 * processes running aarch64 under qemu-user. With `wait` the emulating pool leaves the job to the native
 * pool; with `emulate` past the expected-wait threshold it scales out, and the job's result says it ran
 * emulated.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { parseAutoscaleConfig } from '../../src/autoscale/config.js';
import type { AutoscalerState } from '../../src/autoscale/controller.js';
import { digestOf } from '../../src/core/digest.js';
import { eventually } from '../helpers/processes.js';
import { startTestServer } from '../helpers/server.js';
import type { TestServer } from '../helpers/server.js';
import { compileC, requireTools } from '../helpers/tools.js';

const dir = mkdtempSync(join(tmpdir(), 'remex-as-native-'));
const servers: TestServer[] = [];
after(async () => {
  for (const s of servers) await s.close();
  rmSync(dir, { recursive: true, force: true });
});

async function serverWith(whileNativeStarts: 'wait' | 'emulate'): Promise<TestServer> {
  const slowNative = join(dir, 'slow-native.sh');
  writeFileSync(slowNative, '#!/bin/sh\ncat >/dev/null\necho \'{"instanceIds": ["arm-1"]}\'\n');
  chmodSync(slowNative, 0o755);
  const policy = { idleToZeroSeconds: 2, scaleUpCooldownSeconds: 1, scaleDownCooldownSeconds: 1, windowSeconds: 10 };
  const config = parseAutoscaleConfig(
    {
      decisionIntervalSeconds: 0.5,
      pools: [
        { name: 'arm-native', platforms: ['aarch64-linux-cpu'], provider: { type: 'command', scaleOut: [slowNative], scaleIn: ['/bin/true'], attempts: 1 }, maxWorkers: 1, startupSeconds: 120, registerTimeoutSeconds: 600, policy },
        { name: 'arm-emulated', platforms: ['aarch64-linux-cpu'], emulated: true, provider: { type: 'local-process' }, maxWorkers: 1, startupSeconds: 2, policy },
      ],
      nativeFirst: [{ platform: 'aarch64-linux-cpu', whileNativeStarts, emulateAfterWaitSeconds: 10 }],
    },
    'test',
  );
  const srv = await startTestServer({ workerSlots: 0, autoscale: config, scheduler: { acceptPlatforms: ['aarch64-linux-cpu'] } });
  servers.push(srv);
  return srv;
}

describe('native first', () => {
  test('wait: the emulating pool leaves the backlog to the native pool; emulate: it runs the job, emulated', async (t) => {
    if (!requireTools(t, 'bwrap', 'aarch64-linux-gnu-gcc', 'qemu-aarch64-static')) return;
    const bytes = readFileSync(compileC({ file: 'programs/echo.c' }, 'aarch64'));
    const exe = digestOf(bytes);

    const waiting = await serverWith('wait');
    await waiting.client.putBlob(exe, bytes);
    const held = await waiting.client.submit({ executable: exe, args: ['native-please'] });
    const seen = await eventually(async () => {
      const s = (await (await waiting.client.fetch('/v1/autoscaler')).json()) as AutoscalerState;
      const native = s.pools.find((p) => p.name === 'arm-native');
      const emulated = s.pools.find((p) => p.name === 'arm-emulated');
      return native && native.starting >= 1 && emulated && (emulated.lastDecision?.atMs ?? 0) > (native.changes[0]?.atMs ?? Infinity) + 2000 ? { native, emulated } : undefined;
    }, 30_000, 'a few decisions after the native pool asked for a machine');
    assert.equal(seen.emulated.desired, 0, seen.emulated.lastDecision?.reason);
    assert.equal((await waiting.client.getExecution(held.id)).state, 'queued', 'waiting for a native worker');

    const emulating = await serverWith('emulate');
    await emulating.client.putBlob(exe, bytes);
    const job = await emulating.client.submit({ executable: exe, args: ['any-worker'] });
    const done = await eventually(async () => {
      const v = await emulating.client.getExecution(job.id);
      return v.state === 'completed' ? v : undefined;
    }, 90_000, 'the job run by the emulating pool');
    assert.equal(done.emulated, true, 'the result says it ran emulated');
    assert.match(done.stdout.map((l) => l.text).join('\n'), /arg1=any-worker/);
  });
});
