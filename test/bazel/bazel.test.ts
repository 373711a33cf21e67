/**
 * Real Bazel (Debian's bazel-bootstrap 4.2) on a real `remex serve` over REAPI v2 gRPC: remote execution of
 * gcc genrules, remote cache hits after `bazel clean`, the remote cache alone, and a Starlark rule routed by
 * its exec_properties to the (emulated) aarch64 worker. Written for an x86_64 host, where aarch64 is
 * emulated by qemu-user.
 */
import Database from 'better-sqlite3';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { compileC, requireTools } from '../helpers/tools.js';
import { BazelWorkspace, listExecutions, startRemexForBazel } from './bazel.js';
import type { BazelRun, LoggedSpawn } from './bazel.js';

/** What the fixture's last genrule captures from the program the others compiled and linked. */
const HELLO = 'hello from remex: 42 built by bazel\n';

function assertOk(run: BazelRun): void {
  assert.equal(run.code, 0, `bazel failed (code ${run.code}, signal ${run.signal}):\n${run.output}`);
}

function genrules(run: BazelRun): LoggedSpawn[] {
  const spawns = run.spawns.filter((s) => s.mnemonic === 'Genrule');
  assert.equal(spawns.length, 4, `expected 4 genrule actions in the execution log:\n${run.output}`);
  return spawns;
}

test('Bazel builds C through gcc genrules with remex as remote executor; after bazel clean all are remote cache hits', async (t) => {
  if (!requireTools(t, 'bazel', 'bwrap', 'gcc')) return;
  const remex = await startRemexForBazel(t, ['--platform', 'x86_64-linux-cpu']);
  const ws = BazelWorkspace.create(t, 'genrules');
  const remote = [`--remote_executor=${remex.grpc}`, '--spawn_strategy=remote'];

  const first = await ws.run('build', [...remote, '//...'], { executionLog: true });
  assertOk(first);
  assert.equal(ws.readOutput('hello.txt'), HELLO);
  assert.equal(first.processes.remote, 4, `Bazel's summary should count 4 remote processes:\n${first.output}`);
  const ran = genrules(first);
  for (const s of ran) assert.equal(s.runner, 'remote', `${s.listedOutputs.join(' ')} ran by ${s.runner}:\n${first.output}`);

  // remex's side of the same story: four jobs, each run (not cached) on the native platform.
  const jobs = await listExecutions(remex.http);
  assert.equal(jobs.length, 4, JSON.stringify(jobs));
  for (const j of jobs) {
    assert.deepEqual([j.state, j.code, j.platform, j.emulated, j.cached], ['completed', 0, 'x86_64-linux-cpu', false, false], JSON.stringify(j));
  }
  assert.deepEqual(jobs.flatMap((j) => j.outputFiles.map((f) => f.path)).sort(), ran.flatMap((s) => s.listedOutputs).sort());

  assertOk(await ws.run('clean'));
  const second = await ws.run('build', [...remote, '//...'], { executionLog: true });
  assertOk(second);
  assert.equal(ws.readOutput('hello.txt'), HELLO);
  assert.equal(second.processes['remote cache hit'], 4, `all 4 actions should be remote cache hits:\n${second.output}`);
  assert.equal(second.processes.remote, undefined, second.output);
  for (const s of genrules(second)) assert.ok(s.remoteCacheHit && s.runner === 'remote cache hit', `${s.listedOutputs.join(' ')}: ${s.runner}`);
  assert.equal((await listExecutions(remex.http)).length, 4, 'cache hits run nothing');
});

test('builds without the bytes: an action whose cached output is gone from remex runs again instead of breaking the build', async (t) => {
  if (!requireTools(t, 'bazel', 'bwrap', 'gcc')) return;
  const remex = await startRemexForBazel(t, ['--platform', 'x86_64-linux-cpu']);
  const ws = BazelWorkspace.create(t, 'genrules');
  // Only the requested target's output comes back to the client; objects and the binary stay in remex.
  const remote = [`--remote_executor=${remex.grpc}`, '--spawn_strategy=remote', '--remote_download_toplevel', '//:hello_out'];

  const first = await ws.run('build', remote, { executionLog: true });
  assertOk(first);
  assert.equal(ws.readOutput('hello.txt'), HELLO);
  assert.equal(first.processes.remote, 4, first.output);
  assert.equal(ws.hasOutput('greet.o'), false, 'an intermediate output was downloaded: not a build without the bytes');

  // greet.o leaves remex's CAS behind its back (as an evicted or lost blob would): a row of the small-blob
  // database, deleted through another connection.
  const greet = (await listExecutions(remex.http)).flatMap((j) => j.outputFiles).find((f) => f.path === 'bazel-out/k8-fastbuild/bin/greet.o');
  assert.ok(greet, 'remex recorded no greet.o output');
  const db = new Database(join(remex.dataDir, 'cas', 'small-blobs.sqlite'));
  try {
    assert.equal(db.prepare('DELETE FROM blobs WHERE hash = ?').run(greet.digest.hash).changes, 1, 'greet.o was not a row of the small-blob database');
  } finally {
    db.close();
  }

  // A new link step needs greet.o as an input. After `bazel clean` Bazel asks remex's action cache about
  // the compile again: an entry whose output is gone must be a miss (it is run again, greet.o comes back),
  // or the link would be sent with an input nobody has and the build would fail.
  ws.edit('BUILD', '-o $@",\n    executable = True', '-o $@ -s",\n    executable = True');
  assertOk(await ws.run('clean'));
  const second = await ws.run('build', remote, { executionLog: true });
  assertOk(second);
  assert.equal(ws.readOutput('hello.txt'), HELLO);
  const runners = Object.fromEntries(genrules(second).map((s) => [s.listedOutputs.join(' ').split('/').at(-1), s.runner]));
  assert.deepEqual(runners, { 'greet.o': 'remote', 'main.o': 'remote cache hit', hello: 'remote', 'hello.txt': 'remote' }, second.output);
  assert.equal((await listExecutions(remex.http)).length, 4 + 3);
});

