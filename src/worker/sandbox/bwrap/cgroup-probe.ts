/**
 * Finds usable cgroups at start-up: reads the mounted hierarchies (/proc/self/mountinfo) and this
 * process's own cgroups (/proc/self/cgroup), then proves the parent is writable by creating and
 * removing a probe cgroup. Run cgroups nest under this process's own cgroup by default, so the
 * service's own memory accounting and limits keep covering its sandboxes.
 */
import { mkdir, readFile, readdir, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { CgroupV1Driver, type CgroupV1Parents } from './cgroup-v1.js';
import { CgroupV2Driver } from './cgroup-v2.js';
import { type CgroupDriver, isErrno, readOptional, removeCgroupDir } from './cgroups.js';

/** Every run cgroup's name starts with this, then the worker's pid, then a counter. */
export const RUN_CGROUP_PREFIX = 'remex-run-';

export type CgroupMode = 'auto' | 'v1' | 'v2' | 'none';

export interface CgroupProbeOptions {
  mode?: CgroupMode;
  /**
   * Cgroup path (as in /proc/self/cgroup, e.g. `/remex`) under which run cgroups are made, in every
   * hierarchy. Default: this process's own cgroup.
   */
  parent?: string;
  /** Where /proc is; tests point it at a fake tree. */
  procRoot?: string;
}

export interface CgroupProbe {
  driver: CgroupDriver | null;
  notes: string[];
}

export interface CgroupMount {
  /** 'cgroup' (v1) or 'cgroup2'. */
  fsType: string;
  mountPoint: string;
  /** Path of the mount's root inside the hierarchy ('/' unless a container mounted a subtree). */
  root: string;
  /** v1 controllers of the hierarchy (`memory`, `cpu`, `cpuacct` …); empty for cgroup2. */
  controllers: string[];
}

const V1_CONTROLLERS = ['memory', 'pids', 'cpuacct'] as const;
/** Super options of a v1 cgroup mount that are flags, not controllers. */
const V1_MOUNT_FLAGS = new Set(['rw', 'ro', 'xattr', 'noprefix', 'clone_children', 'cpuset_v2_mode', 'favordynmods']);

export async function probeCgroups(opts: CgroupProbeOptions = {}): Promise<CgroupProbe> {
  const mode = opts.mode ?? 'auto';
  if (mode === 'none') return { driver: null, notes: ['cgroups disabled by configuration'] };
  const procRoot = opts.procRoot ?? '/proc';
  const [mountinfo, ownCgroups] = await Promise.all([readFile(join(procRoot, 'self/mountinfo'), 'utf8'), readFile(join(procRoot, 'self/cgroup'), 'utf8')]);
  const mounts = parseCgroupMounts(mountinfo);
  const own = parseProcCgroup(ownCgroups);
  const v1Notes: string[] = [];
  const v2Notes: string[] = [];
  const v1 = mode === 'v2' ? null : await probeV1(mounts, own, opts.parent, v1Notes);
  const v2 = mode === 'v1' ? null : await probeV2(mounts, own, opts.parent, v2Notes);
  const score = (d: CgroupDriver | null): number => (d ? Number(d.enforces.memory) + Number(d.enforces.processes) + Number(d.enforces.cpuTime) : -1);
  const driver = score(v1) >= score(v2) ? v1 : v2;
  if (!driver) return { driver, notes: [...v1Notes, ...v2Notes, 'no usable cgroups: memory, processes and CPU time are limited per process by rlimits only'] };
  await sweepStaleRunCgroups(runCgroupParents(mounts, own, opts.parent));
  // Only what concerns the hierarchy in use: a hybrid host's idle cgroup2 mount is not news.
  return { driver, notes: driver === v1 ? v1Notes : v2Notes };
}

/** The cgroup mounts in a mountinfo text. */
export function parseCgroupMounts(mountinfo: string): CgroupMount[] {
  const mounts: CgroupMount[] = [];
  for (const line of mountinfo.split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!pre || !post) continue;
    const fields = pre.split(' ');
    const [fsType, , superOptions = ''] = post.split(' ');
    if (fsType !== 'cgroup' && fsType !== 'cgroup2') continue;
    const root = unescapeMountPath(fields[3] ?? '/');
    const mountPoint = unescapeMountPath(fields[4] ?? '');
    const controllers = fsType === 'cgroup' ? superOptions.split(',').filter((o) => !V1_MOUNT_FLAGS.has(o) && !o.includes('=')) : [];
    mounts.push({ fsType, mountPoint, root, controllers });
  }
  return mounts;
}

/** /proc/self/cgroup as a map from v1 controller (or '' for cgroup2) to cgroup path. */
export function parseProcCgroup(text: string): Map<string, string> {
  const paths = new Map<string, string>();
  for (const line of text.split('\n')) {
    const match = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!match) continue;
    const [, controllers = '', path = '/'] = match;
    if (controllers === '') paths.set('', path);
    else for (const c of controllers.split(',')) paths.set(c, path);
  }
  return paths;
}

