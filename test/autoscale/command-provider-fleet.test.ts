/**
 * The `command` provider driven by the real controller in a real server: the operator's scale-out starts
 * one more real `remex worker` process than asked (the extra one is counted as joined unasked, not lost),
 * a second pool's scale-out says it started a machine that never registers (given up after its timeout,
 * counted, and handed to scale-in), and drained workers' instances are handed to scale-in once they left.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { parseAutoscaleConfig } from '../../src/autoscale/config.js';
import type { AutoscalerState } from '../../src/autoscale/controller.js';
import { digestOf } from '../../src/core/digest.js';
import { eventually, REMEX_BIN } from '../helpers/processes.js';
import { startTestServer } from '../helpers/server.js';
import type { TestServer } from '../helpers/server.js';
import { compileC, requireTools } from '../helpers/tools.js';

const dir = mkdtempSync(join(tmpdir(), 'remex-as-cmd-'));
let srv: TestServer | undefined;
after(async () => {
  await srv?.close();
  // Any worker the scale-out script started and that is still there (a failed test) is stopped.
  for (const pid of readFileSync(join(dir, 'pids'), 'utf8').split('\n').filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // gone already
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('the command provider under the controller', () => {
  test('more workers than asked are counted, one that never registers is given up, drained ones are released', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    writeFileSync(join(dir, 'pids'), '');
    const scaleOut = join(dir, 'scale-out.mjs');
    writeFileSync(
      scaleOut,
      `#!${process.execPath}
import { spawn } from 'node:child_process';
import { appendFileSync, readFileSync } from 'node:fs';
const req = JSON.parse(readFileSync(0, 'utf8'));
const ids = [];
for (let i = 0; i <= req.count; i++) { // one more than asked
  const id = 'cmd-' + Math.random().toString(36).slice(2, 8);
  const args = [${JSON.stringify(REMEX_BIN)}, 'worker', '--server', req.servers[0], '--slots', String(req.slotsPerWorker), '--name', id,
    '--work-dir', ${JSON.stringify(dir)} + '/' + id, '--instance-id', id, ...req.platforms.flatMap((p) => ['--platform', p]),
    ...Object.entries(req.labels).flatMap(([k, v]) => ['--label', k + '=' + v])];
  const child = spawn(process.execPath, args, { detached: true, stdio: 'ignore' });
  appendFileSync(${JSON.stringify(join(dir, 'pids'))}, child.pid + '\\n');
  child.unref();
  if (i < req.count) ids.push(id);
}
process.stdout.write(JSON.stringify({ instanceIds: ids }));
`,
    );
    chmodSync(scaleOut, 0o755);
    const ghostOut = join(dir, 'ghost-out.sh');
    writeFileSync(ghostOut, '#!/bin/sh\ncat >/dev/null\necho \'{"instanceIds": ["ghost-1"]}\'\n');
    chmodSync(ghostOut, 0o755);
    const scaleIn = join(dir, 'scale-in.sh');
    writeFileSync(scaleIn, `#!/bin/sh\ncat >> ${join(dir, 'released')}\necho >> ${join(dir, 'released')}\n`);
    chmodSync(scaleIn, 0o755);
    writeFileSync(join(dir, 'released'), '');

    const policy = { idleToZeroSeconds: 2, scaleUpCooldownSeconds: 1, scaleDownCooldownSeconds: 1, windowSeconds: 10 };
    const config = parseAutoscaleConfig(
      {
        decisionIntervalSeconds: 0.5,
        pools: [
          { name: 'cmd', platforms: ['x86_64-linux-cpu'], provider: { type: 'command', scaleOut: [scaleOut], scaleIn: [scaleIn], timeoutSeconds: 30, attempts: 2 }, maxWorkers: 1, startupSeconds: 2, registerTimeoutSeconds: 60, policy },
          { name: 'ghosts', platforms: ['riscv64-linux-cpu'], provider: { type: 'command', scaleOut: [ghostOut], scaleIn: [scaleIn], timeoutSeconds: 5, attempts: 1 }, maxWorkers: 1, startupSeconds: 1, registerTimeoutSeconds: 1, policy },
        ],
      },
      'test',
    );
    srv = await startTestServer({ workerSlots: 0, autoscale: config, scheduler: { acceptPlatforms: ['x86_64-linux-cpu', 'riscv64-linux-cpu'] } });
    const client = srv.client;
    const state = async (): Promise<AutoscalerState> => (await (await client.fetch('/v1/autoscaler')).json()) as AutoscalerState;

    const bytes = readFileSync(compileC({ file: 'programs/echo.c' }, 'x86_64'));
    const exe = digestOf(bytes);
    await client.putBlob(exe, bytes);
    const job = await client.submit({ executable: exe, args: ['hello'] });
    // A riscv64 job nobody serves: the ghost pool asks for a machine that never comes.
    const ghostJob = await client.submit({ executable: exe, args: ['never'], platform: 'riscv64-linux-cpu' });

    await eventually(async () => ((await client.getExecution(job.id)).state === 'completed' ? true : undefined), 60_000, 'the x86 job done by a commanded worker');
    const counted = await eventually(async () => {
      const s = await state();
      const cmd = s.pools.find((p) => p.name === 'cmd');
      const ghosts = s.pools.find((p) => p.name === 'ghosts');
      return cmd && cmd.joinedUnasked >= 1 && ghosts && ghosts.neverRegistered >= 1 ? { cmd, ghosts } : undefined;
    }, 60_000, 'the extra worker counted and the ghost given up');
    assert.ok(counted.cmd.joinedUnasked >= 1);
    assert.equal((await client.getExecution(ghostJob.id)).state, 'queued', 'nothing lost: the job waits');
    // The leader's pools are gauges on /metrics: what it wants and what it has, per pool.
    const metrics = await (await client.fetch('/metrics')).text();
    for (const pool of ['cmd', 'ghosts']) {
      assert.match(metrics, new RegExp(`^remex_autoscaler_desired_workers\\{pool="${pool}"\\} \\d+$`, 'm'));
      for (const st of ['active', 'starting', 'draining']) assert.match(metrics, new RegExp(`^remex_autoscaler_actual_workers\\{pool="${pool}",state="${st}"\\} \\d+$`, 'm'));
    }

    // Idle, the pool drains its two workers (asked and unasked); their instances go to scale-in once gone.
    const released = await eventually(async () => {
      const text = readFileSync(join(dir, 'released'), 'utf8');
      const workers = (await client.workers()).filter((w) => w.labels['remex-pool'] === 'cmd');
      return workers.length === 2 && workers.every((w) => w.state === 'gone') && /"instanceIds":\["cmd-/.test(text) ? { text, workers } : undefined;
    }, 60_000, 'both workers drained and released');
    assert.match(released.text, /"action":"scale-in","pool":"ghosts","instanceIds":\["ghost-1"\]/);
    assert.match(released.text, /"action":"scale-in","pool":"cmd"/);
  });
});
