/**
 * Run by sandbox-unprivileged.test.ts as a process of its own under an unprivileged uid: makes a
 * BwrapSandbox there (remex-exec's spawner with `native`, the Node spawner with `node`), runs one shell
 * script in a fresh input root and prints one JSON line: the sandbox's capabilities, the run's exit code,
 * stdout and stderr, and the file the script wrote into its working directory, read from outside.
 *
 * usage: node unprivileged-sandbox.js native|node SCRIPT
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_LIMITS } from '../../src/core/limits.js';
import { BwrapSandbox } from '../../src/worker/sandbox/bwrap-sandbox.js';

const [kind, script] = process.argv.slice(2);
if ((kind !== 'native' && kind !== 'node') || script === undefined) throw new Error('usage: unprivileged-sandbox.js native|node SCRIPT');
const sandbox = await BwrapSandbox.create(kind === 'node' ? { execHelperPath: null } : {});
const root = await mkdtemp(join(tmpdir(), 'remex-unprivileged-'));
try {
  const r = await sandbox.run({
    inputRoot: root,
    workingDirectory: '',
    argv: ['/bin/sh', '-c', script],
    env: { PATH: '/usr/bin:/bin' },
    stdinPath: null,
    timeoutMs: 20_000,
    graceMs: 200,
    limits: { ...DEFAULT_LIMITS },
    emulation: null,
  });
  const written = await readFile(join(root, 'out.txt'), 'utf8').catch(() => null);
  console.log(JSON.stringify({ capabilities: sandbox.capabilities, exitCode: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString(), written }));
} finally {
  await sandbox.close();
  await rm(root, { recursive: true, force: true });
}
