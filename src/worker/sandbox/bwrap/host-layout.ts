/**
 * What the sandbox needs from the host, found once at start-up: the tools it executes, how the
 * system directories are laid out (merged /usr or not), the sandbox's /etc (see sandbox-etc.ts), and
 * the file descriptors this process inherited without close-on-exec (which would otherwise leak into
 * every sandbox).
 */
import { spawn } from 'node:child_process';
import { closeSync, constants as fsConstants, openSync } from 'node:fs';
import { access, lstat, readlink, realpath, stat } from 'node:fs/promises';
import { delimiter, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UnavailableError } from '../../../core/errors.js';
import { findInheritedFds } from './inherited-fds.js';
import { prepareSandboxEtc } from './sandbox-etc.js';

export { findInheritedFds } from './inherited-fds.js';

export type SystemMount = { kind: 'ro-bind'; path: string } | { kind: 'symlink'; target: string; path: string };

export interface HostLayout {
  bwrapPath: string;
  bwrapVersion: string;
  shellPath: string;
  /**
   * Running as root: bwrap runs without a user namespace (so it can reach input roots under private
   * directories) and the program's uid is switched inside the sandbox by `unshare` then `env -i`.
   * Otherwise bwrap runs unprivileged in a user namespace, as the worker's own uid.
   */
  privileged: boolean;
  /**
   * remex-exec (native/remex-exec.c), which launches bwrap and, as root, switches the uid inside the
   * sandbox; null where it was not built (or not wanted): then `sh` launches and `unshare` + `env` switch.
   */
  execHelperPath: string | null;
  /** `unshare` (util-linux), used for its --setuid/--setgid, and `env`; both under a bound system dir. */
  unsharePath: string;
  envPath: string;
  supportsDisableUserns: boolean;
  systemMounts: SystemMount[];
  /** Host directories visible read-only at the same path inside every sandbox. */
  boundRoots: string[];
  /** Directory bound read-only as the sandbox's /etc; shared, content-addressed, never removed. */
  etcDir: string;
  /** Descriptors this process inherited without close-on-exec; each run overlays them with /dev/null. */
  inheritedFds: number[];
  devNullFd: number;
}

export interface HostLayoutOptions {
  bwrapPath?: string;
  runAsUid: number;
  runAsGid: number;
  searchPath?: string;
  /** Where the prepared /etc lives; see {@link prepareSandboxEtc}. */
  stateDir?: string;
  /** remex-exec to use; null: none (sh, unshare and env instead). Default: the one built with remex, if any. */
  execHelperPath?: string | null;
}

/** Where scripts/build-native.sh puts remex-exec: dist/native/, from dist/src/worker/sandbox/. */
export const BUILT_EXEC_HELPER = fileURLToPath(new URL('../../../../native/remex-exec', import.meta.url));

const SYSTEM_DIRS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'];

export async function probeHostLayout(opts: HostLayoutOptions): Promise<HostLayout> {
  const searchPath = opts.searchPath ?? process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin';
  const privileged = process.getuid?.() === 0;
  const [bwrapPath, unsharePath, envPath, shellPath, systemMounts, execHelperPath] = await Promise.all([
    opts.bwrapPath ?? requireTool('bwrap', searchPath),
    // Resolved, so /bin/env on a merged-/usr host is recognised as /usr/bin/env.
    requireTool('unshare', searchPath).then((p) => realpath(p)),
    requireTool('env', searchPath).then((p) => realpath(p)),
    requireExecutable('/bin/sh'),
    findSystemMounts(),
    findExecHelper(opts.execHelperPath),
  ]);
  const boundRoots = systemMounts.filter((m) => m.kind === 'ro-bind').map((m) => m.path);
  for (const tool of privileged ? [unsharePath, envPath] : []) {
    if (!isUnderAny(tool, boundRoots)) throw new UnavailableError(`sandbox: ${tool} is outside the system directories bound into the sandbox`);
  }
  const [etcDir, inheritedFds, help] = await Promise.all([prepareSandboxEtc({ uid: opts.runAsUid, gid: opts.runAsGid, ...(opts.stateDir ? { stateDir: opts.stateDir } : {}) }), findInheritedFds(), runForText(bwrapPath, ['--help'])]);
  return {
    bwrapPath,
    bwrapVersion: (await runForText(bwrapPath, ['--version'])).trim(),
    shellPath,
    privileged,
    execHelperPath,
    unsharePath,
    envPath,
    supportsDisableUserns: help.includes('--disable-userns'),
    systemMounts,
    boundRoots,
    etcDir,
    inheritedFds,
    devNullFd: openSync('/dev/null', 'r+'),
  };
}

/** Releases what {@link probeHostLayout} holds open. */
export function disposeHostLayout(layout: HostLayout): void {
  closeSync(layout.devNullFd);
}

/** True when `path` is one of `roots` or inside one. */
export function isUnderAny(path: string, roots: readonly string[]): boolean {
  return roots.some((root) => path === root || path.startsWith(root.endsWith('/') ? root : `${root}/`));
}

/** The first executable named `name` on `searchPath`, or null. */
export async function findOnPath(name: string, searchPath: string): Promise<string | null> {
  for (const dir of searchPath.split(delimiter)) {
    if (!isAbsolute(dir)) continue;
    const candidate = join(dir, name);
    if (await isExecutable(candidate)) return candidate;
  }
  return null;
}

async function requireTool(name: string, searchPath: string): Promise<string> {
  const found = await findOnPath(name, searchPath);
  if (!found) throw new UnavailableError(`sandbox: ${name} not found on PATH (install bubblewrap and util-linux)`);
  return found;
}

async function requireExecutable(path: string): Promise<string> {
  if (!(await isExecutable(path))) throw new UnavailableError(`sandbox: ${path} is missing`);
  return path;
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, fsConstants.X_OK);
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** An explicit helper must be there; the built one is used if it is. */
async function findExecHelper(wanted: string | null | undefined): Promise<string | null> {
  if (wanted === null) return null;
  if (wanted !== undefined) return requireExecutable(wanted);
  return (await isExecutable(BUILT_EXEC_HELPER)) ? BUILT_EXEC_HELPER : null;
}

async function findSystemMounts(): Promise<SystemMount[]> {
  const found = await Promise.all(
    SYSTEM_DIRS.map(async (path): Promise<SystemMount | null> => {
      try {
        const stat = await lstat(path);
        // A merged-/usr host has /bin → usr/bin: recreate the symlink rather than binding twice.
        if (stat.isSymbolicLink()) return { kind: 'symlink', target: await readlink(path), path };
        return stat.isDirectory() ? { kind: 'ro-bind', path } : null;
      } catch {
        return null;
      }
    }),
  );
  return found.filter((m): m is SystemMount => m !== null);
}

function runForText(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], env: {} });
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    child.stderr.on('data', (d: Buffer) => (text += d.toString()));
    child.on('error', (err) => reject(new UnavailableError(`sandbox: cannot run ${file}`, { cause: err })));
    child.on('close', () => resolve(text));
  });
}
