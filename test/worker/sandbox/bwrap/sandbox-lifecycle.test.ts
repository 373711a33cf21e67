/**
 * The sandbox as a component: what create() finds, concurrent runs, isolation between runs, request
 * validation, and the rlimit-only fallback used when a host has no usable cgroups.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { access, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test, type TestContext } from 'node:test';
import { isRemexError } from '../../../../src/core/errors.js';
import { DEFAULT_LIMITS } from '../../../../src/core/limits.js';
import { BwrapSandbox } from '../../../../src/worker/sandbox/bwrap/bwrap-sandbox.js';
import { RUN_CGROUP_PREFIX, listRunCgroups } from '../../../../src/worker/sandbox/bwrap/cgroup-probe.js';
import type { SandboxRequest, SandboxResult } from '../../../../src/worker/sandbox/sandbox.js';
import { BUILT_EXEC_HELPER } from '../../../../src/worker/sandbox/bwrap/host-layout.js';
import { processesWithMarker } from '../../../helpers/processes.js';
import { requireExecHelper, requireTools } from '../../../helpers/tools.js';

const sandboxes = new Map<string, Promise<BwrapSandbox>>();
function sandbox(cgroups: 'auto' | 'none' = 'auto'): Promise<BwrapSandbox> {
  let s = sandboxes.get(cgroups);
  if (!s) sandboxes.set(cgroups, (s = BwrapSandbox.create({ cgroups })));
  return s;
}

after(async () => {
  for (const s of sandboxes.values()) await (await s).close();
  const mine = (await listRunCgroups()).filter((dir) => dir.includes(`${RUN_CGROUP_PREFIX}${process.pid}-`));
  assert.deepEqual(mine, [], 'every run cgroup was removed');
});

async function freshRoot(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'remex-sandbox-lifecycle-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function sh(t: TestContext, script: string, extra: Partial<SandboxRequest> = {}, cgroups: 'auto' | 'none' = 'auto'): Promise<SandboxResult> {
  return (await sandbox(cgroups)).run({
    inputRoot: extra.inputRoot ?? (await freshRoot(t)),
    workingDirectory: '',
    argv: ['/bin/sh', '-c', script],
    env: { PATH: '/usr/bin:/bin' },
    stdinPath: null,
    timeoutMs: 10_000,
    graceMs: 200,
    limits: { ...DEFAULT_LIMITS },
    emulation: null,
    ...extra,
  });
}

describe('BwrapSandbox lifecycle', () => {
  test('create() probes the host and reports what it enforces', async (t) => {
    if (!requireTools(t, 'bwrap', 'unshare')) return;
    const s = await sandbox();
    assert.equal(s.capabilities.kind, 'bwrap');
    assert.ok(s.capabilities.notes.some((n) => n.startsWith('bubblewrap')), s.capabilities.notes.join('\n'));
    const hasCgroupV1 = (await readFile('/proc/self/mountinfo', 'utf8')).includes(' - cgroup cgroup ');
    if (hasCgroupV1) assert.equal(s.capabilities.treeLimits, true, s.capabilities.notes.join('\n'));
  });

  test('by default runs are launched by the remex-exec built with remex; an explicit one must exist', async (t) => {
    if (!requireTools(t, 'bwrap', 'unshare') || !requireExecHelper(t)) return;
    const s = await sandbox();
    assert.ok(s.capabilities.notes.includes(`launched by ${BUILT_EXEC_HELPER}`), s.capabilities.notes.join('\n'));
    const missing = join(await freshRoot(t), 'remex-exec');
    await assert.rejects(BwrapSandbox.create({ execHelperPath: missing }), (err: unknown) => isRemexError(err, 'UNAVAILABLE') && err.message.includes(missing));
  });

  test('the program holds no capability in any set (bwrap leaves an inheritable set; remex-exec clears it)', async (t) => {
    if (!requireTools(t, 'bwrap', 'unshare') || !requireExecHelper(t)) return;
    const r = await sh(t, 'grep ^Cap /proc/self/status');
    assert.equal(r.exitCode, 0, r.stderr.toString());
    const caps = Object.fromEntries(r.stdout.toString().trim().split('\n').map((l) => l.split(/:\s*/)));
    for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapAmb']) assert.match(caps[set] ?? 'missing', /^0+$/, `${set} ${caps[set]}`);
  });

  test('concurrent runs do not interfere', async (t) => {
    if (!requireTools(t, 'bwrap', 'unshare')) return;
    const runs = await Promise.all(
      Array.from({ length: 8 }, async (_, i) => {
        const root = await freshRoot(t);
        const stdin = join(root, '..', `${randomUUID()}.stdin`);
        await writeFile(stdin, `input ${i}`);
        t.after(() => rm(stdin, { force: true }));
        return sh(t, `echo "run ${i} $(cat)"; echo ${i} > mine; sleep 0.2; cat mine; exit ${i}`, { inputRoot: root, stdinPath: stdin });
      }),
    );
    runs.forEach((r, i) => {
      assert.equal(r.exitCode, i, r.stderr.toString());
      assert.equal(r.stdout.toString(), `run ${i} input ${i}\n${i}\n`);
    });
  });

  test('files one run leaves are not visible to the next', async (t) => {
    if (!requireTools(t, 'bwrap', 'unshare')) return;
    const first = await sh(t, 'echo left > /work/left.txt && echo left > /tmp/left.txt && echo left > "$HOME/left.txt"; echo done');
    assert.equal(first.stdout.toString(), 'done\n', first.stderr.toString());
    const second = await sh(t, 'ls -A /work /tmp; test -e /work/left.txt || test -e /tmp/left.txt && echo visible || echo clean');
    assert.equal(second.stdout.toString(), '/tmp:\n\n/work:\nclean\n', second.stderr.toString());
  });

  test('the input root is writable by the program, subdirectories included', async (t) => {
    if (!requireTools(t, 'bwrap', 'unshare')) return;
    const root = await freshRoot(t);
    await mkdir(join(root, 'sub', 'deeper'), { recursive: true });
    const r = await sh(t, 'touch ../top.txt out.txt deeper/out.txt && pwd', { inputRoot: root, workingDirectory: 'sub' });
    assert.equal(r.exitCode, 0, r.stderr.toString());
    assert.equal(r.stdout.toString(), '/work/sub\n');
    await Promise.all(['top.txt', 'sub/out.txt', 'sub/deeper/out.txt'].map((p) => access(join(root, p))));
  });

  test('the program gets exactly the environment it was given', async (t) => {
    if (!requireTools(t, 'bwrap', 'unshare')) return;
    const r = await sh(t, 'env | sort', { env: { PATH: '/usr/bin:/bin', B: 'two words', A: 'x=y', LD_PRELOAD: '/nonexistent.so' } });
    assert.equal(r.exitCode, 0, r.stderr.toString());
    assert.equal(r.stdout.toString(), 'A=x=y\nB=two words\nLD_PRELOAD=/nonexistent.so\nPATH=/usr/bin:/bin\nPWD=/work\n');
  });

  test('a program whose name contains "=" still runs', async (t) => {
    if (!requireTools(t, 'bwrap', 'unshare')) return;
    const root = await freshRoot(t);
    await writeFile(join(root, 'a=b'), '#!/bin/sh\necho "ran $0 $1"\n', { mode: 0o755 });
    const r = await (await sandbox()).run({ inputRoot: root, workingDirectory: '', argv: ['./a=b', 'arg'], env: {}, stdinPath: null, timeoutMs: 5_000, graceMs: 100, limits: { ...DEFAULT_LIMITS }, emulation: null });
    assert.equal(r.exitCode, 0, r.stderr.toString());
    assert.equal(r.stdout.toString(), 'ran ./a=b arg\n');
  });

  test('a missing program is a result (exit 127), not an error', async (t) => {
    if (!requireTools(t, 'bwrap', 'unshare')) return;
    const r = await (await sandbox()).run({ inputRoot: await freshRoot(t), workingDirectory: '', argv: ['./nope'], env: {}, stdinPath: null, timeoutMs: 5_000, graceMs: 100, limits: { ...DEFAULT_LIMITS }, emulation: null });
    assert.equal(r.exitCode, 127);
    assert.match(r.stderr.toString(), /nope/);
  });

  test('invalid requests are rejected with INVALID_ARGUMENT', async (t) => {
    if (!requireTools(t, 'bwrap', 'unshare')) return;
    const bad: Array<Partial<SandboxRequest>> = [
      { workingDirectory: '../outside' },
      { workingDirectory: 'does/not/exist' },
      { argv: ['/bin/true', 'nul\0byte'] },
      { argv: [] },
      { env: { 'A=B': 'x' } },
    ];
    for (const extra of bad) {
      await assert.rejects(
        sh(t, 'true', extra),
        (err: unknown) => isRemexError(err, 'INVALID_ARGUMENT'),
        JSON.stringify(extra),
      );
    }
  });

  test('a signal aborted before the run starts nothing', async (t) => {
    if (!requireTools(t, 'bwrap', 'unshare')) return;
    const marker = `remex-marker-${randomUUID()}`;
    const r = await sh(t, `echo ${marker}`, { signal: AbortSignal.abort() });
    assert.equal(r.cancelled, true);
    assert.equal(r.stdout.byteLength, 0);
  });

  test('close() releases the sandbox; later runs are refused', async (t) => {
    if (!requireTools(t, 'bwrap', 'unshare')) return;
    const s = await BwrapSandbox.create();
    await s.close();
    await assert.rejects(s.run({ inputRoot: await freshRoot(t), workingDirectory: '', argv: ['/bin/true'], env: {}, stdinPath: null, timeoutMs: 1_000, graceMs: 0, limits: { ...DEFAULT_LIMITS }, emulation: null }), (err: unknown) =>
      isRemexError(err, 'UNAVAILABLE'),
    );
  });
});

