/**
 * The spawner on its own, both kinds (native `remex-exec spawner` and the Node spawner-process.ts): what a
 * launched process gets (argv, environment, stdin, the options on descriptor 3, the status descriptor 4)
 * and what comes back (bounded output with true totals, bwrap status documents, exit codes and signals,
 * kill, failures to spawn). The sandbox tests exercise it under bwrap; these use plain shell scripts.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { BUILT_EXEC_HELPER, findInheritedFds } from '../../../../src/worker/sandbox/bwrap/host-layout.js';
import { type LaunchRequest, type LaunchedProcess, Spawner } from '../../../../src/worker/sandbox/bwrap/spawner.js';
import type { BwrapStatus, CapturedStream } from '../../../../src/worker/sandbox/bwrap/spawner-protocol.js';
import { requireExecHelper } from '../../../helpers/tools.js';

interface Outcome {
  pid: number;
  statuses: BwrapStatus[];
  exit: { code: number | null; signal: NodeJS.Signals | null };
  stdout: CapturedStream;
  stderr: CapturedStream;
}

interface Hooks {
  onSpawned?: (launched: LaunchedProcess) => void;
  onExit?: (launched: LaunchedProcess) => void;
}

function launch(spawner: Spawner, request: Partial<LaunchRequest> & { args: string[] }, hooks: Hooks = {}): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    let pid = 0;
    const statuses: BwrapStatus[] = [];
    let exit: Outcome['exit'] | null = null;
    const launched = spawner.launch(
      { file: '/bin/sh', env: { PATH: '/usr/bin:/bin' }, stdinPath: null, argsData: '', outputBytes: 1024, outputFiles: null, ...request },
      {
        onSpawned: (p) => {
          pid = p;
          hooks.onSpawned?.(launched);
        },
        onStatus: (s) => statuses.push(s),
        onExit: (code, signal) => {
          exit = { code, signal };
          hooks.onExit?.(launched);
        },
        onClose: (stdout, stderr) => {
          if (!exit) reject(new Error('close before exit'));
          else resolve({ pid, statuses, exit, stdout, stderr });
        },
        onLost: reject,
      },
    );
  });
}

function scratch(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'remex-spawner-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const KINDS = [
  { kind: 'native', execHelperPath: BUILT_EXEC_HELPER },
  { kind: 'node', execHelperPath: null },
] as const;

/** What this test process inherited without close-on-exec, as the sandbox finds it. */
const inherited = await findInheritedFds();