/** Host directory of cgroup `path` in a hierarchy mounted at `mount`. */
export function cgroupDir(mount: CgroupMount, path: string): string {
  const inside = mount.root !== '/' && (path === mount.root || path.startsWith(`${mount.root}/`)) ? path.slice(mount.root.length) : path;
  return join(mount.mountPoint, inside);
}

async function probeV1(mounts: CgroupMount[], own: Map<string, string>, parent: string | undefined, notes: string[]): Promise<CgroupDriver | null> {
  const parents: CgroupV1Parents = {};
  for (const controller of V1_CONTROLLERS) {
    const mount = mounts.find((m) => m.fsType === 'cgroup' && m.controllers.includes(controller));
    if (!mount) continue;
    const dir = cgroupDir(mount, parent ?? own.get(controller) ?? '/');
    if (await canCreateChild(dir)) parents[controller] = dir;
    else notes.push(`cgroup v1 ${controller}: cannot create cgroups under ${dir}`);
  }
  if (Object.keys(parents).length === 0) return null;
  const hasMemsw = parents.memory !== undefined && (await readOptional(join(parents.memory, 'memory.memsw.limit_in_bytes'))) !== null;
  return new CgroupV1Driver(parents, hasMemsw);
}

async function probeV2(mounts: CgroupMount[], own: Map<string, string>, parent: string | undefined, notes: string[]): Promise<CgroupDriver | null> {
  const mount = mounts.find((m) => m.fsType === 'cgroup2');
  if (!mount) return null;
  const dir = cgroupDir(mount, parent ?? own.get('') ?? '/');
  const enabled = await readOptional(join(dir, 'cgroup.subtree_control'));
  const controllers = new Set((enabled ?? '').split(/\s+/).filter((c) => c !== ''));
  if (!controllers.has('memory') || !controllers.has('pids')) {
    notes.push(`cgroup v2 at ${dir}: memory and pids are not enabled in cgroup.subtree_control (delegate a cgroup and pass it as the parent)`);
    return null;
  }
  if (!(await canCreateChild(dir))) {
    notes.push(`cgroup v2: cannot create cgroups under ${dir}`);
    return null;
  }
  return new CgroupV2Driver(dir, controllers);
}

async function canCreateChild(dir: string): Promise<boolean> {
  const probe = join(dir, `remex-probe-${process.pid}`);
  try {
    await mkdir(probe);
  } catch (err) {
    // A probe left by an earlier crash of this same pid is as good as a fresh one.
    if (!isErrno(err, 'EEXIST')) return false;
  }
  return removeCgroupDir(probe).then(
    () => true,
    () => false,
  );
}

/** Every run cgroup directory (of any worker) under the parents run cgroups are made in. */
export async function listRunCgroups(opts: Pick<CgroupProbeOptions, 'parent' | 'procRoot'> = {}): Promise<string[]> {
  const procRoot = opts.procRoot ?? '/proc';
  const [mountinfo, ownCgroups] = await Promise.all([readFile(join(procRoot, 'self/mountinfo'), 'utf8'), readFile(join(procRoot, 'self/cgroup'), 'utf8')]);
  const parents = runCgroupParents(parseCgroupMounts(mountinfo), parseProcCgroup(ownCgroups), opts.parent);
  const found = await Promise.all(parents.map(async (dir) => (await readdir(dir).catch(() => [])).filter((n) => n.startsWith(RUN_CGROUP_PREFIX)).map((n) => join(dir, n))));
  return found.flat();
}

function runCgroupParents(mounts: CgroupMount[], own: Map<string, string>, parent: string | undefined): string[] {
  const v1 = V1_CONTROLLERS.flatMap((c) => mounts.filter((m) => m.fsType === 'cgroup' && m.controllers.includes(c)).map((m) => cgroupDir(m, parent ?? own.get(c) ?? '/')));
  const v2 = mounts.filter((m) => m.fsType === 'cgroup2').map((m) => cgroupDir(m, parent ?? own.get('') ?? '/'));
  return [...new Set([...v1, ...v2])];
}

/**
 * Removes run cgroups a crashed worker left behind (their pid is gone). Only empty ones can be removed;
 * a cgroup still holding processes is left alone and stays visible to operators.
 */
async function sweepStaleRunCgroups(parents: string[]): Promise<void> {
  await Promise.all(
    parents.map(async (dir) => {
      const names = await readdir(dir).catch(() => [] as string[]);
      await Promise.all(
        names
          .filter((name) => name.startsWith(RUN_CGROUP_PREFIX))
          .filter((name) => !isAlive(Number(name.slice(RUN_CGROUP_PREFIX.length).split('-')[0])))
          .map((name) => rmdir(join(dir, name)).catch(() => undefined)),
      );
    }),
  );
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return isErrno(err, 'EPERM');
  }
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}
