/**
 * The sandbox's /etc: generated identity files (passwd, group, hosts, nsswitch.conf) plus copies of
 * the few host entries programs need and that reveal nothing about the host (the loader cache, the
 * time zone, Debian's alternatives symlinks). Never the host's /etc itself.
 *
 * It is one directory bound as a whole (each bind mount costs bwrap a mountinfo scan), named by a hash
 * of its content inside a private state directory, so every sandbox and every worker process on the
 * host with the same content shares one copy and nothing accumulates across restarts. Root keeps it
 * under /run (a tmpfs no age-based tmp cleaner touches); other users under their own dir in the tmpdir.
 */
import { createHash } from 'node:crypto';
import { chmod, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface SandboxEtcOptions {
  uid: number;
  gid: number;
  /** Private directory (mode 0700, owned by this process's uid) holding the prepared /etc copies. */
  stateDir?: string;
  /** The host's /etc; tests point it elsewhere. */
  hostEtc?: string;
}

type EtcEntry = { path: string; kind: 'dir' } | { path: string; kind: 'file'; data: Buffer } | { path: string; kind: 'symlink'; target: string };

/** Host entries copied in; symlinks (localtime, alternatives/*) point into /usr, which is bound too. */
const HOST_ENTRIES = ['ld.so.cache', 'localtime', 'alternatives'];

export function defaultStateDir(uid: number): string {
  return uid === 0 ? '/run/remex-sandbox' : join(tmpdir(), `remex-sandbox-${uid}`);
}

/** The directory to bind read-only as the sandbox's /etc, created if this content has none yet. */
export async function prepareSandboxEtc(opts: SandboxEtcOptions): Promise<string> {
  const entries = await collectEntries(opts.uid, opts.gid, opts.hostEtc ?? '/etc');
  const hash = contentHash(entries);
  const myUid = process.getuid?.() ?? 0;
  const stateDir = opts.stateDir ?? defaultStateDir(myUid);
  if (!(await ensurePrivateDir(stateDir, myUid))) {
    // Someone else owns that path (another user squatting in a shared tmpdir): use a private copy.
    return writeEntries(await mkdtemp(join(tmpdir(), 'remex-sandbox-etc-')), entries);
  }
  const target = join(stateDir, `etc-${hash}`);
  if (await exists(target)) return target;
  const staging = await writeEntries(await mkdtemp(join(stateDir, 'staging-')), entries);
  try {
    await rename(staging, target);
  } catch (err) {
    // Another worker prepared the same content at the same moment: theirs is as good as ours.
    await rm(staging, { recursive: true, force: true });
    if (!(await exists(target))) throw err;
  }
  return target;
}

async function collectEntries(uid: number, gid: number, hostEtc: string): Promise<EtcEntry[]> {
  const generated: Record<string, string> = {
    // HOME is /tmp: writable, private, and dotfiles there never pollute the run's outputs.
    passwd: `root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:${uid}:${gid}:remex sandbox:/tmp:/bin/sh\n`,
    group: `root:x:0:\nsandbox:x:${gid}:\n`,
    hosts: '127.0.0.1 localhost\n::1 localhost\n',
    'nsswitch.conf': 'passwd: files\ngroup: files\nhosts: files dns\n',
  };
  const entries: EtcEntry[] = Object.entries(generated).map(([path, text]) => ({ path, kind: 'file', data: Buffer.from(text) }));
  for (const name of HOST_ENTRIES) entries.push(...(await copyOf(join(hostEtc, name), name, 1)));
  return entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** The entry at `source` as EtcEntries (a directory: itself and its children, `depth` levels down). */
async function copyOf(source: string, path: string, depth: number): Promise<EtcEntry[]> {
  let info;
  try {
    info = await lstat(source);
  } catch {
    return [];
  }
  if (info.isSymbolicLink()) return [{ path, kind: 'symlink', target: await readlink(source) }];
  if (info.isFile()) return [{ path, kind: 'file', data: await readFile(source) }];
  if (!info.isDirectory() || depth <= 0) return [];
  const children = await readdir(source);
  const nested = await Promise.all(children.map((child) => copyOf(join(source, child), join(path, child), depth - 1)));
  return [{ path, kind: 'dir' }, ...nested.flat()];
}

function contentHash(entries: readonly EtcEntry[]): string {
  const hash = createHash('sha256');
  for (const e of entries) {
    hash.update(`${e.kind}\0${e.path}\0`);
    if (e.kind === 'file') hash.update(e.data);
    if (e.kind === 'symlink') hash.update(e.target);
    hash.update('\0');
  }
  return hash.digest('hex').slice(0, 16);
}

/** Entries are sorted, so a directory is always written before what it holds. */
async function writeEntries(dir: string, entries: readonly EtcEntry[]): Promise<string> {
  for (const e of entries) {
    const path = join(dir, e.path);
    if (e.kind === 'dir') await mkdir(path, { mode: 0o755 });
    else if (e.kind === 'symlink') await symlink(e.target, path);
    else await writeFile(path, e.data, { mode: 0o644 });
  }
  await chmod(dir, 0o755);
  return dir;
}

/** Creates `dir` (0700) if needed; true when it is a real directory owned by `uid` that no one else can write. */
async function ensurePrivateDir(dir: string, uid: number): Promise<boolean> {
  await mkdir(dir, { recursive: true, mode: 0o700 }).catch(() => undefined);
  try {
    const info = await lstat(dir);
    return info.isDirectory() && info.uid === uid && (info.mode & 0o022) === 0;
  } catch {
    return false;
  }
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}
