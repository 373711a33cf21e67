/**
 * The hostile battery (issue 18): one C program (test/fixtures/hostile/battery.c) attacking the sandbox
 * in every way below, cross-compiled for every platform remex serves here and run through the whole
 * system — natively on x86_64, under qemu-user on aarch64, riscv64 and arm. One table of cases × one
 * list of platforms. Each case checks that the attack was contained and reported, that the worker
 * serves the next job, that nothing of the run is left running, and that no host file changed (a canary
 * outside the sandbox, and the CAS file of the input the program tried to write). The ten classes of the
 * sandbox's own battery (test/worker/sandbox/bwrap/sandbox-battery.test.ts) are not repeated here.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { SubmittedExecution, ExecutionSubmission } from '../../src/client/remex-client.js';
import type { Digest } from '../../src/core/digest.js';
import { digestOf } from '../../src/core/digest.js';
import { decodeTree } from '../../src/cas/directory-codec.js';
import { QEMU_TARGETS } from '../../src/worker/emulation.js';
import { processesWithMarker } from '../helpers/processes.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { CROSS_CC, compileC, requireTools } from '../helpers/tools.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const PLATFORMS = ['x86_64', 'aarch64', 'riscv64', 'arm'] as const;
type Isa = (typeof PLATFORMS)[number];
/** Small limits keep the battery quick: every attack meets a limit in well under a second. */
const LIMITS = { memoryBytes: 64 * MiB, processes: 32, fileSizeBytes: 4 * MiB, outputBytes: 64 * KiB, tmpBytes: 8 * MiB, openFiles: 64 };
/** Bigger than the CAS packs inline (64 KiB), so the input is staged as the stored file itself where the sandbox allows. */
const INPUT = Buffer.alloc(100 * KiB, 'remex battery input\n');
const INPUT_DIGEST = digestOf(INPUT);

interface Context {
  isa: Isa;
  marker: string;
  canary: string;
}

interface Case {
  /** battery.c's first argument. */
  mode: string;
  name: string;
  /** The program's arguments (default: the mode alone); the marker is appended. */
  args?: (ctx: Context) => string[];
  submission?: (ctx: Context) => Partial<ExecutionSubmission>;
  timeoutMs?: number;
  check(v: SubmittedExecution, seen: Record<string, string>, ctx: Context): Promise<void> | void;
}

const denied = (seen: Record<string, string>, ...names: string[]) => {
  for (const name of names) assert.match(seen[name] ?? 'missing', /^denied /, `${name}: ${seen[name]}`);
};
const completed = (v: SubmittedExecution) => {
  assert.equal(v.state, 'completed', JSON.stringify({ state: v.state, failure: v.failure, code: v.code, signal: v.signal, stderr: v.stderr }));
  assert.equal(v.code, 0, JSON.stringify(v.stderr));
};

