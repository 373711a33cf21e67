/**
 * A run's declared outputs: the directories leading up to them, made before the run (REAPI requires
 * it), and afterwards the outputs themselves collected into the CAS — regular files as blobs, directories as
 * REAPI `Tree` blobs. The sandboxed program controls the directory, so every path is checked: only what lies
 * strictly inside the input root is taken, and no symlink the program planted is ever followed.
 */
import { type Stats, chmodSync, chownSync, lstatSync, mkdirSync, realpathSync } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { isAbsolute, join, posix, relative, resolve, sep } from 'node:path';
import type { BlobStore } from '../cas/blob-store.js';
import { compareNames, encodeDirectory, encodeTree } from '../cas/directory-codec.js';
import { DIRECTORY_MODE, validateName, validateSymlinkTarget } from '../cas/tree.js';
import type { Digest } from '../core/digest.js';
import { digestOf } from '../core/digest.js';
import { InvalidArgumentError, isRemexError, TooLargeError, UnsafePathError } from '../core/errors.js';
import { RESULTS_DIRECTORY } from '../core/model.js';
import type { Directory, FileNode, OutputDirectory, OutputFile } from '../core/model.js';

export interface CollectedOutputs {
  files: OutputFile[];
  directories: OutputDirectory[];
}

/** Bounds on one output directory, against a program that fills its output with millions of entries. */
export interface OutputTreeLimits {
  maxEntries: number;
  maxDepth: number;
}

export const DEFAULT_OUTPUT_TREE_LIMITS: Readonly<OutputTreeLimits> = Object.freeze({ maxEntries: 1_000_000, maxDepth: 256 });

const PUT_CONCURRENCY = 16;

/**
 * Creates the directories leading up to each output path (not the output itself), relative to the
 * working directory, as REAPI promises clients. Stops at anything that is not a real directory: a file or a
 * symlink in the way is left alone, and the output will simply not be found. UnsafePathError for an output
 * path that leaves the input root.
 *
 * Synchronous calls, each directory looked at once: this runs before the program, on a directory just
 * staged, where a call is a few microseconds and a promise round trip through the thread pool (plus an
 * Error object for every "not there yet") several times that.
 */
export async function createOutputParents(inputRoot: string, workingDirectory: string, outputPaths: readonly string[]): Promise<void> {
  // Directory → whether outputs may be made below it (a real directory, or one made here).
  const usable = new Map<string, boolean>();
  for (const outputPath of outputPaths) {
    const segments = rootRelative(workingDirectory, outputPath).split('/');
    segments.pop();
    let dir = inputRoot;
    for (const segment of segments) {
      dir = join(dir, segment);
      let ok = usable.get(dir);
      if (ok === undefined) {
        const info = lstatSync(dir, { throwIfNoEntry: false });
        if (!info) {
          mkdirSync(dir);
          chmodSync(dir, DIRECTORY_MODE);
          ok = true;
        } else ok = info.isDirectory();
        usable.set(dir, ok);
      }
      if (!ok) break;
    }
  }
}

/** The environment variable that names a run's results directory inside the sandbox. */
export const RESULTS_ENV_VAR = 'REMEX_RESULTS';

/**
 * Makes the results directory at the input root's top (RESULTS_DIRECTORY), the program's to write: given
 * to its user where it runs as another one. InvalidArgumentError when the inputs already hold that name.
 */
export async function makeResultsDirectory(inputRoot: string, owner: { uid: number; gid: number } | null): Promise<void> {
  const dir = join(inputRoot, RESULTS_DIRECTORY);
  try {
    mkdirSync(dir, 0o755);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new InvalidArgumentError(`the inputs hold ${RESULTS_DIRECTORY}, where the results directory goes`);
    throw err;
  }
  if (owner) chownSync(dir, owner.uid, owner.gid);
}

/**
 * Collects the outputs into the CAS. A path that is a regular file becomes an OutputFile; a directory
 * becomes an OutputDirectory whose Tree holds its files, subdirectories and those symlinks whose targets
 * stay inside it (others are left out: they would not stage safely). Absent paths, symlinks and special
 * files are skipped. Paths in the result are relative to the input root.
 */
