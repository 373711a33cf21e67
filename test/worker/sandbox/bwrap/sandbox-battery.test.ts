/**
 * The sandbox battery: real bubblewrap, real cgroups, real programs cross-compiled from
 * test/fixtures/{sandbox,hostile}, run natively and under qemu-user. Every hostile test also checks
 * that nothing it started is left running and that the same sandbox still runs a normal program.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { type Server, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test, type TestContext } from 'node:test';
import { DEFAULT_LIMITS, type ResourceLimits } from '../../../../src/core/limits.js';
import { isaOfNodeArch, type Isa } from '../../../../src/core/platform.js';
import { QEMU_TARGETS, findEmulation } from '../../../../src/worker/emulation.js';
import { BwrapSandbox } from '../../../../src/worker/sandbox/bwrap/bwrap-sandbox.js';
import { RUN_CGROUP_PREFIX, listRunCgroups } from '../../../../src/worker/sandbox/bwrap/cgroup-probe.js';
import type { EmulationSpec, SandboxResult } from '../../../../src/worker/sandbox/sandbox.js';
import { BUILT_EXEC_HELPER } from '../../../../src/worker/sandbox/bwrap/host-layout.js';
import { processesWithMarker } from '../../../helpers/processes.js';
import { CROSS_CC, compileC, requireExecHelper, requireTools } from '../../../helpers/tools.js';

const MiB = 1024 * 1024;
const NATIVE = isaOfNodeArch(process.arch) ?? 'x86_64';
type Launcher = 'remex-exec' | 'sh';
/**
 * The full battery runs natively and under one emulated ISA, launched by remex-exec, and natively once
 * more through the fallback launcher (sh, unshare and env) used where remex-exec was not built. Two more
 * ISAs get the basics.
 */
const BATTERIES: Array<{ isa: Isa; launcher: Launcher }> = [
  { isa: NATIVE, launcher: 'remex-exec' },
  { isa: NATIVE === 'aarch64' ? 'x86_64' : 'aarch64', launcher: 'remex-exec' },
  { isa: NATIVE, launcher: 'sh' },
];
const HELLO_ISAS: Isa[] = (['riscv64', 'arm'] as Isa[]).filter((isa) => isa !== NATIVE);
const HOST_SECRET = `remex-secret-${randomUUID()}`;
process.env.REMEX_TEST_SECRET = HOST_SECRET;

const sandboxes = new Map<Launcher, Promise<BwrapSandbox>>();
function sandbox(launcher: Launcher): Promise<BwrapSandbox> {
  let s = sandboxes.get(launcher);
  if (!s) sandboxes.set(launcher, (s = BwrapSandbox.create(launcher === 'sh' ? { execHelperPath: null } : { execHelperPath: BUILT_EXEC_HELPER })));
  return s;
}

after(async () => {
  if (sandboxes.size === 0) return;
  for (const s of sandboxes.values()) await (await s).close();
  const mine = (await listRunCgroups()).filter((dir) => dir.includes(`${RUN_CGROUP_PREFIX}${process.pid}-`));
  assert.deepEqual(mine, [], 'every run cgroup was removed');
});

interface Target {
  isa: Isa;
  launcher: Launcher;
  emulation: EmulationSpec | null;
  tools: string[];
}

function targetTools(isa: Isa): string[] {
  const cc = CROSS_CC[isa] ?? 'gcc';
  return isa === NATIVE ? ['bwrap', 'unshare', cc] : ['bwrap', 'unshare', cc, `qemu-${QEMU_TARGETS[isa]}-static`];
}

/** Null (test skipped, or failed in CI) when a tool is missing. */
async function target(t: TestContext, isa: Isa, launcher: Launcher = 'remex-exec'): Promise<Target | null> {
  const tools = targetTools(isa);
  if (!requireTools(t, ...tools) || (launcher === 'remex-exec' && !requireExecHelper(t))) return null;
  const emulation = isa === NATIVE ? null : await findEmulation(isa, {}, process.env.PATH ?? '');
  assert.ok(isa === NATIVE || emulation, `qemu for ${isa} found`);
  return { isa, launcher, emulation, tools };
}

interface RunOptions {
  args?: string[];
  env?: Record<string, string>;
  stdin?: string;
  limits?: Partial<ResourceLimits>;
  timeoutMs?: number;
  graceMs?: number;
  signal?: AbortSignal;
}