for (const { kind, execHelperPath } of KINDS) {
  describe(`spawner (${kind})`, () => {
    const ready = (t: TestContext): Spawner | null => {
      if (kind === 'native' && !requireExecHelper(t)) return null;
      const devNullFd = openSync('/dev/null', 'r+');
      const spawner = new Spawner({ maskFds: inherited, devNullFd, execHelperPath });
      t.after(() => {
        spawner.close();
        closeSync(devNullFd);
      });
      return spawner;
    };

    test('argv, exactly the given environment, stdin from a file, options on descriptor 3, status from descriptor 4', async (t) => {
      const spawner = ready(t);
      if (!spawner) return;
      const stdin = join(scratch(t), 'stdin');
      writeFileSync(stdin, 'from the file');
      const script = [
        'printf "argv=%s|%s\\n" "$0" "$1"',
        'env | sort',
        'printf "stdin=%s\\n" "$(cat)"',
        'printf "options=%s\\n" "$(tr "\\0" , <&3)"',
        'echo \'{"child-pid": 4242, "pid-namespace": 7}\' >&4',
        'echo \'{"exit-code": 5}\' >&4',
        'echo oops >&2',
        'exit 3',
      ].join('; ');
      const r = await launch(spawner, { args: ['-c', script, 'zero', 'one'], env: { PATH: '/usr/bin:/bin', ONLY: 'this' }, stdinPath: stdin, argsData: 'a\0b\0' });
      assert.ok(r.pid > 0);
      const lines = r.stdout.bytes.toString().split('\n');
      assert.equal(lines[0], 'argv=zero|one');
      // sh adds PWD; nothing of this process's environment arrives.
      assert.deepEqual(lines.filter((l) => l.includes('=') && !l.startsWith('argv=') && !l.startsWith('stdin=') && !l.startsWith('options=') && !l.startsWith('PWD=')), ['ONLY=this', 'PATH=/usr/bin:/bin']);
      assert.ok(lines.includes('stdin=from the file'));
      assert.ok(lines.includes('options=a,b,'));
      assert.deepEqual(r.statuses, [{ initPid: 4242, pidNamespace: 7 }, { exitCode: 5 }]);
      assert.equal(r.stderr.bytes.toString(), 'oops\n');
      assert.deepEqual(r.exit, { code: 3, signal: null });
    });

    test('output beyond the bound is counted, not kept', async (t) => {
      const spawner = ready(t);
      if (!spawner) return;
      const r = await launch(spawner, { args: ['-c', 'head -c 100000 /dev/zero; head -c 20 /dev/zero >&2'], outputBytes: 10 });
      assert.deepEqual([r.stdout.bytes.length, r.stdout.totalBytes, r.stderr.bytes.length, r.stderr.totalBytes], [10, 100000, 10, 20]);
      assert.deepEqual(r.exit, { code: 0, signal: null });
    });

    test('output to files (a long job\'s log) is written as it comes, up to the bound, and counted past it', async (t) => {
      const spawner = ready(t);
      if (!spawner) return;
      const dir = scratch(t);
      const files = { stdout: join(dir, 'stdout.log'), stderr: join(dir, 'stderr.log') };
      // The first line is in the file while the program still runs: it waits until it sees it there.
      const script = `echo first; while ! grep -q first ${files.stdout}; do sleep 0.01; done; head -c 100000 /dev/zero | tr '\\0' x; echo oops >&2`;
      const r = await launch(spawner, { args: ['-c', script], outputBytes: 50_000, outputFiles: files });
      assert.deepEqual(r.exit, { code: 0, signal: null });
      assert.deepEqual([r.stdout.bytes.length, r.stdout.totalBytes, r.stderr.bytes.length, r.stderr.totalBytes], [0, 100_006, 0, 5]);
      const out = readFileSync(files.stdout);
      assert.equal(out.byteLength, 50_000);
      assert.equal(out.subarray(0, 7).toString(), 'first\nx');
      assert.equal(readFileSync(files.stderr, 'utf8'), 'oops\n');
      // Made afresh: a file already there is refused, not appended to or followed.
      await assert.rejects(launch(spawner, { args: ['-c', 'echo again'], outputFiles: files }));
    });

    test('megabytes of output within the bound arrive whole, runs side by side keep their own', async (t) => {
      const spawner = ready(t);
      if (!spawner) return;
      const MiB = 1024 * 1024;
      // Many reads' worth on both sides of the channel; each run's bytes are its own pattern.
      const runs = await Promise.all(['a', 'b', 'c'].map((c, i) => launch(spawner, { args: ['-c', `head -c ${3 * MiB + i} /dev/zero | tr '\\0' ${c}`], outputBytes: 4 * MiB })));
      runs.forEach((r, i) => {
        assert.equal(r.stdout.totalBytes, 3 * MiB + i);
        assert.equal(r.stdout.bytes.length, 3 * MiB + i);
        assert.ok(r.stdout.bytes.every((b) => b === 'abc'.charCodeAt(i)));
      });
    });

    test('the launcher holds descriptors 0–4 and nothing else of ours', async (t) => {
      const spawner = ready(t);
      if (!spawner) return;
      // The glob's own directory descriptor is closed by the time the loop runs: it reads as no target.
      const r = await launch(spawner, { args: ['-c', 'for f in /proc/self/fd/*; do t=$(readlink "$f") && echo "${f##*/} $t"; done'] });
      const fds = new Map(
        r.stdout.bytes
          .toString()
          .split('\n')
          .filter(Boolean)
          .map((line) => [Number(line.split(' ')[0]), line.slice(line.indexOf(' ') + 1)]),
      );
      assert.equal(fds.get(0), '/dev/null');
      for (const fd of [1, 2, 3, 4]) assert.match(fds.get(fd) ?? 'missing', /^(pipe|socket):/, `descriptor ${fd}`);
      const others = [...fds.keys()].filter((fd) => fd > 4);
      // The native spawner closes everything else; the Node one can only overlay what it inherited with /dev/null.
      if (kind === 'native') assert.deepEqual(others, []);
      else for (const fd of others) assert.equal(fds.get(fd), '/dev/null', `descriptor ${fd}`);
    });

    test('a signal ends a run as a signal; kill() ends a run at once', async (t) => {
      const spawner = ready(t);
      if (!spawner) return;
      const signalled = await launch(spawner, { args: ['-c', 'kill -TERM $$'] });
      assert.deepEqual(signalled.exit, { code: null, signal: 'SIGTERM' });
      const started = Date.now();
      const killed = await launch(spawner, { args: ['-c', 'exec sleep 30'] }, { onSpawned: (launched) => launched.kill() });
      assert.deepEqual(killed.exit, { code: null, signal: 'SIGKILL' });
      assert.ok(Date.now() - started < 10_000);
    });

    test('close-pipes ends a run whose launcher exited while something it left holds its output open', async (t) => {
      const spawner = ready(t);
      if (!spawner) return;
      const pidFile = join(scratch(t), 'pid');
      t.after(() => {
        try {
          process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
        } catch {
          // Gone already.
        }
      });
      const started = Date.now();
      // The background sleep keeps stdout open after the launcher exits; close-pipes is the last resort.
      const r = await launch(spawner, { args: ['-c', `sleep 30 & echo $! > ${pidFile}; echo before; exit 3`] }, { onExit: (launched) => launched.closePipes() });
      assert.deepEqual(r.exit, { code: 3, signal: null });
      assert.equal(r.stdout.bytes.toString(), 'before\n');
      assert.ok(Date.now() - started < 5_000, `closed after ${Date.now() - started} ms`);
    });

    test('a launcher that cannot start is lost with the reason; the spawner goes on', async (t) => {
      const spawner = ready(t);
      if (!spawner) return;
      await assert.rejects(launch(spawner, { file: '/nonexistent/launcher', args: [] }), /nonexistent\/launcher|ENOENT/);
      await assert.rejects(launch(spawner, { args: ['-c', 'true'], stdinPath: '/nonexistent/stdin' }), /nonexistent\/stdin|ENOENT/);
      const r = await launch(spawner, { args: ['-c', 'echo still'] });
      assert.equal(r.stdout.bytes.toString(), 'still\n');
    });
  });
}

