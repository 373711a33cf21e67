/**
 * Exact exit statuses (issue 18): a program's own exit status is its exit code and a death by signal is
 * that signal, natively and under qemu-user, on both doors. bwrap alone reports 128 + n for signal n, in
 * which `exit(130)` and SIGINT look the same; remex-exec's waiter reports the difference.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { after, before, describe, test } from 'node:test';
import type { ExecutionView } from '../../src/api/execution-view.js';
import { digestOf } from '../../src/core/digest.js';
import type { Digest } from '../../src/core/digest.js';
import { signalName } from '../../src/worker/sandbox/bwrap/exit-status.js';
import { execute, makeAction, startGrpcHarness, uploadTree } from '../api/grpc/harness.js';
import type { GrpcHarness } from '../api/grpc/harness.js';
import { compileC, requireExecHelper, requireTools } from '../helpers/tools.js';

/** 126…192: the statuses shells give meaning to (126 cannot run, 127 not found, 128 + n signal n). */
const STATUSES = Array.from({ length: 192 - 126 + 1 }, (_, i) => 126 + i);
const SIGNALS = Array.from({ length: 31 }, (_, i) => i + 1);
/** Their default action is to do nothing: the program goes on and exits with 0. */
const IGNORED_BY_DEFAULT = new Set(['SIGCHLD', 'SIGCONT', 'SIGURG', 'SIGWINCH']);
/** Their default action stops the process (or, in an orphaned process group, does nothing). */
const STOPPING = new Set(['SIGSTOP', 'SIGTSTP', 'SIGTTIN', 'SIGTTOU']);

const PLATFORMS = [
  { isa: 'x86_64', triple: 'x86_64-linux-cpu', emulated: false, tools: ['gcc'] },
  { isa: 'aarch64', triple: 'aarch64-linux-cpu', emulated: true, tools: ['aarch64-linux-gnu-gcc', 'qemu-aarch64-static'] },
] as const;

let h: GrpcHarness;

describe('exit statuses', () => {
  before(async () => {
    h = await startGrpcHarness({}, { workerSlots: 4 });
  });
  after(async () => {
    await h?.close();
  });

  for (const p of PLATFORMS) {
    const mode = p.emulated ? 'emulated' : 'native';

    test(`HTTP, ${p.isa} (${mode}): every exit status 126…192 is an exit code, never a signal`, async (t) => {
      if (!requireTools(t, 'bwrap', ...p.tools) || !requireExecHelper(t)) return;
      const exe = await uploadProgram(p.isa);
      const views = await Promise.all(STATUSES.map((n) => run(exe, p.triple, ['exit', String(n)])));
      views.forEach((v, i) => {
        const n = STATUSES[i];
        assert.equal(v.state, 'completed', `exit ${n}`);
        assert.equal(v.emulated, p.emulated);
        assert.deepEqual({ code: v.code, signal: v.signal }, { code: n, signal: null }, `exit ${n}`);
      });
    });

    test(`HTTP, ${p.isa} (${mode}): a death by each signal 1…31 is that signal`, async (t) => {
      if (!requireTools(t, 'bwrap', ...p.tools) || !requireExecHelper(t)) return;
      const exe = await uploadProgram(p.isa);
      const views = await Promise.all(SIGNALS.map((n) => run(exe, p.triple, ['signal', String(n)], STOPPING.has(signalName(n)) ? 2 : 30)));
      views.forEach((v, i) => {
        const name = signalName(SIGNALS[i] as number);
        if (IGNORED_BY_DEFAULT.has(name)) {
          assert.deepEqual({ state: v.state, code: v.code, signal: v.signal }, { state: 'completed', code: 0, signal: null }, name);
        } else if (STOPPING.has(name)) {
          // Stopped, the program runs into its timeout; where the kernel discards the stop, it exits 0. Never reported as ended by the stop signal.
          assert.ok(v.state === 'timed_out' || (v.state === 'completed' && v.code === 0), `${name}: ${v.state} ${v.code} ${v.signal}`);
          assert.notEqual(v.signal, name);
        } else {
          // The HTTP view's code is -1 for a run a signal ended (Compiler Explorer's convention).
          assert.deepEqual({ state: v.state, code: v.code, signal: v.signal }, { state: 'completed', code: -1, signal: name }, name);
        }
      });
    });

    test(`REAPI, ${p.isa} (${mode}): exit_code is the status; a signal is 128 + n there, and the same operation over HTTP tells which`, async (t) => {
      if (!requireTools(t, 'bwrap', ...p.tools) || !requireExecHelper(t)) return;
      const root = await uploadTree(h, { prog: { data: readFileSync(compileC({ file: 'programs/end-as.c' }, p.isa)), executable: true } });
      const platform: Array<[string, string]> = [['remex-platform', p.triple]];
      const cases = [
        ...STATUSES.map((n) => ({ args: ['exit', String(n)], exitCode: n, signal: null as string | null })),
        ...SIGNALS.map((n) => signalName(n))
          .filter((name) => !IGNORED_BY_DEFAULT.has(name) && !STOPPING.has(name))
          .map((name) => ({ args: ['signal', String(constants.signals[name as NodeJS.Signals])], exitCode: 128 + (constants.signals[name as NodeJS.Signals] as number), signal: name as string | null })),
      ];
      await Promise.all(
        cases.map(async (c) => {
          const { action } = await makeAction(h, { args: ['./prog', ...c.args], inputRoot: root, platform });
          const { operations, result } = await execute(h, action);
          assert.equal(result.exit_code, c.exitCode, c.args.join(' '));
          const view = await h.ts.client.getExecution(operations[0]?.name as string);
          assert.deepEqual({ code: view.code, signal: view.signal, emulated: view.emulated }, { code: c.signal ? -1 : c.exitCode, signal: c.signal, emulated: p.emulated }, c.args.join(' '));
        }),
      );
    });
  }
});

const uploaded = new Map<string, Digest>();

async function uploadProgram(isa: string): Promise<Digest> {
  const known = uploaded.get(isa);
  if (known) return known;
  const bytes = readFileSync(compileC({ file: 'programs/end-as.c' }, isa));
  const digest = digestOf(bytes);
  await h.ts.client.putBlob(digest, bytes);
  uploaded.set(isa, digest);
  return digest;
}

function run(executable: Digest, platform: string, args: string[], timeoutSeconds = 30): Promise<ExecutionView> {
  return h.ts.client.submit({ executable, platform, args, timeoutMs: timeoutSeconds * 1000 }, { wait: true });
}
