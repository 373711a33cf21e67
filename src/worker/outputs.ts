/**
 * Collects a run's declared output files into the CAS. The sandboxed program controls the directory, so
 * every path is checked: only regular files strictly inside the input root are taken, never through a
 * symlink the program planted.
 */
import { lstat, realpath } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import type { BlobStore } from '../cas/blob-store.js';
import { UnsafePathError } from '../core/errors.js';
import type { OutputFile } from '../core/model.js';

export async function collectOutputFiles(
  inputRoot: string,
  workingDirectory: string,
  outputPaths: readonly string[],
  blobs: BlobStore,
): Promise<OutputFile[]> {
  if (outputPaths.length === 0) return [];
  const root = await realpath(inputRoot);
  const collected: OutputFile[] = [];
  for (const outputPath of outputPaths) {
    const hostPath = resolve(root, workingDirectory, outputPath);
    const rel = relative(root, hostPath);
    if (rel === '' || rel.startsWith('..') || rel.includes(`..${sep}`)) throw new UnsafePathError(outputPath, 'leaves the input root');
    const info = await lstat(hostPath).catch(() => undefined);
    if (!info || !info.isFile()) continue; // absent, a directory, or a symlink: not a collectable output file
    // A parent directory may have been swapped for a symlink: the resolved path must still be inside.
    const real = await realpath(hostPath);
    if (!real.startsWith(root + sep)) continue;
    const digest = await blobs.putFile(real);
    collected.push({ path: join(workingDirectory, outputPath), digest, isExecutable: (info.mode & 0o111) !== 0 });
  }
  return collected;
}
