/**
 * What sandbox-unprivileged.test.ts runs in a process of its own under an unprivileged uid: makes a
 * BwrapSandbox there (remex-exec's spawner with `native`, the Node spawner with `node`), runs one shell
 * script in a fresh input root and prints one JSON line: the sandbox's capabilities, the run's exit code,
 * stdout and stderr, and the file the script wrote into its working directory, read from outside.
 *
 * A module, not a script: the test runner loads every file under dist/test/, so this one must do nothing
 * when loaded. The test's child imports it and calls main (see UNPRIVILEGED_SANDBOX_ENTRY).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_LIMITS } from '../../src/core/limits.js';
import { BwrapSandbox } from '../../src/worker/sandbox/bwrap/bwrap-sandbox.js';

/** `node --input-type=module -e UNPRIVILEGED_SANDBOX_ENTRY <this file> native|node SCRIPT` runs main. */
export const UNPRIVILEGED_SANDBOX_ENTRY = 'const [file, kind, script] = process.argv.slice(1); await (await import(file)).main(kind, script);';

export async function main(kind: string | undefined, script: string | undefined): Promise<void> {
  if ((kind !== 'native' && kind !== 'node') || script === undefined) throw new Error('usage: main(native|node, SCRIPT)');
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
}