test('Bazel with --remote_cache alone runs actions locally, fills remex\'s cache and reads it back after bazel clean', async (t) => {
  if (!requireTools(t, 'bazel', 'gcc')) return;
  // No worker at all: this server could not execute anything, only store.
  const remex = await startRemexForBazel(t, ['--workers', '0']);
  const ws = BazelWorkspace.create(t, 'genrules');
  const cache = [`--remote_cache=${remex.grpc}`, '--spawn_strategy=local'];

  const first = await ws.run('build', [...cache, '//...'], { executionLog: true });
  assertOk(first);
  assert.equal(ws.readOutput('hello.txt'), HELLO);
  assert.equal(first.processes.local, 4, first.output);
  for (const s of genrules(first)) assert.ok(!s.remoteCacheHit && s.runner === 'local', `${s.listedOutputs.join(' ')}: ${s.runner}`);

  assertOk(await ws.run('clean'));
  const second = await ws.run('build', [...cache, '//...'], { executionLog: true });
  assertOk(second);
  assert.equal(ws.readOutput('hello.txt'), HELLO);
  assert.equal(second.processes['remote cache hit'], 4, `the rebuild should come from remex's cache:\n${second.output}`);
  for (const s of genrules(second)) assert.ok(s.remoteCacheHit, `${s.listedOutputs.join(' ')}: ${s.runner}`);

  // Another instance name is another action cache: nothing there yet.
  assertOk(await ws.run('clean'));
  const other = await ws.run('build', [...cache, '--remote_instance_name=other', '//...']);
  assertOk(other);
  assert.equal(other.processes.local, 4, `instance "other" should miss the cache:\n${other.output}`);
  assert.deepEqual(await listExecutions(remex.http), [], 'a remote cache executes nothing');
});

test('a Starlark rule with exec_properties ISA arm-a64 runs its aarch64 tool on the emulated aarch64 worker', async (t) => {
  if (!requireTools(t, 'bazel', 'bwrap', 'gcc', 'aarch64-linux-gnu-gcc', 'qemu-aarch64-static')) return;
  const tool = compileC({ file: 'bazel/tools/arch_probe.c' }, 'aarch64');
  const remex = await startRemexForBazel(t, ['--platform', 'x86_64-linux-cpu', '--platform', 'aarch64-linux-cpu']);
  const ws = BazelWorkspace.create(t, 'arch');
  ws.addExecutable(tool, 'arch_probe_aarch64');

  const run = await ws.run('build', [`--remote_executor=${remex.grpc}`, '--spawn_strategy=remote', '//...'], { executionLog: true });
  assertOk(run);
  // Built for aarch64, and the machine it ran on says it is one (qemu-user reports the guest's uname).
  const probe = ws.readOutput('probe.txt');
  assert.equal(probe, 'built-for=aarch64 machine=aarch64 long-bits=64\nEMULATED, BUT REAL\n');
  // The genrule that reads it ran on the native platform in the same build.
  assert.equal(ws.readOutput('report.txt'), `${probe}native=x86_64\n`);

  const probeSpawn = run.spawns.find((s) => s.mnemonic === 'ArchProbe');
  assert.ok(probeSpawn, run.output);
  assert.equal(probeSpawn.runner, 'remote', run.output);
  const properties = Object.fromEntries((probeSpawn.platform?.properties ?? []).map((p) => [p.name, p.value]));
  assert.deepEqual(properties, { OSFamily: 'linux', ISA: 'arm-a64' });

  const jobs = await listExecutions(remex.http);
  const byOutput = (name: string) => jobs.find((j) => j.outputFiles.some((f) => f.path.endsWith(`/${name}`)));
  const probeJob = byOutput('probe.txt');
  assert.ok(probeJob, JSON.stringify(jobs));
  assert.deepEqual([probeJob.state, probeJob.code, probeJob.platform, probeJob.emulated], ['completed', 0, 'aarch64-linux-cpu', true], JSON.stringify(probeJob));
  const reportJob = byOutput('report.txt');
  assert.ok(reportJob, JSON.stringify(jobs));
  assert.deepEqual([reportJob.platform, reportJob.emulated], ['x86_64-linux-cpu', false], JSON.stringify(reportJob));

  // A platform remex can name but no worker here serves: Bazel fails at once with remex's reason.
  const started = Date.now();
  const refused = await ws.run('build', [`--remote_executor=${remex.grpc}`, '--spawn_strategy=remote', '//:probe_riscv']);
  assert.notEqual(refused.code, 0, refused.output);
  assert.match(refused.output, /FAILED_PRECONDITION: no worker serves platform riscv64-linux-cpu/, refused.output);
  assert.ok(Date.now() - started < 60_000, 'refused at once, not after a timeout');
  assert.equal((await listExecutions(remex.http)).length, jobs.length, 'nothing was queued for riscv64');
});
