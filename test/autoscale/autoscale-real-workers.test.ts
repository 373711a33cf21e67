/**
 * The autoscaler with real processes: a real `remex serve --autoscale` with no local worker, its
 * `local-process` provider starting real `remex worker` processes, a burst of real jobs (the echo fixture,
 * each with its own argument) on an empty pool. The pool goes 0 → N → 0; every job completes once (attempt
 * 1) with its own output, so no scale-in killed a running job. The burst is 40 jobs here to stay lean in CI;
 * REMEX_AUTOSCALE_BURST=200 runs the 200.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { RemexClient } from '../../src/client/remex-client.js';
import { digestOf } from '../../src/core/digest.js';
import { remexCli, serveInTempDir } from '../helpers/remex-cli.js';
import type { ServeFixture } from '../helpers/remex-cli.js';
import { eventually } from '../helpers/processes.js';
import { compileC, requireTools } from '../helpers/tools.js';

const BURST = Number(process.env.REMEX_AUTOSCALE_BURST ?? 40);
let fx: ServeFixture | undefined;

interface PoolState {
  name: string;
  active: number;
  starting: number;
  draining: number;
  changes: Array<{ direction: string; reason: string; desired: number }>;
}

describe('autoscaling real worker processes', () => {
  after(async () => {
    // SIGTERM first: the server drains the workers it started, so none outlives a failed test.
    const serve = fx?.processes[0];
    if (serve && serve.child.exitCode === null) {
      serve.child.kill('SIGTERM');
      await Promise.race([serve.exited, new Promise((r) => setTimeout(r, 20_000))]);
    }
    await fx?.stop();
  });

  test(`a burst of ${BURST} jobs on an empty pool scales 0 → N → 0, every job once with its own result`, async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const configDir = (await import('node:fs')).mkdtempSync(join((await import('node:os')).tmpdir(), 'remex-as-cfg-'));
    const configFile = join(configDir, 'pools.yaml');
    writeFileSync(
      configFile,
      `decisionIntervalSeconds: 1
pools:
  - name: burst
    platforms: [x86_64-linux-cpu]
    provider: { type: local-process }
    minWorkers: 0
    maxWorkers: 3
    slotsPerWorker: 2
    startupSeconds: 2
    registerTimeoutSeconds: 60
    policy: { idleToZeroSeconds: 3, scaleUpCooldownSeconds: 1, scaleDownCooldownSeconds: 2, windowSeconds: 10 }
`,
    );
    fx = await serveInTempDir('remex-autoscale-', ['--workers', '0', '--accept-platform', 'x86_64-linux-cpu', '--autoscale', configFile]);
    const client = new RemexClient(fx.url);
    const state = async (): Promise<PoolState> => ((await (await client.fetch('/v1/autoscaler')).json()) as { pools: PoolState[] }).pools[0] as PoolState;
    assert.equal((await state()).active, 0, 'the pool starts empty');

    const bytes = readFileSync(compileC({ file: 'programs/echo.c' }, 'x86_64'));
    const exe = digestOf(bytes);
    await client.putBlob(exe, bytes);
    const jobs = await Promise.all(Array.from({ length: BURST }, (_, i) => client.submit({ executable: exe, args: [`job-${i}`] })));

    let peak = 0;
    const done = await eventually(
      async () => {
        const s = await state();
        peak = Math.max(peak, s.active);
        const views = await Promise.all(jobs.map((j) => client.getExecution(j.id)));
        return views.every((v) => v.state === 'completed') ? views : undefined;
      },
      120_000,
      'every job completed',
    );
    for (const [i, v] of done.entries()) {
      assert.equal(v.code, 0);
      assert.equal(v.attempt, 1, `job ${i} ran once: no scale-in cut it short`);
      assert.match(v.stdout.map((l) => l.text).join('\n'), new RegExp(`^arg1=job-${i}$`, 'm'), `job ${i} has its own result`);
    }
    const final = await eventually(async () => {
      const s = await state();
      const workers = (await client.workers()).filter((w) => w.labels['remex-pool'] === 'burst');
      return s.active === 0 && s.starting === 0 && s.draining === 0 && workers.length > 0 && workers.every((w) => w.state === 'gone') ? { s, workers } : undefined;
    }, 60_000, 'the pool back at zero, every worker gone');
    assert.ok(peak >= 2 || final.workers.length >= 2, `the pool grew past one worker (peak ${peak}, ${final.workers.length} registered)`);
    assert.ok(final.workers.every((w) => w.instanceId?.startsWith('lp-')), 'each worker carries its provider instance id');
    assert.ok(final.s.changes.some((d) => d.direction === 'down' && /idle for/.test(d.reason)), 'the scale to zero is kept with its reason');
    const listed = await remexCli(['workers', '--server', fx.url]);
    assert.match(listed.stdout, /remex-pool=burst/);
  });
});
