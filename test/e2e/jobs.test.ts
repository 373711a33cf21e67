/**
 * Fire-and-forget jobs through the CLI and the HTTP API, end to end: a real `remex serve` (embedded), real
 * programs in the real sandbox. `remex submit` returns at once with an id; `status`, `jobs`, `wait` and
 * `cancel` find the job again from a new process; listings select by state, name and labels, a page at a time.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RemexClient } from '../../src/client/remex-client.js';
import { isRemexError } from '../../src/core/errors.js';
import { remexCli, serveInTempDir } from '../helpers/remex-cli.js';
import type { ServeFixture } from '../helpers/remex-cli.js';
import { eventually } from '../helpers/processes.js';
import { compileC, requireTools } from '../helpers/tools.js';

let fx: ServeFixture;
let client: RemexClient;

describe('fire-and-forget jobs', () => {
  before(async () => {
    fx = await serveInTempDir('remex-jobs-', ['--workers', '2', '--platform', 'x86_64-linux-cpu']);
    client = new RemexClient(fx.url);
  });
  after(async () => {
    await fx?.stop();
  });

  test('submit prints an id at once; status, jobs and wait find the job; wait exits with the program\'s code', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const sleepy = compileC({ file: 'programs/sleepy.c' }, 'x86_64');
    const echo = compileC({ file: 'programs/echo.c' }, 'x86_64');
    const submitted = await remexCli(['submit', '--server', fx.url, '--name', 'nap-1', '--label', 'suite=naps', '--label', 'run=1', '--max-runtime', '30s', sleepy, '--', '1500']);
    assert.equal(submitted.code, 0, submitted.stderr);
    const id = submitted.stdout.trim();
    assert.match(id, /^[0-9a-f-]{36}$/);
    assert.match(submitted.stderr, /remex status /);

    const running = await client.getExecution(id);
    assert.ok(running.state === 'queued' || running.state === 'running', running.state);
    assert.deepEqual([running.name, running.labels], ['nap-1', { suite: 'naps', run: '1' }]);
    const status = await remexCli(['status', id, '--server', fx.url]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^name\s+nap-1$/m);
    assert.match(status.stdout, /^labels\s+suite=naps,run=1$/m);

    const other = await remexCli(['submit', '--server', fx.url, '--env', 'EXIT_CODE=7', '--label', 'suite=echo', echo, '--', 'x']);
    const otherId = other.stdout.trim();
    const jobs = await remexCli(['jobs', '--server', fx.url, '--label', 'suite=naps']);
    assert.equal(jobs.code, 0, jobs.stderr);
    assert.match(jobs.stdout, new RegExp(`^${id}\\s+nap-1\\s+x86_64-linux-cpu\\s+(queued|running|completed)`, 'm'));
    assert.doesNotMatch(jobs.stdout, new RegExp(otherId));

    const waited = await remexCli(['wait', id, '--server', fx.url]);
    assert.equal(waited.code, 0, waited.stderr);
    assert.match(waited.stderr, /ran on x86_64-linux-cpu, native/);
    const otherWaited = await remexCli(['wait', otherId, '--server', fx.url, '-q']);
    assert.equal(otherWaited.code, 7);
    const done = await remexCli(['jobs', '--server', fx.url, '--state', 'completed', '--json']);
    assert.deepEqual(
      (JSON.parse(done.stdout) as Array<{ id: string }>).map((j) => j.id).sort(),
      [id, otherId].sort(),
    );
    // The timeout came from --max-runtime: 30 s.
    const view = await client.getExecution(id);
    assert.ok(view.startedAt !== null && view.completedAt !== null && Date.parse(view.completedAt) >= Date.parse(view.startedAt));
  });

  test('cancel stops a running job; a submitted job is never merged with an identical one, and always runs', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const sleepy = compileC({ file: 'programs/sleepy.c' }, 'x86_64');
    const a = (await remexCli(['submit', '--server', fx.url, '--label', 'suite=cancel', sleepy])).stdout.trim();
    const b = (await remexCli(['submit', '--server', fx.url, '--label', 'suite=cancel', sleepy])).stdout.trim();
    assert.notEqual(a, b, 'two jobs, not one merged');
    await eventually(async () => ((await client.getExecution(a)).state === 'running' ? true : undefined), 10_000, 'the job running');
    const cancelled = await remexCli(['cancel', a, '--server', fx.url]);
    assert.equal(cancelled.code, 0, cancelled.stderr);
    await eventually(async () => ((await client.getExecution(a)).state === 'cancelled' ? true : undefined), 10_000, 'the job cancelled');
    await client.cancel(b);
    const waited = await remexCli(['wait', a, '--server', fx.url]);
    assert.equal(waited.code, 125);
  });

  test('the listing API: pages, filters, and clear refusals', async () => {
    const page1 = await client.listExecutions({ limit: 2 });
    assert.equal(page1.executions.length, 2);
    assert.ok(page1.next);
    const page2 = await client.listExecutions({ limit: 2, after: page1.next as string });
    assert.ok(page2.executions.every((e) => !page1.executions.some((f) => f.id === e.id)), 'no overlap');
    assert.equal((await client.listExecutions({ since: '1h', states: ['cancelled'] })).executions.length, 2);
    assert.equal((await client.listExecutions({ since: '2000-01-01T00:00:00Z', labels: { suite: 'naps', run: '1' } })).executions.length, 1);
    for (const [path, pattern] of [
      ['?state=bogus', /state "bogus" is not one of queued, running/],
      ['?label=1bad=x', /label: label name "1bad"/],
      ['?since=yesterday', /since "yesterday"/],
      ['?limit=0', /limit must be an integer from 1 to 1000/],
      ['?limit=abc', /limit must be an integer/],
      ['?colour=red', /colour/],
    ] as const) {
      await assert.rejects(client.request('GET', `/v1/executions${path}`), (err: unknown) => isRemexError(err, 'INVALID_ARGUMENT') && pattern.test((err as Error).message), path);
    }
    const badDuration = await remexCli(['submit', '--server', fx.url, '--max-runtime', '4 hours', '/bin/true']);
    assert.equal(badDuration.code, 125);
    assert.match(badDuration.stderr, /--max-runtime "4 hours"/);
    const unknown = await remexCli(['status', 'no-such-job', '--server', fx.url]);
    assert.equal(unknown.code, 125);
    assert.match(unknown.stderr, /NOT_FOUND: no execution no-such-job/);
  });
});
