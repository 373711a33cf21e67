/**
 * The soak of issue 18, short: bench/soak.ts's mixed load (native, qemu-user, cache hits, timeouts,
 * failures, 1 MB outputs, cancellations) for 60 s at 20/s against a `remex serve` of its own. Asserted:
 * every execution ended as it should, and what the server holds — descriptors, threads, descendant
 * processes, run cgroups, run directories, temporary files — is back to its baseline once the load ends;
 * RSS grows by less than half (generous: a 60 s run is mostly the heap settling). Latency is the bench's
 * business (`REMEX_SOAK_SECONDS=600 npm run bench -- soak`), not asserted here.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { judgeSoak, runSoak } from '../../bench/soak.js';
import { requireExecHelper, requireTools } from '../helpers/tools.js';

const SECONDS = Number(process.env.REMEX_SOAK_TEST_SECONDS ?? 60);
const RATE = Number(process.env.REMEX_SOAK_TEST_RATE ?? 20);

test(`soak: ${SECONDS} s of mixed executions at ${RATE}/s leave nothing behind`, { timeout: (SECONDS + 120) * 1000 }, async (t) => {
  if (!requireTools(t, 'bwrap', 'gcc', 'aarch64-linux-gnu-gcc', 'qemu-aarch64-static')) return;
  if (!requireExecHelper(t)) return;
  const lines: string[] = [];
  const report = await runSoak({ seconds: SECONDS, rate: RATE, slots: 4, log: (line) => lines.push(line) });
  judgeSoak(report, (line) => lines.push(line));
  for (const line of lines) t.diagnostic(line);
  const context = lines.join('\n');
  assert.ok(report.completed > 0, context);
  assert.deepEqual(report.wrong, {}, `executions ended otherwise than expected: ${report.firstError}\n${context}`);
  for (const [k, base] of Object.entries(report.baseline)) {
    assert.ok(report.after[k as keyof typeof report.after] <= base, `${k}: ${report.after[k as keyof typeof report.after]} after the load, ${base} before\n${context}`);
  }
  assert.deepEqual(report.leaks, [], context);
  assert.ok(report.peak.processes > report.baseline.processes, `the sampling saw no run's processes at all\n${context}`);
  assert.ok(report.rssGrowth < 0.5, `RSS grew ${(report.rssGrowth * 100).toFixed(1)}%\n${context}`);
});
