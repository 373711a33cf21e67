/**
 * remex-exec (native/remex-exec.c) on its own, outside any sandbox: what the launcher sets up before it
 * execs, how the uid switch hands over the environment, and the exit statuses of each failure. The
 * sandbox battery runs it in every real run.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { BUILT_EXEC_HELPER } from '../../../../src/worker/sandbox/bwrap/host-layout.js';
import { IN_CI, requireExecHelper, requireTools } from '../../../helpers/tools.js';

interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
}

function helper(args: string[], opts: { env?: Record<string, string>; extraFd?: boolean } = {}): Ran {
  // An extra descriptor (3, a pipe) shows what the program is left holding.
  const stdio: Array<'ignore' | 'pipe'> = opts.extraFd ? ['ignore', 'pipe', 'pipe', 'pipe'] : ['ignore', 'pipe', 'pipe'];
  const r = spawnSync(BUILT_EXEC_HELPER, args, { env: opts.env ?? {}, stdio, encoding: 'utf8', timeout: 10_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function scratch(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'remex-exec-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The uid switch needs root, as the worker has when it runs programs as another uid. */
function requireRoot(t: TestContext): boolean {
  if (process.getuid?.() === 0) return true;
  if (IN_CI) throw new Error('remex-exec as needs root (CI runs as root)');
  t.skip('not root');
  return false;
}

