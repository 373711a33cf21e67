/**
 * The sandbox's pure parts and its host-facing parsers, against fixed inputs and fake /proc and
 * cgroup trees: exit statuses, output capture, the launcher script, the bwrap invocation, mountinfo
 * parsing, the cgroup v2 adapter (which this CI host may not have), inherited descriptors.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { isRemexError } from '../../../../src/core/errors.js';
import { DEFAULT_LIMITS } from '../../../../src/core/limits.js';
import { EXEC_HELPER_FD, PROGRAM_STATUS_FD, planInvocation, sandboxWorkingDirectory, validateCommand, type InvocationInput } from '../../../../src/worker/sandbox/bwrap/bwrap-args.js';
import { cgroupDir, parseCgroupMounts, parseProcCgroup, probeCgroups } from '../../../../src/worker/sandbox/bwrap/cgroup-probe.js';
import { keyedValue } from '../../../../src/worker/sandbox/bwrap/cgroups.js';
import { decodeShellStatus, signalName } from '../../../../src/worker/sandbox/bwrap/exit-status.js';
import { findInheritedFds } from '../../../../src/worker/sandbox/bwrap/host-layout.js';
import { launcherCommand, shellQuote } from '../../../../src/worker/sandbox/bwrap/launcher.js';
import { BoundedCapture } from '../../../../src/worker/sandbox/bwrap/output-capture.js';
import { limitExceeded, programEnd } from '../../../../src/worker/sandbox/bwrap/run-result.js';
import type { SupervisedRun } from '../../../../src/worker/sandbox/bwrap/run-supervisor.js';
import { pidsInPidNamespace } from '../../../../src/worker/sandbox/bwrap/process-tree.js';
import { prepareSandboxEtc } from '../../../../src/worker/sandbox/bwrap/sandbox-etc.js';
import { BwrapStatusReader } from '../../../../src/worker/sandbox/bwrap/spawner-protocol.js';

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'remex-sandbox-unit-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

describe('exit statuses', () => {
  test('128 + n is signal n; anything else an exit code', () => {
    assert.deepEqual(decodeShellStatus(0), { exitCode: 0, signal: null });
    assert.deepEqual(decodeShellStatus(127), { exitCode: 127, signal: null });
    assert.deepEqual(decodeShellStatus(128), { exitCode: 128, signal: null });
    assert.deepEqual(decodeShellStatus(139), { exitCode: null, signal: 'SIGSEGV' });
    assert.deepEqual(decodeShellStatus(137), { exitCode: null, signal: 'SIGKILL' });
    assert.deepEqual(decodeShellStatus(255), { exitCode: 255, signal: null });
  });

  test('signal names prefer the usual alias and name real-time signals', () => {
    assert.equal(signalName(6), 'SIGABRT');
    assert.equal(signalName(25), 'SIGXFSZ');
    assert.equal(signalName(35), 'SIGRTMIN+1');
  });
});

describe('run classification', () => {
  const run = (over: Partial<SupervisedRun>): SupervisedRun => ({
    monitorExit: { code: 0, signal: null },
    programStatus: 0,
    programEnd: null,
    stopReason: null,
    stdout: new BoundedCapture(10),
    stderr: new BoundedCapture(10),
    wallTimeMs: 5,
    ...over,
  });
  const usage = { cpuTimeNs: 1e6, peakMemoryBytes: 1024, oomKills: 0, taskLimitHits: 0 };

  test('how the program ended: bwrap status, else the monitor, else nothing ran', () => {
    assert.deepEqual(programEnd(run({ programStatus: 3 })), { exitCode: 3, signal: null });
    assert.deepEqual(programEnd(run({ programStatus: null, monitorExit: { code: null, signal: 'SIGKILL' } })), { exitCode: null, signal: 'SIGKILL' });
    assert.deepEqual(programEnd(run({ programStatus: null, stopReason: 'wall_time', monitorExit: { code: 1, signal: null } })), { exitCode: null, signal: 'SIGKILL' });
    assert.equal(programEnd(run({ programStatus: null, monitorExit: { code: 1, signal: null } })), null);
  });

  test("the waiter's report wins over bwrap's shell-style status, which cannot tell exit(130) from SIGINT", () => {
    assert.deepEqual(programEnd(run({ programStatus: 130, programEnd: { exitCode: 130, signo: null } })), { exitCode: 130, signal: null });
    assert.deepEqual(programEnd(run({ programStatus: 130, programEnd: { exitCode: null, signo: 2 } })), { exitCode: null, signal: 'SIGINT' });
    assert.deepEqual(programEnd(run({ programStatus: 130 })), { exitCode: null, signal: 'SIGINT' }, 'without a waiter: decoded as before');
  });

  test("the status stream: the waiter's lines beside bwrap's, out-of-range numbers ignored", () => {
    const reader = new BwrapStatusReader();
    const docs = reader.push('{ "child-pid": 9, "pid-namespace": 4 }\n{ "remex-exit-code": 130 }\n{ "remex-signal": 2 }\n{ "remex-signal": 0 }\n{ "remex-exit-code": 256 }\n{ "exit-code": 130 }\n');
    assert.deepEqual(docs, [
      { initPid: 9, pidNamespace: 4 },
      { programEnd: { exitCode: 130, signo: null } },
      { programEnd: { exitCode: null, signo: 2 } },
      { exitCode: 130 },
    ]);
  });

  test('the limit that ended the run', () => {
    const limits = { ...DEFAULT_LIMITS, memoryBytes: 4096, cpuTimeMs: 1000 };
    const killed = { exitCode: null, signal: 'SIGKILL' };
    assert.equal(limitExceeded(run({ stopReason: 'cancelled' }), killed, { ...usage, oomKills: 1 }, limits), null);
    assert.equal(limitExceeded(run({ stopReason: 'wall_time' }), killed, usage, limits), 'wall_time');
    assert.equal(limitExceeded(run({}), killed, { ...usage, oomKills: 1 }, limits), 'memory');
    assert.equal(limitExceeded(run({}), killed, { ...usage, peakMemoryBytes: 4096 }, limits), 'memory');
    assert.equal(limitExceeded(run({}), { exitCode: 1, signal: null }, { ...usage, taskLimitHits: 2 }, limits), 'processes');
    assert.equal(limitExceeded(run({}), { exitCode: null, signal: 'SIGXCPU' }, null, limits), 'cpu_time');
    assert.equal(limitExceeded(run({}), killed, { ...usage, cpuTimeNs: 1.2e9 }, limits), 'cpu_time');
    assert.equal(limitExceeded(run({}), { exitCode: null, signal: 'SIGXFSZ' }, null, limits), 'file_size');
    assert.equal(limitExceeded(run({}), { exitCode: null, signal: 'SIGSEGV' }, usage, limits), null);
    assert.equal(limitExceeded(run({}), killed, usage, limits), null, 'a SIGKILL the program sent itself is no limit');
  });
});

describe('BoundedCapture', () => {
  test('keeps the first bytes, counts all of them', () => {
    const c = new BoundedCapture(5);
    c.push(Buffer.from('abc'));
    c.push(Buffer.from('defg'));
    c.push(Buffer.from('h'));
    assert.equal(c.bytes().toString(), 'abcde');
    assert.equal(c.totalBytes, 8);
    assert.equal(c.truncated, true);
  });

  test('exactly at the limit is not truncated', () => {
    const c = new BoundedCapture(3);
    c.push(Buffer.from('abc'));
    assert.equal(c.truncated, false);
    assert.equal(new BoundedCapture(0).truncated, false);
  });
});

describe('bwrap status stream', () => {
  test('documents split across reads, malformed lines skipped, unrelated keys ignored', () => {
    const r = new BwrapStatusReader();
    assert.deepEqual(r.push('{"child-pid": 41, "pid-na'), []);
    assert.deepEqual(r.push('mespace": 4026532}\n{not json}\n{"cgroup-namespace": 1}\n{"exit-code": 3'), [{ initPid: 41, pidNamespace: 4026532 }]);
    assert.deepEqual(r.push('}\n'), [{ exitCode: 3 }]);
  });
});

describe('launcher', () => {
  const setup = [
    { file: "/cg/it's/memory.limit_in_bytes", value: '1024' },
    { file: '/cg/x/tasks', value: '0' },
  ];
  const limits = { fileSizeBytes: 1000, openFiles: 64, cpuTimeMs: 1500, processes: null };
  const command = ['./prog', 'x'];

  test('sh form: sets cgroup limits, joins, sets rlimits, then execs bwrap with its options on fd 3', () => {
    const { file, args } = launcherCommand(setup, limits, { path: '/usr/bin/bwrap', command, execHelperFd: null }, { execHelperPath: null, shellPath: '/bin/sh' });
    assert.equal(file, '/bin/sh');
    assert.deepEqual(args, [
      '-c',
      "echo '1024' > '/cg/it'\\''s/memory.limit_in_bytes' && echo '0' > '/cg/x/tasks' && ulimit -c 0 && ulimit -n 64 && ulimit -f 2 && ulimit -t 3 && ulimit -S -t 2 || exit 125\n" +
        "exec '/usr/bin/bwrap' --args 3 -- \"$@\"\n",
      'remex-sandbox',
      ...command,
    ]);
  });

  test('remex-exec form: the same steps as arguments, the file size limit in bytes rounded as ulimit -f does', () => {
    const { file, args } = launcherCommand(setup, limits, { path: '/usr/bin/bwrap', command, execHelperFd: 5 }, { execHelperPath: '/opt/remex-exec', shellPath: '/bin/sh' });
    assert.equal(file, '/opt/remex-exec');
    assert.deepEqual(args, [
      'launch',
      ...['-w', "/cg/it's/memory.limit_in_bytes", '1024', '-w', '/cg/x/tasks', '0'],
      ...['-r', 'core', '0', '0', '-r', 'nofile', '64', '64', '-r', 'fsize', '1024', '1024', '-r', 'cpu', '2', '3'],
      ...['-x', '5', '--', '/usr/bin/bwrap', '--args', '3', '--', ...command],
    ]);
    assert.throws(() => launcherCommand([], limits, { path: 'bwrap', command, execHelperFd: 5 }, { execHelperPath: null, shellPath: '/bin/sh' }), /remex-exec/);
  });

  test('RLIMIT_NPROC only when asked; descriptors never below what the launcher needs', () => {
    const few = { fileSizeBytes: 512, openFiles: 8, cpuTimeMs: null, processes: 7 };
    const [, script] = launcherCommand([], few, { path: 'bwrap', command: [], execHelperFd: null }, { execHelperPath: null, shellPath: '/bin/sh' }).args;
    assert.match(script ?? '', /^ulimit -c 0 && ulimit -n 16 && ulimit -f 1 && ulimit -p 7 \|\|/);
    const { args } = launcherCommand([], few, { path: 'bwrap', command: [], execHelperFd: null }, { execHelperPath: '/x', shellPath: '/bin/sh' });
    assert.deepEqual(args.slice(0, args.indexOf('--')), ['launch', '-r', 'core', '0', '0', '-r', 'nofile', '16', '16', '-r', 'fsize', '512', '512', '-r', 'nproc', '7', '7']);
  });

  test('quoting survives any text', () => {
    assert.equal(shellQuote(`a'b"c$d`), `'a'\\''b"c$d'`);
  });
});

describe('bwrap invocation', () => {
  const base: InvocationInput = {
    layout: {
      privileged: true,
      execHelperPath: null,
      unsharePath: '/usr/bin/unshare',
      envPath: '/usr/bin/env',
      shellPath: '/bin/sh',
      systemMounts: [
        { kind: 'ro-bind', path: '/usr' },
        { kind: 'symlink', target: 'usr/bin', path: '/bin' },
      ],
      boundRoots: ['/usr'],
      etcDir: '/tmp/etc-x',
      supportsDisableUserns: true,
    },
    inputRoot: '/srv/runs/1/root',
    workingDirectory: 'sub',
    argv: ['./prog', 'a b'],
    env: { GREETING: 'hi', LD_PRELOAD: 'x.so' },
    tmpBytes: 1024,
    emulation: null,
    runAsUid: 65534,
    runAsGid: 65533,
    hostname: 'sandbox',
  };

  test('as root: no user namespace, the uid switched inside, the environment applied after it', () => {
    const { bwrapOptions, command } = planInvocation(base);
    assert.ok(!bwrapOptions.includes('--unshare-user') && !bwrapOptions.includes('--unshare-all'));
    for (const flag of ['--unshare-pid', '--unshare-net', '--unshare-ipc', '--die-with-parent', '--new-session', '--clearenv']) assert.ok(bwrapOptions.includes(flag), flag);
    assert.deepEqual(bwrapOptions.slice(bwrapOptions.indexOf('--bind'), bwrapOptions.indexOf('--bind') + 5), ['--bind', '/srv/runs/1/root', '/work', '--chdir', '/work/sub']);
    assert.deepEqual(bwrapOptions.slice(bwrapOptions.indexOf('--size'), bwrapOptions.indexOf('--size') + 4), ['--size', '1024', '--tmpfs', '/tmp']);
    assert.ok(!bwrapOptions.includes('--setenv'), 'no user environment reaches bwrap');
    assert.deepEqual(command, ['/usr/bin/unshare', '--setuid=65534', '--setgid=65533', '--', '/usr/bin/env', '-i', '--', 'GREETING=hi', 'LD_PRELOAD=x.so', './prog', 'a b']);
  });

  test('as root with remex-exec: executed from the descriptor the launcher opens, it switches the uid, the environment its arguments', () => {
    const { bwrapOptions, command, execHelperFd } = planInvocation({ ...base, argv: ['./a=b', 'x'], layout: { ...base.layout, execHelperPath: '/opt/remex/remex-exec' } });
    assert.equal(execHelperFd, EXEC_HELPER_FD);
    assert.ok(!bwrapOptions.includes('/opt/remex/remex-exec'), 'nothing mounted for it');
    assert.ok(!bwrapOptions.includes('--setenv'), 'no user environment reaches bwrap');
    // The count separates assignments from the program, so a name holding "=" needs no shell.
    assert.deepEqual(command, [`/proc/self/fd/${EXEC_HELPER_FD}`, 'as', '-s', String(PROGRAM_STATUS_FD), '65534', '65533', '2', 'GREETING=hi', 'LD_PRELOAD=x.so', './a=b', 'x']);
  });

  test('not root: remex-exec is not needed inside (no uid to switch)', () => {
    const { command, execHelperFd } = planInvocation({ ...base, layout: { ...base.layout, privileged: false, execHelperPath: '/opt/remex/remex-exec' } });
    assert.equal(execHelperFd, null);
    assert.deepEqual(command, ['./prog', 'a b']);
  });

  test('not root: an unprivileged user namespace and bwrap sets the environment', () => {
    const { bwrapOptions, command } = planInvocation({ ...base, layout: { ...base.layout, privileged: false } });
    assert.ok(bwrapOptions.includes('--unshare-all') && bwrapOptions.includes('--disable-userns'));
    assert.ok(!bwrapOptions.includes('--cap-add'));
    assert.deepEqual(bwrapOptions.slice(-6), ['--setenv', 'GREETING', 'hi', '--setenv', 'LD_PRELOAD', 'x.so']);
    assert.deepEqual(command, ['./prog', 'a b']);
  });

  test('emulation runs qemu with the sysroot, binding them only when outside the system directories', () => {
    const inside = planInvocation({ ...base, emulation: { qemuPath: '/usr/bin/qemu-aarch64-static', sysroot: '/usr/aarch64-linux-gnu' } });
    assert.deepEqual(inside.command.slice(-5), ['/usr/bin/qemu-aarch64-static', '-L', '/usr/aarch64-linux-gnu', './prog', 'a b']);
    assert.ok(!inside.bwrapOptions.includes('/usr/bin/qemu-aarch64-static'));
    const outside = planInvocation({ ...base, emulation: { qemuPath: '/opt/qemu/qemu-riscv64', sysroot: null } });
    assert.deepEqual(outside.command.slice(-3), ['/opt/qemu/qemu-riscv64', './prog', 'a b']);
    const bind = outside.bwrapOptions.indexOf('/opt/qemu/qemu-riscv64');
    assert.deepEqual(outside.bwrapOptions.slice(bind - 1, bind + 2), ['--ro-bind', '/opt/qemu/qemu-riscv64', '/opt/qemu/qemu-riscv64']);
  });

  test('a program name holding "=" goes through sh, since env would read it as an assignment', () => {
    const { command } = planInvocation({ ...base, argv: ['./a=b', 'x'] });
    assert.deepEqual(command.slice(-5), ['/bin/sh', '-c', 'exec "$0" "$@"', './a=b', 'x']);
  });

  test('working directories stay inside the input root', () => {
    assert.equal(sandboxWorkingDirectory(''), '/work');
    assert.equal(sandboxWorkingDirectory('a/./b/../c'), '/work/a/c');
    assert.throws(() => sandboxWorkingDirectory('../etc'), (err: unknown) => isRemexError(err, 'INVALID_ARGUMENT'));
    assert.throws(() => sandboxWorkingDirectory('a/../../x'), (err: unknown) => isRemexError(err, 'INVALID_ARGUMENT'));
  });

  test('commands exec cannot carry are rejected', () => {
    assert.throws(() => validateCommand([], {}));
    assert.throws(() => validateCommand(['a\0b'], {}));
    assert.throws(() => validateCommand(['a'], { '': 'x' }));
    assert.throws(() => validateCommand(['a'], { 'A=B': 'x' }));
    assert.throws(() => validateCommand(['a'], { A: 'x\0' }));
    validateCommand(['a'], { A: 'x=y' });
  });
});

describe('cgroup discovery', () => {
  const mountinfo = [
    '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
    '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct',
    '35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
    '40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd',
    '41 31 0:38 / /sys/fs/cgroup/unified\\040dir rw,relatime - cgroup2 cgroup2 rw,nsdelegate',
    '50 23 0:40 / /proc rw - proc proc rw',
  ].join('\n');

  test('mountinfo: cgroup hierarchies, their controllers and mount roots', () => {
    const mounts = parseCgroupMounts(mountinfo);
    assert.deepEqual(
      mounts.map((m) => [m.fsType, m.mountPoint, m.root, m.controllers.join(',')]),
      [
        ['cgroup', '/sys/fs/cgroup/cpu,cpuacct', '/', 'cpu,cpuacct'],
        ['cgroup', '/sys/fs/cgroup/memory', '/docker/abc', 'memory'],
        ['cgroup', '/sys/fs/cgroup/systemd', '/', ''],
        ['cgroup2', '/sys/fs/cgroup/unified dir', '/', ''],
      ],
    );
  });

  test('/proc/self/cgroup and the host directory of a cgroup path', () => {
    const own = parseProcCgroup('4:memory:/docker/abc/worker\n2:cpu,cpuacct:/x\n0::/user.slice\n');
    assert.equal(own.get('memory'), '/docker/abc/worker');
    assert.equal(own.get('cpuacct'), '/x');
    assert.equal(own.get(''), '/user.slice');
    const [cpu, memory] = parseCgroupMounts(mountinfo);
    assert.ok(cpu && memory);
    assert.equal(cgroupDir(memory, '/docker/abc/worker'), '/sys/fs/cgroup/memory/worker');
    assert.equal(cgroupDir(cpu, '/x'), '/sys/fs/cgroup/cpu,cpuacct/x');
  });

  test('flat-keyed cgroup files', () => {
    assert.equal(keyedValue('oom_kill_disable 0\nunder_oom 0\noom_kill 3\n', 'oom_kill'), 3);
    assert.equal(keyedValue('max 0\n', 'max'), 0);
    assert.equal(keyedValue('usage_usec 1500\nuser_usec 1000', 'usage_usec'), 1500);
    assert.equal(keyedValue(null, 'max'), null);
    assert.equal(keyedValue('other 1', 'max'), null);
  });

  test('cgroup v2 on a delegated parent: setup writes, counters and removal', async (t) => {
    const fake = await tempDir(t);
    const hierarchy = join(fake, 'cgroup2');
    const parent = join(hierarchy, 'remex.slice');
    await mkdir(join(fake, 'proc', 'self'), { recursive: true });
    await mkdir(parent, { recursive: true });
    await writeFile(join(parent, 'cgroup.subtree_control'), 'cpu memory pids\n');
    await writeFile(join(fake, 'proc/self/mountinfo'), `41 31 0:38 / ${hierarchy} rw,relatime - cgroup2 cgroup2 rw\n`);
    await writeFile(join(fake, 'proc/self/cgroup'), '0::/remex.slice\n');

    const { driver } = await probeCgroups({ mode: 'auto', procRoot: join(fake, 'proc') });
    assert.ok(driver);
    assert.equal(driver.version, 2);
    assert.deepEqual(driver.enforces, { memory: true, processes: true, cpuTime: true });

    const run = await driver.create('remex-run-1-1', { memoryBytes: 4096, tasks: 9 });
    const dir = join(parent, 'remex-run-1-1');
    assert.deepEqual(run.setup, [
      { file: join(dir, 'memory.max'), value: '4096' },
      { file: join(dir, 'pids.max'), value: '9' },
      { file: join(dir, 'cgroup.procs'), value: '0' },
    ]);
    assert.equal(await readFile(join(dir, 'memory.oom.group'), 'utf8'), '1');
    await writeFile(join(dir, 'cpu.stat'), 'usage_usec 2500\nuser_usec 2000\n');
    await writeFile(join(dir, 'memory.peak'), '1048576\n');
    await writeFile(join(dir, 'memory.events'), 'low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n');
    await writeFile(join(dir, 'pids.events'), 'max 2\n');
    assert.deepEqual(await run.sample(), { cpuTimeNs: 2_500_000, peakMemoryBytes: 1_048_576, oomKills: 1, taskLimitHits: 2 });
    await writeFile(join(dir, 'cgroup.procs'), '');
    assert.deepEqual(await run.pids(), []);
    // A real cgroup directory has no regular files to remove first; the fake one does.
    await rm(dir, { recursive: true });
    await run.remove();
  });

  test('cgroup v2 without delegated controllers is not used', async (t) => {
    const fake = await tempDir(t);
    await mkdir(join(fake, 'proc', 'self'), { recursive: true });
    await mkdir(join(fake, 'cg'), { recursive: true });
    await writeFile(join(fake, 'cg', 'cgroup.subtree_control'), '\n');
    await writeFile(join(fake, 'proc/self/mountinfo'), `41 31 0:38 / ${join(fake, 'cg')} rw - cgroup2 cgroup2 rw\n`);
    await writeFile(join(fake, 'proc/self/cgroup'), '0::/\n');
    const probe = await probeCgroups({ procRoot: join(fake, 'proc') });
    assert.equal(probe.driver, null);
    assert.ok(probe.notes.some((n) => n.includes('subtree_control')), probe.notes.join('\n'));
  });
});

describe('host probing helpers', () => {
  test('the sandbox /etc: generated files and harmless host copies, shared by content', async (t) => {
    const dir = await tempDir(t);
    const hostEtc = join(dir, 'etc');
    await mkdir(join(hostEtc, 'alternatives'), { recursive: true });
    await writeFile(join(hostEtc, 'ld.so.cache'), 'cache');
    await writeFile(join(hostEtc, 'shadow'), 'root:secret');
    await writeFile(join(hostEtc, 'passwd'), 'alice:x:1000:1000::/home/alice:/bin/bash\n');
    await symlink('/usr/share/zoneinfo/UTC', join(hostEtc, 'localtime'));
    await symlink('/usr/bin/mawk', join(hostEtc, 'alternatives', 'awk'));
    const stateDir = join(dir, 'state');

    const first = await prepareSandboxEtc({ uid: 65534, gid: 65534, stateDir, hostEtc });
    assert.equal(await prepareSandboxEtc({ uid: 65534, gid: 65534, stateDir, hostEtc }), first, 'same content, same directory');
    assert.deepEqual((await readdir(first)).sort(), ['alternatives', 'group', 'hosts', 'ld.so.cache', 'localtime', 'nsswitch.conf', 'passwd']);
    assert.equal(await readlink(join(first, 'alternatives', 'awk')), '/usr/bin/mawk');
    assert.equal(await readlink(join(first, 'localtime')), '/usr/share/zoneinfo/UTC');
    assert.equal(await readFile(join(first, 'ld.so.cache'), 'utf8'), 'cache');
    const passwd = await readFile(join(first, 'passwd'), 'utf8');
    assert.match(passwd, /^sandbox:x:65534:65534:/m);
    assert.doesNotMatch(passwd, /alice/);

    const other = await prepareSandboxEtc({ uid: 1000, gid: 1000, stateDir, hostEtc });
    assert.notEqual(other, first);
    assert.deepEqual((await readdir(stateDir)).filter((n) => !n.startsWith('etc-')), [], 'no staging left behind');
    assert.equal((await stat(stateDir)).mode & 0o777, 0o700);
  });

  test('inherited descriptors are those without close-on-exec', async (t) => {
    const fake = await tempDir(t);
    await mkdir(join(fake, 'self', 'fd'), { recursive: true });
    await mkdir(join(fake, 'self', 'fdinfo'), { recursive: true });
    const fds: Record<string, string> = { '0': '0100000', '3': '02000002', '10': '0100000', '251': '0100001' };
    for (const [fd, flags] of Object.entries(fds)) {
      await writeFile(join(fake, 'self', 'fd', fd), '');
      await writeFile(join(fake, 'self', 'fdinfo', fd), `pos:\t0\nflags:\t${flags}\nmnt_id:\t1\n`);
    }
    assert.deepEqual(await findInheritedFds(fake), [10, 251]);
  });

  test('members of a pid namespace are found by their ns link', async (t) => {
    const fake = await tempDir(t);
    for (const [pid, ns] of [
      ['1', 'pid:[100]'],
      ['42', 'pid:[200]'],
      ['43', 'pid:[200]'],
    ] as const) {
      await mkdir(join(fake, pid, 'ns'), { recursive: true });
      await symlink(ns, join(fake, pid, 'ns', 'pid'));
    }
    await mkdir(join(fake, 'self'));
    assert.deepEqual((await pidsInPidNamespace(200, fake)).sort(), [42, 43]);
  });
});
