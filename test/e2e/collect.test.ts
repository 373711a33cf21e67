/**
 * Result files and `remex collect`, end to end: a real program writes under `$REMEX_RESULTS` (a file, a
 * subdirectory, a symlink out of the sandbox, a FIFO); the files come back whichever way the run ended (a
 * timeout included), the symlink and the FIFO never do, and `remex collect` writes each job's folder and a
 * summary with the figures of its results.json.
 */
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RemexClient } from '../../src/client/remex-client.js';
import { eventually } from '../helpers/processes.js';
import { remexCli, serveInTempDir } from '../helpers/remex-cli.js';
import type { ServeFixture } from '../helpers/remex-cli.js';
import { compileC, requireTools } from '../helpers/tools.js';

let fx: ServeFixture;

describe('result files and remex collect', () => {
  before(async () => {
    fx = await serveInTempDir('remex-collect-', ['--workers', '2', '--platform', 'x86_64-linux-cpu', '--price-per-hour', '0.36']);
  });
  after(async () => {
    await fx?.stop();
  });

  test('results come back from a run that ended and from one that timed out; collect writes them with a summary', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const exe = compileC({ file: 'programs/results.c' }, 'x86_64');
    const ok = (await remexCli(['submit', '--server', fx.url, '--name', 'ends', '--label', 'suite=results', exe])).stdout.trim();
    const hung = (await remexCli(['submit', '--server', fx.url, '--name', 'hangs', '--label', 'suite=results', '--max-runtime', '2s', exe, '--', 'hang'])).stdout.trim();
    const other = (await remexCli(['submit', '--server', fx.url, '--label', 'suite=other', exe])).stdout.trim();
    const client = new RemexClient(fx.url);
    for (const id of [ok, hung, other]) {
      await eventually(async () => (['completed', 'timed_out'].includes((await client.getExecution(id)).state) ? true : undefined), 30_000, `job ${id} to end`);
    }
    assert.equal((await client.getExecution(hung)).state, 'timed_out');

    const out = join(fx.dir, 'out');
    mkdirSync(out);
    writeFileSync(join(out, 'keep'), 'x');
    const refused = await remexCli(['collect', '--server', fx.url, '--label', 'suite=results', '--out', out]);
    assert.equal(refused.code, 125);
    assert.match(refused.stderr, /is not empty \(give --force/);
    assert.equal(readFileSync(join(out, 'keep'), 'utf8'), 'x', 'nothing touched');

    const collected = await remexCli(['collect', '--server', fx.url, '--label', 'suite=results', '--out', out, '--force']);
    assert.equal(collected.code, 0, collected.stderr);
    assert.match(collected.stdout, /collected 2 jobs into /);
    for (const [id, state] of [[ok, 'completed'], [hung, 'timed_out']] as const) {
      const folder = join(out, id);
      assert.equal((JSON.parse(readFileSync(join(folder, 'job.json'), 'utf8')) as { state: string }).state, state);
      assert.match(readFileSync(join(folder, 'results', 'results.json'), 'utf8'), /"triad_mbps": 48532.5/);
      assert.equal(readFileSync(join(folder, 'results', 'raw', 'run-1.csv'), 'utf8'), 'size,mbps\n1024,48532.5\n');
      assert.equal(existsSync(join(folder, 'results', 'escape')), false, 'a symlink out of the sandbox never comes back');
      assert.equal(existsSync(join(folder, 'results', 'pipe')), false, 'nor a FIFO');
      assert.ok(lstatSync(join(folder, 'stdout')).isFile());
    }
    assert.equal(existsSync(join(out, other)), false, 'another label is not collected');
    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as Array<{ id: string; name: string; state: string; metrics: Record<string, number>; cost: number; wallTimeMs: number }>;
    // Cost: 0.36 an hour, for its run time, one of the pool's two slots.
    for (const s of summary) assert.ok(Math.abs(s.cost - (0.36 * s.wallTimeMs) / 3_600_000 / 2) < 1e-12, `${s.name}: ${s.cost} for ${s.wallTimeMs} ms`);
    const job = JSON.parse(readFileSync(join(out, ok, 'job.json'), 'utf8')) as { host: { cpuModel: string; cores: number; memoryBytes: number; kernel: string; slots: number; pricePerHour: number } };
    assert.ok(job.host.cpuModel.length > 0 && job.host.cores >= 1 && job.host.memoryBytes > 0, JSON.stringify(job.host));
    assert.match(job.host.kernel, /^Linux \S+ x86_64$/);
    assert.deepEqual([job.host.slots, job.host.pricePerHour], [2, 0.36]);
    assert.deepEqual(
      summary.map((s) => [s.name, s.state, s.metrics]).sort(),
      [
        ['ends', 'completed', { triad_mbps: 48532.5, copy_mbps: 41000 }],
        ['hangs', 'timed_out', { triad_mbps: 48532.5, copy_mbps: 41000 }],
      ],
    );
    const table = readFileSync(join(out, 'summary.txt'), 'utf8');
    assert.match(table, /^ID\s+NAME\s+PLATFORM\s+STATE\s+EXIT\s+RUNTIME\s+COST\s+COPY_MBPS\s+TRIAD_MBPS$/m);
    assert.match(table, new RegExp(`^${ok}\\s+ends\\s+x86_64-linux-cpu\\s+completed\\s+0\\s+\\S+\\s+\\S+\\s+41000\\s+48532.5$`, 'm'));
    // The cost summed by platform, state and label, then in all.
    for (const line of [/^COST BY\s+VALUE\s+JOBS\s+COST$/m, /^platform\s+x86_64-linux-cpu\s+2\s+\S+$/m, /^state\s+completed\s+1\s+\S+$/m, /^state\s+timed_out\s+1\s+\S+$/m, /^label\s+suite=results\s+2\s+\S+$/m, /^total\s+2\s+\S+$/m]) {
      assert.match(table, line);
    }
    const jobs = await remexCli(['jobs', '--server', fx.url, '--label', 'suite=results']);
    assert.match(jobs.stdout, /^ID\s+NAME\s+PLATFORM\s+STATE\s+PROGRESS\s+STARTED\s+RUNTIME\s+COST\s+LABELS$/m);
    for (const line of [/^platform\s+x86_64-linux-cpu\s+2\s+\S+$/m, /^state\s+timed_out\s+1\s+\S+$/m, /^label\s+suite=results\s+2\s+\S+$/m, /^total\s+2\s+\S+$/m]) {
      assert.match(jobs.stdout, line);
    }

    const unfinished = await remexCli(['collect', '--server', fx.url, '--state', 'running', '--out', join(fx.dir, 'out2')]);
    assert.equal(unfinished.code, 125);
    assert.match(unfinished.stderr, /only finished jobs are collected/);
  });
});
