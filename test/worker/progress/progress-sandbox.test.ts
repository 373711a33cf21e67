/**
 * The progress channel as the worker will use it: created in a run's input root, handed to a program in the
 * real bubblewrap sandbox (as uid 65534 when the worker is root) through REMEX_PROGRESS, read while it
 * runs; a program that swaps the file for a symlink to /etc/shadow gets nothing of the host's read.
 */
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { after, describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import { DEFAULT_LIMITS } from '../../../src/core/limits.js';
import { ProgressChannel, PROGRESS_ENV_VAR } from '../../../src/worker/progress/progress-channel.js';
import type { ProgressRecord } from '../../../src/worker/progress/progress-channel.js';
import { BwrapSandbox, DEFAULT_RUN_AS_GID, DEFAULT_RUN_AS_UID } from '../../../src/worker/sandbox/bwrap/bwrap-sandbox.js';
import { SANDBOX_ROOT } from '../../../src/worker/sandbox/sandbox.js';
import type { SandboxResult } from '../../../src/worker/sandbox/sandbox.js';
import { requireTools } from '../../helpers/tools.js';

const privileged = process.getuid?.() === 0;
let sandbox: Promise<BwrapSandbox> | undefined;
after(async () => {
  if (sandbox) await (await sandbox).close();
});

async function runWithChannel(t: TestContext, script: string): Promise<{ result: SandboxResult; ch: ProgressChannel; delivered: ProgressRecord[]; seenWhileRunning: number }> {
  sandbox ??= BwrapSandbox.create();
  const inputRoot = await mkdtemp(join(tmpdir(), 'remex-progress-sandbox-'));
  await chmod(inputRoot, 0o755);
  t.after(() => rm(inputRoot, { recursive: true, force: true }));
  const delivered: ProgressRecord[] = [];
  const ch = await ProgressChannel.open(inputRoot, {
    pollIntervalMs: 20,
    minIntervalMs: 0,
    onUpdate: (update, atMs) => delivered.push({ update, atMs }),
    ...(privileged ? { fileOwner: { uid: DEFAULT_RUN_AS_UID, gid: DEFAULT_RUN_AS_GID } } : {}),
  });
  t.after(() => ch.close());
  const result = await (await sandbox).run({
    inputRoot,
    workingDirectory: '',
    argv: ['/bin/sh', '-c', script],
    env: { PATH: '/usr/bin:/bin', [PROGRESS_ENV_VAR]: posix.join(SANDBOX_ROOT, ch.fileName) },
    stdinPath: null,
    timeoutMs: 20_000,
    graceMs: 200,
    limits: { ...DEFAULT_LIMITS },
    emulation: null,
  });
  // Before close: what was read while the program ran.
  const seenWhileRunning = delivered.length;
  await ch.close();
  return { result, ch, delivered, seenWhileRunning };
}

describe('ProgressChannel in the bubblewrap sandbox', () => {
  test('a program in the sandbox writes its progress through REMEX_PROGRESS; it arrives while it runs', async (t) => {
    if (!requireTools(t, 'bwrap', 'unshare')) return;
    const { result, delivered, seenWhileRunning, ch } = await runWithChannel(
      t,
      'id -u; for i in 1 2 3; do echo "$((i * 30)) step $i" >> "$REMEX_PROGRESS"; sleep 0.3; done; printf \'{"percent":100,"metrics":{"uid":%s}}\' "$(id -u)" >> "$REMEX_PROGRESS"',
    );
    assert.equal(result.exitCode, 0, result.stderr.toString());
    if (privileged) assert.equal(result.stdout.toString().trim(), String(DEFAULT_RUN_AS_UID));
    assert.ok(seenWhileRunning >= 2, `${seenWhileRunning} updates before the run ended`);
    assert.deepEqual(
      delivered.map((r) => r.update),
      [{ percent: 30, message: 'step 1' }, { percent: 60, message: 'step 2' }, { percent: 90, message: 'step 3' }, { percent: 100, metrics: { uid: Number(result.stdout.toString().trim()) } }],
    );
    assert.equal(ch.stats.malformed, 0);
  });

  test('a program that swaps the file for a symlink to /etc/shadow: never followed, reported', async (t) => {
    if (!requireTools(t, 'bwrap', 'unshare')) return;
    const { result, delivered, ch } = await runWithChannel(
      t,
      'echo "10 before" >> "$REMEX_PROGRESS"; rm -f "$REMEX_PROGRESS" && ln -s /etc/shadow "$REMEX_PROGRESS" && echo swapped',
    );
    assert.equal(result.exitCode, 0, result.stderr.toString());
    assert.equal(result.stdout.toString().trim(), 'swapped');
    assert.deepEqual(
      delivered.map((r) => r.update),
      [{ percent: 10, message: 'before' }],
    );
    assert.match(ch.problem ?? '', /replaced by a symlink/);
    assert.equal(ch.stats.lines, 1);
  });
});
