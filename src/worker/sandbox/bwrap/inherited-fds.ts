/**
 * Descriptors a process inherited without close-on-exec. Node opens everything close-on-exec, so any
 * descriptor above stderr that an exec would pass on came from whoever started us, and would leak into
 * every sandbox unless overlaid. Its own module so the small spawner process can use it too.
 */
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';

const O_CLOEXEC = 0o2000000;

/** Descriptors above stderr that an exec would pass on: inherited ones Node did not open itself. */
export async function findInheritedFds(procRoot = '/proc'): Promise<number[]> {
  const fds = (await readdir(join(procRoot, 'self/fd'))).map(Number).filter((fd) => fd > 2);
  const leaking = await Promise.all(
    fds.map(async (fd) => {
      try {
        const info = await readFile(join(procRoot, 'self/fdinfo', String(fd)), 'utf8');
        const flags = /^flags:\s*([0-7]+)/m.exec(info)?.[1];
        return flags !== undefined && (parseInt(flags, 8) & O_CLOEXEC) === 0 ? fd : null;
      } catch {
        return null; // The directory handle used to list fds, closed since.
      }
    }),
  );
  return leaking.filter((fd): fd is number => fd !== null).sort((a, b) => a - b);
}