describe('remex-exec launch', () => {
  test('writes each value in order, sets the rlimits, then execs the program, which inherits them', (t) => {
    if (!requireExecHelper(t)) return;
    const dir = scratch(t);
    const [a, b] = [join(dir, 'a'), join(dir, 'b')];
    writeFileSync(a, '');
    writeFileSync(b, '');
    const r = helper(
      ['launch', '-w', a, 'first', '-w', b, 'second', '-r', 'nofile', '40', '50', '-r', 'cpu', '7', '8', '-r', 'fsize', '1024', '1024', '-r', 'core', '0', '0', '--',
        '/bin/sh', '-c', 'cat "$1" "$2"; echo; ulimit -S -n; ulimit -H -n; ulimit -S -t; ulimit -H -t; ulimit -f; ulimit -c', 'sh', a, b],
      { env: { PATH: '/usr/bin:/bin' } },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'firstsecond\n40\n50\n7\n8\n2\n0\n');
  });

  test('-x opens its own file for the program at that descriptor', (t) => {
    if (!requireExecHelper(t)) return;
    const r = helper(['launch', '-x', '5', '--', '/bin/sh', '-c', 'readlink /proc/self/fd/5']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), BUILT_EXEC_HELPER);
  });

  test('-d leaves a copy of a descriptor at another number for the program', (t) => {
    if (!requireExecHelper(t)) return;
    // Descriptor 3 is a pipe from this test; the program finds the same pipe at 7.
    const r = helper(['launch', '-d', '3', '7', '--', '/bin/sh', '-c', 'test "$(readlink /proc/self/fd/3)" = "$(readlink /proc/self/fd/7)" && echo same'], { extraFd: true });
    assert.deepEqual([r.status, r.stdout], [0, 'same\n'], r.stderr);
  });

  test('any failure exits 125 before the program runs, saying what failed', (t) => {
    if (!requireExecHelper(t)) return;
    const dir = scratch(t);
    const ran = join(dir, 'ran');
    const program = ['--', '/bin/sh', '-c', 'echo > "$1"', 'sh', ran];
    const cases: Array<[string[], RegExp]> = [
      [['-w', join(dir, 'missing', 'file'), '1'], /missing\/file: No such file or directory/],
      [['-r', 'stack', '1', '1'], /unknown resource: stack/],
      [['-d', '3', '1'], /not a descriptor above 2: 1/],
      [['-d', '9', '7'], /dup2: Bad file descriptor/],
      [['-r', 'nofile', '-1', '10'], /not a limit: -1/],
      [['-r', 'nofile', '20', '10'], /nofile: Invalid argument/],
      [['-x', '2'], /not a descriptor above 2/],
      [['-q'], /usage/],
    ];
    for (const [steps, message] of cases) {
      const r = helper(['launch', ...steps, ...program]);
      assert.equal(r.status, 125, `${steps.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.equal(existsSync(ran), false, `${steps.join(' ')}: the program did not run`);
    }
    const noProgram = helper(['launch', '--']);
    assert.equal(noProgram.status, 125);
    const missing = helper(['launch', '--', join(dir, 'nope')]);
    assert.equal(missing.status, 125);
    assert.match(missing.stderr, /nope: No such file or directory/);
    assert.equal(helper(['bogus']).status, 125);
  });
});

describe('remex-exec as', () => {
  test('switches groups, gid and uid, the environment exactly the assignments, no descriptor beyond stdio', (t) => {
    if (!requireExecHelper(t) || !requireRoot(t)) return;
    const r = helper(['as', '65534', '65533', '3', 'PATH=/usr/bin:/bin', 'EMPTY=', 'EQ=a=b', 'sh', '-c', 'id -u; id -g; id -G; env | sort; ls /proc/self/fd; grep ^Cap /proc/self/status'], {
      env: { LD_PRELOAD: 'not-for-the-program.so', HOST_SECRET: 'x' },
      extraFd: true,
    });
    assert.equal(r.status, 0, r.stderr);
    const [uid, gid, groups, ...rest] = r.stdout.trim().split('\n');
    assert.deepEqual([uid, gid, groups], ['65534', '65533', '65533']);
    const env = rest.filter((l) => l.includes('='));
    // sh adds PWD; nothing of remex-exec's own environment is left.
    assert.deepEqual(env.filter((l) => !l.startsWith('PWD=')), ['EMPTY=', 'EQ=a=b', 'PATH=/usr/bin:/bin']);
    const fds = rest.filter((l) => !l.includes('=') && !l.startsWith('Cap'));
    assert.deepEqual(fds.slice(0, 3), ['0', '1', '2']);
    assert.ok(fds.length === 4, `only stdio and ls's own directory: ${fds.join(' ')}`);
    const caps = Object.fromEntries(rest.filter((l) => l.startsWith('Cap')).map((l) => l.split(/:\s*/)));
    for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapAmb']) assert.match(caps[set] ?? 'missing', /^0+$/, set);
  });

  test('the program is looked up in the new PATH; missing is 127, not executable 126; a name holding "=" runs', (t) => {
    if (!requireExecHelper(t) || !requireRoot(t)) return;
    const dir = scratch(t);
    chmodSync(dir, 0o755);
    writeFileSync(join(dir, 'tool'), '#!/bin/sh\necho "tool $1"\n', { mode: 0o755 });
    writeFileSync(join(dir, 'a=b'), '#!/bin/sh\necho "eq $1"\n', { mode: 0o755 });
    writeFileSync(join(dir, 'plain'), 'not a program\n', { mode: 0o644 });
    // No "#!": the kernel refuses it, and like execvp (and env) it then runs through /bin/sh.
    writeFileSync(join(dir, 'bare'), 'echo "bare $0 $1"\n', { mode: 0o755 });
    const found = helper(['as', '65534', '65534', '1', `PATH=${dir}:/usr/bin:/bin`, 'tool', 'x']);
    assert.deepEqual([found.status, found.stdout], [0, 'tool x\n']);
    const eq = helper(['as', '65534', '65534', '0', join(dir, 'a=b'), 'y']);
    assert.deepEqual([eq.status, eq.stdout], [0, 'eq y\n']);
    const bare = helper(['as', '65534', '65534', '1', `PATH=/usr/bin:${dir}`, 'bare', 'z']);
    assert.deepEqual([bare.status, bare.stdout], [0, `bare ${join(dir, 'bare')} z\n`], bare.stderr);
    const missing = helper(['as', '65534', '65534', '1', `PATH=${dir}`, 'nope']);
    assert.equal(missing.status, 127);
    assert.match(missing.stderr, /nope: No such file or directory/);
    const denied = helper(['as', '65534', '65534', '0', join(dir, 'plain')]);
    assert.equal(denied.status, 126);
    assert.match(denied.stderr, /plain: Permission denied/);
  });

  test('the program gets no new user namespace; fork still works', (t) => {
    if (!requireExecHelper(t) || !requireRoot(t) || !requireTools(t, 'unshare', 'sh')) return;
    const env = 'PATH=/usr/bin:/bin';
    const userns = helper(['as', '65534', '65534', '1', env, 'unshare', '--user', 'true']);
    assert.notEqual(userns.status, 0);
    assert.match(userns.stderr, /Operation not permitted/);
    // clone(CLONE_NEWUSER) and the keyrings are attacked end to end in test/e2e/hostile-battery.
    const plain = helper(['as', '65534', '65534', '1', env, 'unshare', '--ipc', 'true']);
    assert.notEqual(plain.status, 0, 'other namespaces stay denied by the missing capability');
    const ok = helper(['as', '65534', '65534', '1', env, 'sh', '-c', 'true & wait; echo forked']);
    assert.deepEqual([ok.status, ok.stdout], [0, 'forked\n'], ok.stderr);
  });

  test('-s: waits for the program and reports its own end on that descriptor, which the program does not hold', (t) => {
    if (!requireExecHelper(t) || !requireRoot(t)) return;
    // Descriptor 3 (a pipe to this test) is the status descriptor; the program lists its own descriptors.
    const run = (script: string) => {
      // In a session of its own: the program's kill of its process group must not reach this test.
      const r = spawnSync('setsid', ['-w', BUILT_EXEC_HELPER, 'as', '-s', '3', '65534', '65534', '1', 'PATH=/usr/bin:/bin', 'sh', '-c', script], { env: {}, stdio: ['ignore', 'pipe', 'pipe', 'pipe'], encoding: 'utf8', timeout: 10_000 });
      return { status: r.status, stdout: r.stdout, stderr: r.stderr, report: String(r.output[3] ?? '') };
    };
    const exited = run('ls /proc/$$/fd; exit 130');
    assert.deepEqual([exited.status, exited.report], [130, '{ "remex-exit-code": 130 }\n'], exited.stderr);
    assert.deepEqual(exited.stdout.trim().split('\n').filter((fd) => Number(fd) > 2 && Number(fd) < 10), [], 'the status descriptor closes on exec');
    const killed = run('kill -INT $$');
    assert.deepEqual([killed.status, killed.report], [130, '{ "remex-signal": 2 }\n'], killed.stderr);
    // The waiter blocks signals: a kill of the whole process group ends the program, not the report.
    const group = run('kill -TERM 0');
    assert.deepEqual([group.status, group.report], [143, '{ "remex-signal": 15 }\n'], group.stderr);
    const missing = run('exec /nonexistent');
    assert.deepEqual([missing.status, missing.report], [127, '{ "remex-exit-code": 127 }\n']);
  });

  test('bad arguments exit 125 and run nothing', (t) => {
    if (!requireExecHelper(t) || !requireRoot(t)) return;
    const dir = scratch(t);
    const marker = join(dir, 'ran');
    const sh = ['/bin/sh', '-c', `echo > ${marker}`];
    for (const args of [
      ['x', '1', '0', ...sh],
      ['1', '1', '5', 'A=1', ...sh],
      ['1', '1', '1', '=1', ...sh],
      ['1', '1', '1', 'NOEQUALS', ...sh],
      ['4294967295', '1', '0', ...sh],
      ['1', '1', '0'],
      ['-s', '2', '1', '1', '0', ...sh],
      ['-s', 'x', '1', '1', '0', ...sh],
    ]) {
      const r = helper(['as', ...args]);
      assert.equal(r.status, 125, `${args.join(' ')}: ${r.stderr}`);
    }
    assert.equal(existsSync(marker), false);
  });
});