const CASES: Case[] = [
  {
    mode: 'privileges',
    name: 'setuid and capability attempts are denied; the program has no capability',
    check(v, seen) {
      completed(v);
      denied(seen, 'setuid_root', 'setgid_root', 'setresuid_root', 'capset_all', 'ambient_sys_admin');
      assert.equal(seen.CapEff, '0000000000000000');
      assert.equal(seen.CapPrm, '0000000000000000');
      assert.equal(seen.uid, '65534');
      assert.equal(seen.euid, '65534');
    },
  },
  {
    mode: 'processes',
    name: 'other processes are invisible in /proc and cannot be traced or signalled',
    check(v, seen) {
      completed(v);
      const visible = (seen.cmdlines ?? '').split('|').filter(Boolean);
      assert.ok(visible.length >= 1 && visible.length <= 3, `only the sandbox's own processes: ${seen.cmdlines}`);
      for (const p of visible) assert.doesNotMatch(p, /node|remex serve|\/usr\/bin\/(sh|bash)/, p);
      assert.equal(seen.ptrace_attached, '0');
      denied(seen, 'ptrace_init', 'kill_init');
    },
  },
  {
    mode: 'namespaces',
    name: 'mount, remount and unshare attempts are denied',
    check(v, seen) {
      completed(v);
      denied(seen, 'mount_tmpfs', 'remount_root_rw', 'umount_proc', 'unshare_mount', 'unshare_net', 'open_init_mnt_ns');
      assert.equal(seen.unshare_user, 'denied', 'no new user namespace (its capabilities open every other namespace)');
      assert.equal(seen.clone_newuser, 'denied');
    },
  },
  {
    mode: 'keyrings',
    name: 'kernel keyrings: a key one run leaves is not found by the next',
    async check(v, seen, ctx) {
      completed(v);
      assert.equal(seen.earlier_key, 'absent');
      assert.notEqual(seen.add_user_key, 'ok', 'no key can be added where the next run would find it');
      const again = await runCase(ctx, 'keyrings');
      completed(again);
      assert.equal(lines(again).earlier_key, 'absent', 'the next run does not see the key the first one left');
    },
  },
  {
    mode: 'sizes',
    name: 'huge argv and environment are delivered whole, within the kernel limit',
    args: () => ['sizes', ...Array.from({ length: 8 }, (_, i) => `${i}`.padEnd(100 * KiB, 'a'))],
    submission: () => ({ env: { BIG: 'e'.repeat(100 * KiB), BIGGER: 'f'.repeat(120 * KiB) } }),
    check(v, seen) {
      completed(v);
      assert.equal(seen.argc, '11');
      assert.ok(Number(seen.argv_bytes) > 800 * KiB, seen.argv_bytes);
      assert.equal(seen.envc, '2');
      assert.ok(Number(seen.env_bytes) > 220 * KiB, seen.env_bytes);
    },
  },
  {
    mode: 'sizes',
    name: 'argv and environment beyond the kernel limit are refused at submission, clearly',
    async check(v, _seen, ctx) {
      completed(v);
      const executable = (await executables.get(ctx.isa))!;
      const tooLong = Array.from({ length: 12 }, (_, i) => `${i}`.padEnd(100 * KiB, 'a'));
      await assert.rejects(ts.client.submit({ executable, args: ['sizes', ...tooLong] }), { code: 'INVALID_ARGUMENT', message: /arguments and environment are \d+ bytes together; the most is 1048576/ });
      await assert.rejects(ts.client.submit({ executable, args: ['sizes'], env: { HUGE: 'ü'.repeat(70 * KiB) } }), { code: 'INVALID_ARGUMENT', message: /environment variable HUGE .* is 143365 bytes/ });
      await assert.rejects(ts.client.submit({ executable, args: ['sizes', 'é'.repeat(65 * KiB)] }), { code: 'INVALID_ARGUMENT', message: /argument 2 is 133120 bytes/ });
    },
  },
  {
    mode: 'write-input',
    name: 'writing to its input file is denied and the CAS keeps its bytes',
    args: () => ['write-input', 'data.txt'],
    submission: () => ({ files: { 'data.txt': INPUT_DIGEST } }),
    check(v, seen) {
      completed(v);
      denied(seen, 'open_write', 'chmod', 'truncate', 'open_append', 'utimes', 'reopen_via_proc');
    },
  },
  {
    mode: 'symlink-out',
    name: 'output symlinks and links pointing out of the sandbox are not followed',
    args: (ctx) => ['symlink-out', ctx.canary],
    submission: () => ({ outputPaths: ['out-passwd', 'out-host', 'out-up', 'out-hard', 'out-root', 'outdir'] }),
    async check(v, seen) {
      completed(v);
      assert.equal(seen.symlink_passwd, 'ok');
      denied(seen, 'hardlink_passwd');
      assert.deepEqual(v.outputFiles, [], 'no output file taken through a symlink');
      const dirs = v.outputDirectories.filter((d) => d.path === 'outdir');
      assert.equal(dirs.length, 1, JSON.stringify(v.outputDirectories));
      const tree = decodeTree(await ts.client.getBlob({ hash: dirs[0]!.treeDigest.hash, sizeBytes: dirs[0]!.treeDigest.sizeBytes }));
      assert.deepEqual(tree.root.files.map((f) => f.name), ['real.txt']);
      assert.deepEqual(tree.root.symlinks, [], 'symlinks leaving the tree are left out');
    },
  },
  {
    mode: 'fill-tmp',
    name: 'filling /tmp stops at its size',
    check(v, seen) {
      completed(v);
      assert.equal(seen.fill_tmp_stopped, 'ENOSPC');
      assert.ok(Number(seen.filled_mib) <= LIMITS.tmpBytes / MiB, seen.filled_mib);
    },
  },
  {
    mode: 'descriptors',
    name: 'running out of descriptors stops at the limit, which cannot be raised',
    check(v, seen) {
      completed(v);
      assert.equal(seen.stopped, 'EMFILE');
      assert.ok(Number(seen.opened) > 0 && Number(seen.opened) <= LIMITS.openFiles, seen.opened);
      denied(seen, 'raise_nofile');
    },
  },
  {
    mode: 'close-stdout',
    name: 'a program that closes its stdout and keeps running is stopped at the timeout',
    timeoutMs: 1_000,
    check(v) {
      assert.equal(v.state, 'timed_out');
      assert.equal(v.limitExceeded, 'wall_time');
      assert.equal(v.stdout.map((l) => l.text).join('\n'), 'closing stdout');
    },
  },
  {
    mode: 'pgrp-escape',
    name: 'children in new sessions and process groups, ignoring SIGTERM, do not outlive the run',
    check(v) {
      completed(v);
      assert.equal(v.stdout[0]?.text, 'escaped children started');
    },
  },
];

