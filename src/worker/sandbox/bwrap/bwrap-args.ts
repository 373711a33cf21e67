/**
 * The bubblewrap invocation for one run, as pure data: the options (passed through `--args`, so the
 * host paths in them never show in the sandbox's /proc/1/cmdline) and the command bwrap executes.
 *
 * As root, bwrap runs without a user namespace, so it can bind input roots that sit under private
 * (0700) directories; the program's uid is switched inside the sandbox by `remex-exec as` (which the
 * launcher leaves open at {@link EXEC_HELPER_FD}, so bwrap executes it through /proc/self/fd without a
 * mount for it), which gets the request's environment as arguments and makes it the environment only
 * after the switch, so nothing the user controls (LD_PRELOAD …) ever reaches a
 * privileged process. Where remex-exec was not built, `unshare --setuid` (run with an empty environment)
 * then `env -i` do the same in two execs.
 */
import { posix } from 'node:path';
import { InvalidArgumentError } from '../../../core/errors.js';
import type { HostLayout } from './host-layout.js';
import { isUnderAny } from './host-layout.js';
import { type EmulationSpec, SANDBOX_ROOT } from '../sandbox.js';
// The launcher's descriptor numbers belong to the spawner's protocol: the spawner and this module share them.
import { STATUS_FD } from './spawner-protocol.js';

/** Where the launcher opens remex-exec for bwrap's child to execute (after bwrap's own descriptors). */
export const EXEC_HELPER_FD = STATUS_FD + 1;
/**
 * Where the launcher puts a copy of the status pipe for `remex-exec as -s`, which reports the program's
 * own end there: bwrap closes its status descriptor in the sandbox and reports only 128 + n for signal n.
 */
export const PROGRAM_STATUS_FD = EXEC_HELPER_FD + 1;

export interface InvocationInput {
  layout: Pick<HostLayout, 'privileged' | 'execHelperPath' | 'unsharePath' | 'envPath' | 'shellPath' | 'systemMounts' | 'boundRoots' | 'etcDir' | 'supportsDisableUserns'>;
  inputRoot: string;
  /** Relative to the input root, as in the request. */
  workingDirectory: string;
  argv: readonly string[];
  env: Readonly<Record<string, string>>;
  tmpBytes: number;
  emulation: EmulationSpec | null;
  runAsUid: number;
  runAsGid: number;
  hostname: string;
}

export interface Invocation {
  bwrapOptions: string[];
  command: string[];
  /** The descriptor at which the launcher must open remex-exec for `command`; null when it is not used. */
  execHelperFd: number | null;
  /** The descriptor at which the launcher must copy the status pipe for the program's waiter; null: none. */
  programStatusFd: number | null;
}

export function planInvocation(input: InvocationInput): Invocation {
  const { layout } = input;
  const options: string[] = [
    ...(layout.privileged
      ? ['--unshare-ipc', '--unshare-pid', '--unshare-net', '--unshare-uts', '--unshare-cgroup-try']
      : ['--unshare-all', '--unshare-user', ...(layout.supportsDisableUserns ? ['--disable-userns'] : [])]),
    '--die-with-parent',
    '--new-session',
    '--json-status-fd',
    String(STATUS_FD),
    '--hostname',
    input.hostname,
    // Kept only until the uid switch, which clears them: SETUID/SETGID for the switch itself,
    // DAC_READ_SEARCH so root-without-DAC_OVERRIDE can still enter a working directory owned by the sandbox uid.
    ...(layout.privileged ? ['--cap-drop', 'ALL', '--cap-add', 'CAP_SETUID', '--cap-add', 'CAP_SETGID', '--cap-add', 'CAP_DAC_READ_SEARCH'] : []),
  ];
  for (const mount of layout.systemMounts) {
    if (mount.kind === 'ro-bind') options.push('--ro-bind', mount.path, mount.path);
    else options.push('--symlink', mount.target, mount.path);
  }
  options.push('--ro-bind', layout.etcDir, '/etc');
  for (const path of emulationPaths(input.emulation)) {
    if (!isUnderAny(path, layout.boundRoots)) options.push('--ro-bind', path, path);
  }
  options.push(
    '--proc',
    '/proc',
    '--dev',
    '/dev',
    '--perms',
    '1777',
    '--size',
    String(input.tmpBytes),
    '--tmpfs',
    '/tmp',
    '--bind',
    input.inputRoot,
    SANDBOX_ROOT,
    '--chdir',
    sandboxWorkingDirectory(input.workingDirectory),
    '--clearenv',
  );

  const program = programArgv(input.argv, input.emulation);
  if (!layout.privileged) {
    for (const [name, value] of Object.entries(input.env)) options.push('--setenv', name, value);
    return { bwrapOptions: options, command: program, execHelperFd: null, programStatusFd: null };
  }
  const assignments = Object.entries(input.env).map(([name, value]) => `${name}=${value}`);
  if (layout.execHelperPath !== null) {
    const helper = `/proc/self/fd/${EXEC_HELPER_FD}`;
    const command = [helper, 'as', '-s', String(PROGRAM_STATUS_FD), String(input.runAsUid), String(input.runAsGid), String(assignments.length), ...assignments, ...program];
    return { bwrapOptions: options, command, execHelperFd: EXEC_HELPER_FD, programStatusFd: PROGRAM_STATUS_FD };
  }
  // env(1) reads any argument holding '=' as an assignment, so such a program goes through sh.
  const runnable = program[0]?.includes('=') ? [layout.shellPath, '-c', 'exec "$0" "$@"', ...program] : program;
  return {
    bwrapOptions: options,
    execHelperFd: null,
    programStatusFd: null,
    command: [layout.unsharePath, `--setuid=${input.runAsUid}`, `--setgid=${input.runAsGid}`, '--', layout.envPath, '-i', '--', ...assignments, ...runnable],
  };
}

/** The absolute working directory inside the sandbox; it must stay inside {@link SANDBOX_ROOT}. */
export function sandboxWorkingDirectory(relative: string): string {
  const absolute = posix.join(SANDBOX_ROOT, relative);
  if (absolute !== SANDBOX_ROOT && !absolute.startsWith(`${SANDBOX_ROOT}/`)) {
    throw new InvalidArgumentError(`working directory ${JSON.stringify(relative)} leaves the input root`);
  }
  return absolute;
}

/** Rejects what exec cannot carry (NUL bytes) or env cannot express (names with '='). */
export function validateCommand(argv: readonly string[], env: Readonly<Record<string, string>>): void {
  if (argv.length === 0 || argv[0] === '') throw new InvalidArgumentError('argv is empty');
  if (argv.some((arg) => arg.includes('\0'))) throw new InvalidArgumentError('an argument contains a NUL byte');
  for (const [name, value] of Object.entries(env)) {
    if (name === '' || name.includes('=') || name.includes('\0')) throw new InvalidArgumentError(`invalid environment variable name ${JSON.stringify(name)}`);
    if (value.includes('\0')) throw new InvalidArgumentError(`environment variable ${name} contains a NUL byte`);
  }
}

function programArgv(argv: readonly string[], emulation: EmulationSpec | null): string[] {
  if (!emulation) return [...argv];
  return [emulation.qemuPath, ...(emulation.sysroot ? ['-L', emulation.sysroot] : []), ...argv];
}

function emulationPaths(emulation: EmulationSpec | null): string[] {
  if (!emulation) return [];
  return emulation.sysroot ? [emulation.qemuPath, emulation.sysroot] : [emulation.qemuPath];
}