/** Parent pid and state of a process from /proc, or undefined once it is gone (reaped). */
function procStatus(pid: number): { ppid: number; state: string } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    return { ppid: Number(/^PPid:\s+(\d+)/m.exec(text)?.[1]), state: /^State:\s+(\S)/m.exec(text)?.[1] ?? '?' };
  } catch {
    return undefined;
  }
}

test('remex-exec spawner adopts what a launcher leaves behind and reaps it (child subreaper)', async (t) => {
  if (!requireExecHelper(t)) return;
  const devNullFd = openSync('/dev/null', 'r+');
  const spawner = new Spawner({ maskFds: inherited, devNullFd, execHelperPath: BUILT_EXEC_HELPER });
  t.after(() => {
    spawner.close();
    closeSync(devNullFd);
  });
  // bwrap leaves the namespace's init so when its monitor exits first; a shell's background job stands in
  // for it (holding none of the run's descriptors, or the run would last as long). The launcher's parent
  // is the spawner itself.
  const r = await launch(spawner, { args: ['-c', 'echo $PPID; (exec sleep 30) </dev/null >/dev/null 2>&1 3>&- 4>&- & echo $!'] });
  assert.deepEqual(r.exit, { code: 0, signal: null });
  const [spawnerPid, orphan] = r.stdout.bytes.toString().trim().split('\n').map(Number) as [number, number];
  let reaped = false;
  t.after(() => {
    // Only while it may still be ours: once reaped, its pid may belong to another process.
    if (reaped) return;
    try {
      process.kill(orphan, 'SIGKILL');
    } catch {
      // Gone already.
    }
  });
  assert.ok(spawnerPid > 0 && orphan > 0, r.stdout.bytes.toString());
  assert.notEqual(spawnerPid, process.pid);
  // Orphaned, it was reparented to the spawner, not to the host's pid 1…
  assert.equal(procStatus(orphan)?.ppid, spawnerPid);
  // …which reaps it when it ends: it does not linger as a zombie.
  process.kill(orphan, 'SIGKILL');
  const deadline = Date.now() + 10_000;
  while (procStatus(orphan) !== undefined) {
    assert.ok(Date.now() < deadline, `process ${orphan} still there: ${JSON.stringify(procStatus(orphan))}`);
    await new Promise((res) => setTimeout(res, 50));
  }
  reaped = true;
});

describe('remex-exec spawner refuses what it cannot read', () => {
  for (const [what, frame] of [
    ['an unknown request', Buffer.from([5, 0, 0, 0, 9, 1, 0, 0, 0])],
    ['a frame longer than any request', Buffer.from([0xff, 0xff, 0xff, 0x7f, 1])],
    ['a truncated header', Buffer.from([2, 0, 0, 0, 1, 1])],
  ] as const) {
    test(`${what}: it exits with status 2 and says so`, async (t) => {
      if (!requireExecHelper(t)) return;
      const child = spawn(BUILT_EXEC_HELPER, ['spawner'], { stdio: ['pipe', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.stdout.resume();
      child.stdin.end(frame);
      // 'close', not 'exit': by then stderr has been read to its end.
      const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
      assert.equal(code, 2, stderr);
      assert.match(stderr, /remex-exec spawner: /);
    });
  }
});
