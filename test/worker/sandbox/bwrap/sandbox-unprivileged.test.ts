/**
 * The sandbox when the worker is not root: bwrap in a user namespace, programs as the worker's own uid,
 * limits by rlimits where no cgroup is delegated. The suite runs as root (as CI does), so a worker process
 * of uid 65534 is started for it (test/helpers/unprivileged-sandbox.ts), with each spawner.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { IN_CI, requireExecHelper, requireTools } from '../../../helpers/tools.js';
import { UNPRIVILEGED_SANDBOX_ENTRY } from '../../../helpers/unprivileged-sandbox.js';

const UID = 65534;
const HELPER = join(import.meta.dirname, '..', '..', '..', 'helpers', 'unprivileged-sandbox.js');

interface Outcome {
  capabilities: { kind: string; notes: string[] };
  exitCode: number | null;
  stdout: string;
  stderr: string;
  written: string | null;
}

function runAsNobody(kind: 'native' | 'node', script: string): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', UNPRIVILEGED_SANDBOX_ENTRY, HELPER, kind, script], { uid: UID, gid: UID, cwd: '/', env: { PATH: '/usr/bin:/bin', TMPDIR: '/tmp' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`the uid ${UID} worker exited with ${String(code)}:\n${err}${out}`));
      else resolve(JSON.parse(out) as Outcome);
    });
  });
}

/** Why this host cannot run the test, or undefined. */
function unsupported(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root: the whole suite runs unprivileged here, so every sandbox test covers this mode';
  const max = Number(readFileSync('/proc/sys/user/max_user_namespaces', 'utf8').trim());
  if (!(max > 0)) return 'user namespaces are disabled (user.max_user_namespaces is 0)';
  // Ubuntu's AppArmor denies unprivileged user namespaces to programs without a profile allowing them.
  const apparmor = '/proc/sys/kernel/apparmor_restrict_unprivileged_userns';
  if (existsSync(apparmor) && readFileSync(apparmor, 'utf8').trim() === '1') return `AppArmor restricts unprivileged user namespaces (${apparmor} is 1)`;
  return undefined;
}

const SCRIPT = [
  'id -u',
  'echo written > out.txt',
  // Numbered entries of /proc: the sandbox's own processes only (init, sh and what this pipeline runs).
  'ls /proc | grep -c "^[0-9]"',
  'tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " "',
  'touch /usr/remex-escape 2>/dev/null && echo usr-writable || echo usr-read-only',
  'for f in /proc/self/fd/*; do t=$(readlink "$f") && echo "fd ${f##*/} $t"; done',
  'exit 0',
].join('; ');

describe('BwrapSandbox under an unprivileged worker (uid 65534)', () => {
  for (const kind of ['native', 'node'] as const) {
    test(`${kind} spawner: the program runs as the worker's uid, confined as under root`, async (t) => {
      if (!requireTools(t, 'bwrap') || (kind === 'native' && !requireExecHelper(t))) return;
      const why = unsupported();
      if (why) {
        if (IN_CI && !why.startsWith('not root')) throw new Error(why);
        t.skip(why);
        return;
      }
      const r = await runAsNobody(kind, SCRIPT);
      assert.equal(r.capabilities.kind, 'bwrap');
      assert.ok(r.capabilities.notes.some((n) => n.startsWith(`not root: programs run as this process's uid ${UID}`)), r.capabilities.notes.join('\n'));
      assert.equal(r.exitCode, 0, `${r.stderr}\n${r.stdout}`);
      const lines = r.stdout.trim().split('\n');
      assert.equal(lines[0], String(UID));
      assert.equal(r.written, 'written\n', 'the program writes its working directory, the input root');
      assert.ok(Number(lines[1]) <= 5, `processes visible in the sandbox: ${lines[1]}`);
      assert.equal(lines[2], 'lo', 'a network namespace of its own, loopback only');
      assert.equal(lines[3], 'usr-read-only');
      const fds = lines.filter((l) => l.startsWith('fd ')).map((l) => l.split(' '));
      assert.deepEqual(
        fds.map(([, fd]) => Number(fd)).filter((fd) => fd <= 2),
        [0, 1, 2],
        `the descriptor listing ran: ${r.stdout}`,
      );
      // 0–2 are the run's stdin and output pipes; the glob's own directory descriptor is closed by the time
      // the loop reads it. What the worker held is closed (remex-exec) or /dev/null (the Node spawner).
      for (const [, fd, target] of fds) {
        if (Number(fd) <= 2) continue;
        if (kind === 'native') assert.fail(`descriptor ${fd} -> ${target} reached the program`);
        else assert.equal(target, '/dev/null', `descriptor ${fd}`);
      }
    });
  }
});