interface FixtureRun {
  result: SandboxResult;
  root: string;
  marker: string;
}

/** Compiles `fixture` for the target, stages it as ./prog in a fresh input root, runs it with a unique marker argument. */
async function runFixture(t: TestContext, tg: Target, fixture: string, opts: RunOptions = {}): Promise<FixtureRun> {
  const binary = compileC({ file: fixture }, tg.isa);
  const runDir = await mkdtemp(join(tmpdir(), 'remex-sandbox-test-'));
  t.after(() => rm(runDir, { recursive: true, force: true }));
  const root = join(runDir, 'root');
  await mkdir(root);
  await copyFile(binary, join(root, 'prog'));
  await chmod(join(root, 'prog'), 0o755);
  let stdinPath: string | null = null;
  if (opts.stdin !== undefined) {
    stdinPath = join(runDir, 'stdin');
    await writeFile(stdinPath, opts.stdin);
  }
  const marker = `remex-marker-${randomUUID()}`;
  const result = await (
    await sandbox(tg.launcher)
  ).run({
    inputRoot: root,
    workingDirectory: '',
    argv: ['./prog', ...(opts.args ?? []), marker],
    env: opts.env ?? {},
    stdinPath,
    timeoutMs: opts.timeoutMs ?? 10_000,
    graceMs: opts.graceMs ?? 300,
    limits: { ...DEFAULT_LIMITS, memoryBytes: 128 * MiB, ...opts.limits },
    emulation: tg.emulation,
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  return { result, root, marker };
}

/** Nothing of the run is alive, and the sandbox still runs a normal program. */
async function assertCleanAfter(t: TestContext, tg: Target, run: FixtureRun): Promise<void> {
  assert.deepEqual(await processesWithMarker(run.marker), [], 'no process of the run is left');
  const hello = await runFixture(t, tg, 'sandbox/hello.c', { args: ['0'] });
  assert.equal(hello.result.exitCode, 0, hello.result.stderr.toString());
  assert.match(hello.result.stdout.toString(), /^hello\n/);
}

function lines(buf: Buffer): Record<string, string> {
  return Object.fromEntries(
    buf
      .toString()
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

for (const { isa, launcher } of BATTERIES) {
  describe(`sandbox battery (${isa === NATIVE ? `native ${isa}` : `${isa} under qemu`}, launched by ${launcher})`, { concurrency: 4 }, () => {
    test('hello: arguments, environment, stdin and exit code', async (t) => {
      const tg = await target(t, isa, launcher);
      if (!tg) return;
      const { result } = await runFixture(t, tg, 'sandbox/hello.c', { args: ['42', 'two words', 'ünïcode'], env: { GREETING: 'hi there' }, stdin: 'from stdin' });
      assert.equal(result.exitCode, 42);
      assert.equal(result.signal, null);
      assert.equal(result.limitExceeded, null);
      assert.equal(result.timedOut, false);
      const out = result.stdout.toString();
      assert.match(out, /^hello\nargv\[1\]=42\nargv\[2\]=two words\nargv\[3\]=ünïcode\n/);
      assert.match(out, /GREETING=hi there\nstdin=from stdin\n$/);
      assert.equal(result.stderr.toString(), 'to stderr\n');
      assert.equal(result.stdoutTotalBytes, result.stdout.byteLength);
      assert.equal(result.stdoutTruncated, false);
    });

    test('a crash by signal is reported with the output written before it', async (t) => {
      const tg = await target(t, isa, launcher);
      if (!tg) return;
      const run = await runFixture(t, tg, 'hostile/crash-after-output.c');
      assert.equal(run.result.signal, 'SIGSEGV');
      assert.equal(run.result.exitCode, null);
      assert.equal(run.result.limitExceeded, null);
      assert.equal(run.result.stdout.toString(), 'raw before crash\nbuffered before crash\n');
      assert.match(run.result.stderr.toString(), /^stderr before crash\n/);
      await assertCleanAfter(t, tg, run);
    });

    test('a fork bomb is contained and reported as the processes limit', async (t) => {
      const tg = await target(t, isa, launcher);
      if (!tg) return;
      const run = await runFixture(t, tg, 'hostile/fork-bomb.c', { limits: { processes: 32 }, timeoutMs: 10_000 });
      assert.equal(run.result.limitExceeded, 'processes');
      assert.equal(run.result.timedOut, false);
      assert.ok(run.result.wallTimeMs < 5_000, `stopped early (${run.result.wallTimeMs} ms)`);
      await assertCleanAfter(t, tg, run);
    });

    test('a memory bomb touching its pages is stopped at the memory limit', async (t) => {
      const tg = await target(t, isa, launcher);
      if (!tg) return;
      const run = await runFixture(t, tg, 'hostile/memory-bomb.c', { limits: { memoryBytes: 64 * MiB } });
      assert.equal(run.result.limitExceeded, 'memory');
      assert.equal(run.result.signal, 'SIGKILL');
      assert.ok(run.result.maxRssKb <= 64 * 1024 + 1024, `peak ${run.result.maxRssKb} KiB within the limit`);
      assert.ok(run.result.maxRssKb >= 32 * 1024, `peak ${run.result.maxRssKb} KiB near the limit`);
      await assertCleanAfter(t, tg, run);
    });

    test('an infinite loop is stopped at the CPU time limit', async (t) => {
      const tg = await target(t, isa, launcher);
      if (!tg) return;
      const run = await runFixture(t, tg, 'hostile/spin.c', { limits: { cpuTimeMs: 400 }, timeoutMs: 10_000 });
      assert.equal(run.result.limitExceeded, 'cpu_time');
      assert.equal(run.result.timedOut, false);
      assert.ok(run.result.cpuTimeMs >= 400, `cpu ${run.result.cpuTimeMs} ms`);
      assert.ok(run.result.wallTimeMs < 5_000, `wall ${run.result.wallTimeMs} ms`);
      await assertCleanAfter(t, tg, run);
    });

    test('an infinite loop is stopped at the wall-clock timeout', async (t) => {
      const tg = await target(t, isa, launcher);
      if (!tg) return;
      const run = await runFixture(t, tg, 'hostile/spin.c', { timeoutMs: 1_000 });
      assert.equal(run.result.timedOut, true);
      assert.equal(run.result.limitExceeded, 'wall_time');
      assert.equal(run.result.signal, 'SIGTERM');
      assert.ok(run.result.wallTimeMs >= 1_000 && run.result.wallTimeMs < 3_000, `wall ${run.result.wallTimeMs} ms`);
      await assertCleanAfter(t, tg, run);
    });

    test('sleeping forever ends at the timeout, its output kept and little CPU used', async (t) => {
      const tg = await target(t, isa, launcher);
      if (!tg) return;
      const run = await runFixture(t, tg, 'hostile/sleep-forever.c', { timeoutMs: 1_000 });
      assert.equal(run.result.timedOut, true);
      assert.equal(run.result.limitExceeded, 'wall_time');
      assert.equal(run.result.stdout.toString(), 'sleeping\n');
      assert.ok(run.result.cpuTimeMs < 500, `cpu ${run.result.cpuTimeMs} ms`);
      await assertCleanAfter(t, tg, run);
    });

    test('output printed before a timeout is returned', async (t) => {
      const tg = await target(t, isa, launcher);
      if (!tg) return;
      const run = await runFixture(t, tg, 'hostile/print-then-sleep.c', { timeoutMs: 1_000 });
      assert.equal(run.result.timedOut, true);
      assert.equal(run.result.stdout.toString(), 'printed before the timeout\n');
      await assertCleanAfter(t, tg, run);
    });

    test('a flood of stdout without newlines is truncated, its first bytes kept and the rest counted', async (t) => {
      const tg = await target(t, isa, launcher);
      if (!tg) return;
      const run = await runFixture(t, tg, 'hostile/flood.c', { limits: { outputBytes: 64 * 1024 }, timeoutMs: 1_000 });
      assert.equal(run.result.stdout.byteLength, 64 * 1024);
      assert.ok(run.result.stdout.every((byte) => byte === 0x78), 'kept bytes are the first ones written');
      assert.equal(run.result.stdoutTruncated, true);
      assert.ok(run.result.stdoutTotalBytes > 64 * 1024, `counted ${run.result.stdoutTotalBytes} bytes`);
      assert.equal(run.result.stderrTruncated, false);
      assert.equal(run.result.limitExceeded, 'wall_time', 'truncation alone is not a limit');
      await assertCleanAfter(t, tg, run);
    });

    test('a multi-GB file write is stopped at the file size limit', async (t) => {
      const tg = await target(t, isa, launcher);
      if (!tg) return;
      const run = await runFixture(t, tg, 'hostile/big-write.c', { limits: { fileSizeBytes: 100 * MiB, memoryBytes: 512 * MiB } });
      assert.equal(run.result.limitExceeded, 'file_size');
      assert.equal(run.result.signal, 'SIGXFSZ');
      assert.equal((await stat(join(run.root, 'big.bin'))).size, 100 * MiB);
      await assertCleanAfter(t, tg, run);
    });

    test('host secrets and files are out of reach; the system is read-only', async (t) => {
      const tg = await target(t, isa, launcher);
      if (!tg) return;
      const hostDir = await mkdtemp(join(tmpdir(), 'remex-host-file-'));
      t.after(() => rm(hostDir, { recursive: true, force: true }));
      const hostFile = join(hostDir, 'private.txt');
      await writeFile(hostFile, HOST_SECRET);
      const run = await runFixture(t, tg, 'hostile/escape-probe.c', { args: [hostFile, 'REMEX_TEST_SECRET'] });
      assert.equal(run.result.exitCode, 0, run.result.stderr.toString());
      const seen = lines(run.result.stdout);
      assert.equal(seen.read_shadow, 'denied ENOENT');
      assert.equal(seen.list_root, 'denied ENOENT');
      assert.equal(seen.list_home, 'denied ENOENT');
      assert.equal(seen.read_host_file, 'denied ENOENT');
      assert.match(seen.read_init_environ ?? '', /^denied /);
      assert.equal(seen.write_usr, 'denied EROFS');
      assert.equal(seen.write_etc, 'denied EROFS');
      assert.match(seen.write_root_dir ?? '', /^denied /);
      assert.equal(seen.write_work, 'ok');
      assert.equal(seen.write_tmp, 'ok');
      for (const attempt of ['mknod', 'mount', 'chroot', 'setuid_root', 'ptrace_init', 'kill_init']) assert.match(seen[attempt] ?? '', /^denied /, attempt);
      assert.equal(seen.sys_visible, 'denied ENOENT');
      assert.equal(seen.uid, '65534 gid=65534');
      assert.equal(seen.secret_env, 'absent');
      // Under qemu the guest also sees qemu's own descriptors.
      if (!tg.emulation) {
        const descriptors = seen.descriptors === '' ? [] : (seen.descriptors ?? 'missing').split(',');
        // remex-exec closes every descriptor above stderr; the fallback launcher can only overlay what the worker inherited with /dev/null.
        if (tg.launcher === 'remex-exec') assert.deepEqual(descriptors, [], 'no descriptor beyond stdio reaches the program');
        else for (const d of descriptors) assert.match(d, /^\d+:\/dev\/null$/);
      }
      assert.ok(!run.result.stdout.includes(HOST_SECRET) && !run.result.stderr.includes(HOST_SECRET), 'the host secret never appears');
      await assertCleanAfter(t, tg, run);
    });

    test('no network: host loopback ports, abstract sockets and DNS are unreachable', async (t) => {
      const tg = await target(t, isa, launcher);
      if (!tg) return;
      let connections = 0;
      const abstractName = `remex-test-${randomUUID()}`;
      const tcp = createServer(() => connections++);
      const unix = createServer(() => connections++);
      await Promise.all([listen(tcp, { port: 0, host: '127.0.0.1' }), listen(unix, { path: `\0${abstractName}` })]);
      t.after(() => Promise.all([close(tcp), close(unix)]));
      const port = (tcp.address() as { port: number }).port;
      const run = await runFixture(t, tg, 'hostile/net-probe.c', { args: [String(port), abstractName] });
      assert.equal(run.result.exitCode, 0, run.result.stderr.toString());
      const seen = lines(run.result.stdout);
      assert.match(seen.tcp_loopback ?? '', /^denied /);
      assert.match(seen.abstract_unix ?? '', /^denied /);
      assert.equal(seen.dns, 'failed');
      assert.equal(seen.interfaces, 'lo');
      assert.equal(connections, 0);
      await assertCleanAfter(t, tg, run);
    });

    test('a program ignoring SIGTERM is killed after the grace period', async (t) => {
      const tg = await target(t, isa, launcher);
      if (!tg) return;
      const run = await runFixture(t, tg, 'hostile/ignore-term.c', { timeoutMs: 1_000, graceMs: 300 });
      assert.equal(run.result.timedOut, true);
      assert.equal(run.result.signal, 'SIGKILL');
      assert.equal(run.result.stdout.toString(), 'ignoring SIGTERM\n');
      assert.ok(run.result.wallTimeMs >= 1_300, `wall ${run.result.wallTimeMs} ms includes the grace`);
      await assertCleanAfter(t, tg, run);
    });

    test('a double-forked daemon does not outlive its run', async (t) => {
      const tg = await target(t, isa, launcher);
      if (!tg) return;
      const run = await runFixture(t, tg, 'hostile/daemon.c');
      assert.equal(run.result.exitCode, 0, run.result.stderr.toString());
      assert.equal(run.result.stdout.toString(), 'daemon started\n');
      const beat = await readFile(join(run.root, 'heartbeat'), 'utf8');
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(await readFile(join(run.root, 'heartbeat'), 'utf8'), beat, 'the heartbeat stopped');
      await assertCleanAfter(t, tg, run);
    });

    test('cancellation stops the run and says so', async (t) => {
      const tg = await target(t, isa, launcher);
      if (!tg) return;
      const abort = new AbortController();
      // Late enough that the program (under qemu, on a loaded machine) has started and written its line.
      setTimeout(() => abort.abort(), 1_500);
      const run = await runFixture(t, tg, 'hostile/sleep-forever.c', { timeoutMs: 10_000, signal: abort.signal });
      assert.equal(run.result.cancelled, true);
      assert.equal(run.result.timedOut, false);
      assert.equal(run.result.limitExceeded, null);
      assert.equal(run.result.stdout.toString(), 'sleeping\n');
      assert.ok(run.result.wallTimeMs < 6_000, `wall ${run.result.wallTimeMs} ms`);
      await assertCleanAfter(t, tg, run);
    });

    test('calibration: reported peak memory, CPU time and wall time are right', async (t) => {
      const tg = await target(t, isa, launcher);
      if (!tg) return;
      const memory = await runFixture(t, tg, 'sandbox/calibrate-memory.c', { args: ['100'], limits: { memoryBytes: 512 * MiB } });
      assert.equal(memory.result.exitCode, 0, memory.result.stderr.toString());
      assert.ok(memory.result.maxRssKb >= 100 * 1024, `peak ${memory.result.maxRssKb} KiB ≥ 100 MiB`);
      assert.ok(memory.result.maxRssKb < 200 * 1024, `peak ${memory.result.maxRssKb} KiB < 200 MiB`);

      const cpu = await runFixture(t, tg, 'sandbox/calibrate-cpu.c', { args: ['300'] });
      assert.equal(cpu.result.exitCode, 0, cpu.result.stderr.toString());
      assert.ok(cpu.result.cpuTimeMs >= 250 && cpu.result.cpuTimeMs < 1_000, `cpu ${cpu.result.cpuTimeMs} ms`);

      const sleep = await runFixture(t, tg, 'sandbox/sleep-ms.c', { args: ['300'] });
      assert.equal(sleep.result.exitCode, 0, sleep.result.stderr.toString());
      assert.ok(sleep.result.wallTimeMs >= 300 && sleep.result.wallTimeMs < 1_500, `wall ${sleep.result.wallTimeMs} ms`);
      assert.ok(sleep.result.cpuTimeMs < 250, `cpu ${sleep.result.cpuTimeMs} ms while sleeping`);
    });
  });
}

describe('dynamically linked hello on more emulated ISAs', { concurrency: 2 }, () => {
  for (const isa of HELLO_ISAS) {
    test(`${isa} under qemu: arguments, stdin and exit code`, async (t) => {
      const tg = await target(t, isa);
      if (!tg) return;
      const { result } = await runFixture(t, tg, 'sandbox/hello.c', { args: ['3', 'x y'], env: { GREETING: isa }, stdin: 'input' });
      assert.equal(result.exitCode, 3, result.stderr.toString());
      assert.match(result.stdout.toString(), new RegExp(`^hello\\nargv\\[1\\]=3\\nargv\\[2\\]=x y\\n.*GREETING=${isa}\\nstdin=input\\n$`, 's'));
    });
  }
});

function listen(server: Server, options: { port: number; host: string } | { path: string }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options, () => resolve());
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