/** Pids of this process's children running the spawner (one per live BwrapSandbox with work to do). */
async function spawnerChildren(): Promise<number[]> {
  const tasks = await readdir(`/proc/${process.pid}/task`);
  const children = (await Promise.all(tasks.map((tid) => readFile(`/proc/${process.pid}/task/${tid}/children`, 'utf8').catch(() => '')))).join(' ');
  const pids = children.split(/\s+/).filter((p) => p !== '').map(Number);
  const cmdlines = await Promise.all(pids.map((pid) => readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')));
  return pids.filter((_, i) => cmdlines[i]?.includes('spawner-process.js') || cmdlines[i] === `${BUILT_EXEC_HELPER}\0spawner\0`);
}

async function parentOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The native spawner (remex-exec spawner) and the Node one used where remex-exec was not built. */
const SPAWNERS = [
  { kind: 'native', options: { execHelperPath: BUILT_EXEC_HELPER } },
  { kind: 'node', options: { execHelperPath: null } },
] as const;

for (const { kind, options } of SPAWNERS) describe(`the spawner process (${kind})`, () => {
  test('sandboxes are started by the spawner, not forked from this process, and get no descriptor beyond their stdio', async (t) => {
    if (!requireTools(t, 'bwrap', 'unshare') || (kind === 'native' && !requireExecHelper(t))) return;
    const s = await BwrapSandbox.create(options);
    t.after(() => s.close());
    const marker = `remex-marker-${randomUUID()}`;
    // fd 3 of ls is the directory it lists; anything else (a socket to the spawner above all) is a leak.
    const running = s.run({
      inputRoot: await freshRoot(t),
      workingDirectory: '',
      // The shell outlives the listing by a few seconds: time to find its ancestors, without cutting the listing short.
      argv: ['/bin/sh', '-c', 'ls -l /proc/self/fd/; sleep 3', marker],
      env: { PATH: '/usr/bin:/bin' },
      stdinPath: null,
      timeoutMs: 10_000,
      graceMs: 0,
      limits: { ...DEFAULT_LIMITS },
      emulation: null,
    });
    let sleeper = 0;
    await waitFor('the program', async () => ((sleeper = (await processesWithMarker(marker))[0] ?? 0) > 0));
    const ancestors: number[] = [];
    for (let pid = await parentOf(sleeper); pid > 1; pid = await parentOf(pid)) ancestors.push(pid);
    const r = await running;
    assert.equal(r.exitCode, 0, r.stderr.toString());
    // Other sandboxes of this test process have spawners of their own; one of them must be the ancestor.
    const spawners = await spawnerChildren();
    const spawner = ancestors.find((pid) => spawners.includes(pid));
    assert.ok(spawner, 'the sandbox descends from a spawner process');
    assert.equal(ancestors.indexOf(process.pid), ancestors.indexOf(spawner) + 1, 'this process forked only the spawner');
    const fds = r.stdout
      .toString()
      .split('\n')
      .map((line) => /(\d+) -> (.*)$/.exec(line))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => `${m[1]} ${m[2]}`);
    // stdout and stderr are socketpairs (Node's 'pipe'); descriptors inherited by this process are
    // overlaid with /dev/null; nothing else may be open, least of all a socket to the spawner.
    const byFd = new Map(fds.map((line) => [Number(line.split(' ')[0]), line.slice(line.indexOf(' ') + 1)]));
    assert.equal(byFd.get(0), '/dev/null');
    assert.match(byFd.get(1) ?? '', /^(pipe|socket):/);
    assert.match(byFd.get(2) ?? '', /^(pipe|socket):/);
    assert.match(byFd.get(3) ?? '', /^\/proc\/\d+\/fd$/);
    for (const [fd, target] of byFd) if (fd > 3) assert.equal(target, '/dev/null', `descriptor ${fd} leads to ${target}`);
  });

  test('a spawner that dies fails its runs, leaves nothing running, and is replaced for the next run', async (t) => {
    if (!requireTools(t, 'bwrap', 'unshare') || (kind === 'native' && !requireExecHelper(t))) return;
    const before = new Set(await spawnerChildren());
    const s = await BwrapSandbox.create(options);
    t.after(() => s.close());
    const own = (await spawnerChildren()).filter((pid) => !before.has(pid));
    assert.equal(own.length, 1, 'create() started one spawner');
    const ownMarker = `remex-marker-${randomUUID()}`;
    const doomed = s.run({
      inputRoot: await freshRoot(t),
      workingDirectory: '',
      argv: ['/bin/sh', '-c', 'sleep 30', ownMarker],
      env: {},
      stdinPath: null,
      timeoutMs: 20_000,
      graceMs: 0,
      limits: { ...DEFAULT_LIMITS },
      emulation: null,
    });
    await waitFor('the program', async () => (await processesWithMarker(ownMarker)).length > 0);
    process.kill(own[0] as number, 'SIGKILL');
    await assert.rejects(doomed, (err: unknown) => isRemexError(err, 'INTERNAL'));
    await waitFor('the sandbox to die with its spawner', async () => (await processesWithMarker(ownMarker)).length === 0);
    const r = await s.run({ inputRoot: await freshRoot(t), workingDirectory: '', argv: ['/bin/sh', '-c', 'echo again'], env: {}, stdinPath: null, timeoutMs: 10_000, graceMs: 0, limits: { ...DEFAULT_LIMITS }, emulation: null });
    assert.equal(r.stdout.toString(), 'again\n');
  });

  test('close() ends the spawner once the runs in flight are done', async (t) => {
    if (!requireTools(t, 'bwrap', 'unshare') || (kind === 'native' && !requireExecHelper(t))) return;
    const before = new Set(await spawnerChildren());
    const s = await BwrapSandbox.create(options);
    const [spawner] = (await spawnerChildren()).filter((pid) => !before.has(pid));
    assert.ok(spawner, 'create() started a spawner');
    const running = s.run({ inputRoot: await freshRoot(t), workingDirectory: '', argv: ['/bin/sh', '-c', 'sleep 0.3; echo done'], env: {}, stdinPath: null, timeoutMs: 10_000, graceMs: 0, limits: { ...DEFAULT_LIMITS }, emulation: null });
    await s.close();
    const r = await running;
    assert.equal(r.stdout.toString(), 'done\n', 'a run in flight is not affected by close()');
    await waitFor('the spawner to exit', async () => !(await spawnerChildren()).includes(spawner));
  });
});

describe('BwrapSandbox without cgroups (rlimits and the pid namespace only)', () => {
  test('reports no tree limits and still runs programs', async (t) => {
    if (!requireTools(t, 'bwrap', 'unshare')) return;
    const s = await sandbox('none');
    assert.equal(s.capabilities.treeLimits, false);
    const r = await sh(t, 'echo hi; exit 4', {}, 'none');
    assert.equal(r.exitCode, 4);
    assert.equal(r.stdout.toString(), 'hi\n');
  });

  test('a timeout terminates every process, daemons included', async (t) => {
    if (!requireTools(t, 'bwrap', 'unshare')) return;
    const marker = `remex-marker-${randomUUID()}`;
    const script = `(setsid sh -c 'trap "" TERM; while :; do sleep 0.05; done' ${marker} &) ; trap "" TERM; echo started; while :; do sleep 0.05; done`;
    const r = await sh(t, script, { timeoutMs: 500, graceMs: 200 }, 'none');
    assert.equal(r.timedOut, true);
    assert.equal(r.signal, 'SIGKILL');
    assert.equal(r.stdout.toString(), 'started\n');
    assert.deepEqual(await processesWithMarker(marker), []);
  });

  test('CPU time is limited per process by RLIMIT_CPU', async (t) => {
    if (!requireTools(t, 'bwrap', 'unshare')) return;
    const r = await sh(t, 'while :; do :; done', { limits: { ...DEFAULT_LIMITS, cpuTimeMs: 1_000 } }, 'none');
    assert.equal(r.limitExceeded, 'cpu_time');
    assert.equal(r.signal, 'SIGXCPU');
  });
});