let ts: TestServer;
let hostDir: string;
let canary: string;
const CANARY_TEXT = `canary ${randomUUID()}\n`;
/** battery.c built for each platform and uploaded, once (the cases of a platform start together). */
const executables = new Map<Isa, Promise<Digest>>();

async function uploadProgram(isa: Isa): Promise<Digest> {
  const bytes = readFileSync(compileC({ file: 'hostile/battery.c' }, isa));
  const d = digestOf(bytes);
  await ts.client.putBlob(d, bytes);
  return d;
}

function lines(v: SubmittedExecution): Record<string, string> {
  const out: Record<string, string> = {};
  for (const { text } of v.stdout) for (const part of text.split(/ (?=\w+=)/)) if (part.includes('=')) out[part.slice(0, part.indexOf('='))] = part.slice(part.indexOf('=') + 1);
  return out;
}

async function runCase(ctx: Context, mode: string, args?: string[], extra: Partial<ExecutionSubmission> = {}, timeoutMs = 5_000): Promise<SubmittedExecution> {
  const executable = await executables.get(ctx.isa);
  assert.ok(executable, `${ctx.isa} program built`);
  return ts.client.submit(
    { executable, args: [...(args ?? [mode]), ctx.marker], timeoutMs, limits: LIMITS, doNotCache: true, ...extra },
    { wait: true },
  );
}

before(async () => {
  hostDir = await mkdtemp(join(tmpdir(), 'remex-battery-host-'));
  canary = join(hostDir, 'canary.txt');
  await writeFile(canary, CANARY_TEXT);
  ts = await startTestServer({ workerSlots: 4 });
  await ts.client.putBlob(INPUT_DIGEST, INPUT);
});

after(async () => {
  await ts?.close();
  await rm(hostDir, { recursive: true, force: true });
});

for (const isa of PLATFORMS) {
  const tools = isa === 'x86_64' ? ['bwrap', CROSS_CC[isa]!] : ['bwrap', CROSS_CC[isa]!, `qemu-${QEMU_TARGETS[isa]}-static`];
  describe(`hostile battery on ${isa}${isa === 'x86_64' ? ' (native)' : ' (qemu-user)'}`, { concurrency: 4 }, () => {
    for (const c of CASES) {
      test(c.name, async (t) => {
        if (!requireTools(t, ...tools)) return;
        if (!executables.has(isa)) executables.set(isa, uploadProgram(isa));
        const ctx: Context = { isa, marker: `remex-marker-${randomUUID()}`, canary };
        const casPath = join(ts.dataDir, 'cas', 'sha256', INPUT_DIGEST.hash.slice(0, 2), INPUT_DIGEST.hash);
        const casBefore = await stat(casPath);
        const v = await runCase(ctx, c.mode, c.args ? c.args(ctx) : undefined, c.submission?.(ctx) ?? {}, c.timeoutMs);
        assert.equal(v.platform, `${isa}-linux-cpu`);
        await c.check(v, lines(v), ctx);
        // Nothing of the run is left running.
        assert.deepEqual(await processesWithMarker(ctx.marker), [], 'no process of the run is left');
        // No host file changed: the canary, and the CAS file of the input.
        assert.equal(await readFile(canary, 'utf8'), CANARY_TEXT);
        const casAfter = await stat(casPath);
        assert.deepEqual([casAfter.mode, casAfter.size, casAfter.mtimeMs], [casBefore.mode, casBefore.size, casBefore.mtimeMs]);
        assert.deepEqual(digestOf(await readFile(casPath)), INPUT_DIGEST, 'the CAS file of the input is unchanged');
        // The worker serves the next job.
        const next = await runCase(ctx, 'sizes', ['sizes', 'next']);
        completed(next);
        assert.equal(lines(next).argc, '4');
      });
    }
  });
}