export async function collectOutputs(
  inputRoot: string,
  workingDirectory: string,
  outputPaths: readonly string[],
  blobs: BlobStore,
  limits: OutputTreeLimits = DEFAULT_OUTPUT_TREE_LIMITS,
): Promise<CollectedOutputs> {
  const collected: CollectedOutputs = { files: [], directories: [] };
  if (outputPaths.length === 0) return collected;
  // The few calls per declared output are synchronous: microseconds each on a run directory just written,
  // less than a thread-pool round trip costs on a busy worker. Output directories are walked asynchronously.
  const root = realpathSync.native(inputRoot);
  for (const outputPath of outputPaths) {
    const path = rootRelative(workingDirectory, outputPath);
    const hostPath = resolve(root, path);
    const rel = relative(root, hostPath);
    if (rel.startsWith('..') || isAbsolute(rel)) throw new UnsafePathError(outputPath, 'leaves the input root');
    const info = lstatIfAny(hostPath);
    if (!info || !(info.isFile() || info.isDirectory())) continue; // absent, a symlink or a special file
    // A parent directory may have been swapped for a symlink: the resolved path must still be inside.
    const real = realpathSync.native(hostPath);
    if (info.isFile()) {
      if (!real.startsWith(root + sep)) continue;
      collected.files.push({ path, digest: await blobs.putFile(real), isExecutable: (info.mode & 0o111) !== 0 });
    } else {
      if (real !== root && !real.startsWith(root + sep)) continue;
      collected.directories.push({ path, treeDigest: await storeOutputTree(real, blobs, limits) });
    }
  }
  return collected;
}

/** The entry's lstat, or undefined when there is none to take (absent, or a parent is not a directory). */
function lstatIfAny(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/** The output's path relative to the input root; '' when it is the root itself. */
function rootRelative(workingDirectory: string, outputPath: string): string {
  const joined = posix.normalize(posix.join(workingDirectory, outputPath));
  if (joined === '.' || joined === '') return '';
  if (joined.startsWith('../') || joined === '..' || posix.isAbsolute(joined)) throw new UnsafePathError(outputPath, 'leaves the input root');
  return joined.endsWith('/') ? joined.slice(0, -1) : joined;
}

interface EncodedDirectory {
  directory: Directory;
  digest: Digest;
}

/** Builds the Tree of a host directory, stores it, and returns its digest. Never follows a symlink. */
async function storeOutputTree(hostDir: string, blobs: BlobStore, limits: OutputTreeLimits): Promise<Digest> {
  // Each distinct Directory once, in the order its walk finished (children before parents).
  const finished = new Map<string, EncodedDirectory>();
  let entries = 0;

  const visit = async (dir: string, treePath: string, depth: number): Promise<EncodedDirectory> => {
    if (depth > limits.maxDepth) throw new TooLargeError(`output directory is deeper than ${limits.maxDepth} levels`);
    const names = (await readdir(dir)).sort(compareNames);
    entries += names.length;
    if (entries > limits.maxEntries) throw new TooLargeError(`output directory has more than ${limits.maxEntries} entries`);
    const directory: Directory = { files: [], directories: [], symlinks: [] };
    const files: Array<{ name: string; hostPath: string; isExecutable: boolean }> = [];
    for (const name of names) {
      const at = treePath === '' ? name : `${treePath}/${name}`;
      if (!isStorableName(name)) continue;
      const hostPath = join(dir, name);
      const info = await lstat(hostPath).catch(() => undefined);
      if (!info) continue;
      if (info.isFile()) files.push({ name, hostPath, isExecutable: (info.mode & 0o111) !== 0 });
      else if (info.isDirectory()) directory.directories.push({ name, digest: (await visit(hostPath, at, depth + 1)).digest });
      else if (info.isSymbolicLink()) {
        const target = await readlink(hostPath);
        if (isSafeSymlink(target, at)) directory.symlinks.push({ name, target });
      }
    }
    directory.files = await mapLimited(files, PUT_CONCURRENCY, async (f): Promise<FileNode> => ({ name: f.name, digest: await blobs.putFile(f.hostPath), isExecutable: f.isExecutable }));
    const digest = digestOf(encodeDirectory(directory));
    const key = `${digest.hash}/${digest.sizeBytes}`;
    if (!finished.has(key)) finished.set(key, { directory, digest });
    return { directory, digest };
  };

  const root = await visit(hostDir, '', 0);
  const rootKey = `${root.digest.hash}/${root.digest.sizeBytes}`;
  // Reversed finishing order is topological (every parent before its children), the order REAPI suggests.
  const children = [...finished].filter(([key]) => key !== rootKey).map(([, d]) => d.directory).reverse();
  const bytes = encodeTree({ root: root.directory, children });
  const treeDigest = digestOf(bytes);
  await blobs.put(treeDigest, bytes);
  return treeDigest;
}

function isStorableName(name: string): boolean {
  try {
    validateName(name);
    return true;
  } catch (err) {
    if (isRemexError(err)) return false;
    throw err;
  }
}

/** A symlink is kept only if staging the tree again could never make it point outside the tree. */
function isSafeSymlink(target: string, pathInTree: string): boolean {
  try {
    validateSymlinkTarget(target, pathInTree);
    return true;
  } catch (err) {
    if (isRemexError(err)) return false;
    throw err;
  }
}

async function mapLimited<T, R>(items: readonly T[], concurrency: number, run: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await run(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return results;
}
