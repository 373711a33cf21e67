/**
 * The processes of one run, for signalling them: the run's cgroup when there is one, otherwise a scan
 * of /proc for members of the sandbox's pid namespace (every process of a run is in it, however it
 * daemonised, and nothing else is).
 */
import { readdir, readlink } from 'node:fs/promises';
import { type RunCgroup, killUntilEmpty } from './cgroups.js';

export interface ProcessTree {
  /** Pids of the run's processes (the bwrap monitor may be among them). */
  list(pidNamespace: number | null): Promise<number[]>;
  /** SIGKILLs every process of the run; true when none is left. */
  killAll(pidNamespace: number | null): Promise<boolean>;
}

export function cgroupTree(cgroup: RunCgroup): ProcessTree {
  return { list: () => cgroup.pids(), killAll: () => cgroup.killAll() };
}

export const namespaceTree: ProcessTree = {
  list: (ns) => (ns === null ? Promise.resolve([]) : pidsInPidNamespace(ns)),
  killAll: (ns) => (ns === null ? Promise.resolve(true) : killUntilEmpty(() => pidsInPidNamespace(ns))),
};

/** Host pids of the processes whose pid namespace has inode `nsInode`. */
export async function pidsInPidNamespace(nsInode: number, procRoot = '/proc'): Promise<number[]> {
  const wanted = `pid:[${nsInode}]`;
  const entries = await readdir(procRoot);
  const members = await Promise.all(
    entries
      .filter((name) => /^\d+$/.test(name))
      .map(async (name) => {
        try {
          return (await readlink(`${procRoot}/${name}/ns/pid`)) === wanted ? Number(name) : null;
        } catch {
          return null; // Exited while we looked.
        }
      }),
  );
  return members.filter((pid): pid is number => pid !== null);
}
