/**
 * Input trees: a root {@link Directory} blob naming file blobs and further Directory blobs, as REAPI
 * defines them. Building one from a list of paths, walking one, and staging one into a host directory.
 *
 * Every Directory is validated wherever it is met, not only where it was built: a tree arriving from a
 * client (or a store) may have been crafted, and staging must never write outside its destination. Names
 * are single path segments; symlink targets are relative and cannot lead above the root (see
 * {@link validateSymlinkTarget} for the exact rule).
 */
import { chmodSync, lstatSync, mkdirSync, readdirSync } from 'node:fs';
import { symlink } from 'node:fs/promises';
import { resolve, sep } from 'node:path';
import { setImmediate } from 'node:timers/promises';
import type { Digest } from '../core/digest.js';
import { digestOf, validateDigest } from '../core/digest.js';
import { InvalidArgumentError, isRemexError, MissingBlobsError, TooLargeError, UnsafePathError } from '../core/errors.js';
import type { Directory, DirectoryNode, FileNode } from '../core/model.js';
import type { BlobStore } from './blob-store.js';
import { digestKey, uniqueDigests } from './blob-support.js';
import { compareNames, decodeDirectory, encodeDirectory } from './directory-codec.js';

export { compareNames, decodeDirectory, DIRECTORY_ENCODING, encodeDirectory } from './directory-codec.js';

/** A file of a tree, its path relative to the root with `/` separators. */
export interface TreeFile {
  path: string;
  digest: Digest;
  isExecutable: boolean;
}

export interface TreeSymlink {
  path: string;
  target: string;
}

/** Everything in a tree, paths relative to the root; directories parents first, the root itself not listed. */
export interface TreeListing {
  directories: string[];
  files: TreeFile[];
  symlinks: TreeSymlink[];
}

/** Bounds on a tree, against Directory blobs that reference one another to expand into a huge tree. */
export interface TreeLimits {
  /** Files, directories and symlinks in all (default 500 000). */
  maxEntries?: number;
  /** Directory levels below the root (default 256). */
  maxDepth?: number;
}

export interface StageOptions extends TreeLimits {
  /**
   * Files may be hard links to the store's own read-only files instead of copies (executables are always
   * copied): for a sandbox whose programs cannot write files the worker owns. See BlobStore.materialize.
   */
  shareStoredFiles?: boolean;
}

export const DEFAULT_TREE_LIMITS: Readonly<Required<TreeLimits>> = Object.freeze({ maxEntries: 500_000, maxDepth: 256 });

/** Mode of staged executable files, other files, and directories. */
export const EXECUTABLE_MODE = 0o755;
export const FILE_MODE = 0o644;
export const DIRECTORY_MODE = 0o755;

const NAME_MAX_BYTES = 255;
const PATH_MAX_BYTES = 4095;
const FETCH_CONCURRENCY = 32;
const MATERIALIZE_CONCURRENCY = 16;
/** Directories stageTree makes between two yields to the event loop. */
const DIRECTORIES_PER_SLICE = 256;

// ---- validation ---------------------------------------------------------------------------------------

/**
 * Checks one name of a Directory entry: a single path segment (not '', '.', '..'; no '/' or NUL) of at most
 * 255 UTF-8 bytes with no unpaired surrogate. `path` is the entry's path, for the error.
 */
export function validateName(name: string, path: string = name): void {
  if (name === '') throw new UnsafePathError(path, 'empty name');
  if (name === '.' || name === '..') throw new UnsafePathError(path, `"${name}" is not a name`);
  if (name.includes('/')) throw new UnsafePathError(path, 'a name cannot contain "/"');
  if (name.includes('\0')) throw new UnsafePathError(path, 'a name cannot contain NUL');
  if (/\p{Cs}/u.test(name)) throw new InvalidArgumentError(`name ${JSON.stringify(path)} has an unpaired surrogate: not representable in UTF-8`);
  if (Buffer.byteLength(name, 'utf8') > NAME_MAX_BYTES) throw new InvalidArgumentError(`name ${JSON.stringify(path)} is longer than ${NAME_MAX_BYTES} bytes`);
}

/**
 * Checks a relative input path (`dir/sub/file`) and returns its segments: not empty, not absolute, no
 * empty, '.' or '..' segments, no NUL. UnsafePathError otherwise.
 */
export function validateInputPath(path: string): string[] {
  if (typeof path !== 'string') throw new InvalidArgumentError('a path must be a string');
  if (path === '') throw new UnsafePathError(path, 'empty path');
  if (path.startsWith('/')) throw new UnsafePathError(path, 'absolute path; paths are relative to the input root');
  if (path.includes('\0')) throw new UnsafePathError(path, 'contains NUL');
  if (Buffer.byteLength(path, 'utf8') > PATH_MAX_BYTES) throw new InvalidArgumentError(`path is longer than ${PATH_MAX_BYTES} bytes`);
  const segments = path.split('/');
  for (const segment of segments) {
    if (segment === '') throw new UnsafePathError(path, 'empty segment (a doubled or trailing "/")');
    if (segment === '.' || segment === '..') throw new UnsafePathError(path, `"${segment}" segment`);
    validateName(segment, path);
  }
  return segments;
}

/**
 * Checks the target of a symlink at `linkPath` (relative to the root). Allowed: a relative path whose
 * '..' segments all come first and are no more than the link's directory depth, followed by plain names
 * (`../lib/x.so`, `bin/tool`). Not allowed: absolute targets, '..' after a name, '.' or empty segments.
 *
 * Why so strict: the kernel resolves `a/..` through `a` when `a` is itself a symlink, so a target that
 * stays inside lexically can still escape. With every '..' at the start, they are taken from the link's
 * own directory, which staging always creates as a real directory, and each name after them goes down
 * into the tree, through symlinks that obey the same rule.
 */
export function validateSymlinkTarget(target: string, linkPath: string): void {
  if (target === '') throw new UnsafePathError(linkPath, 'empty symlink target');
  if (target.includes('\0')) throw new UnsafePathError(linkPath, 'symlink target contains NUL');
  if (target.startsWith('/')) throw new UnsafePathError(linkPath, `absolute symlink target ${JSON.stringify(target)}`);
  if (Buffer.byteLength(target, 'utf8') > PATH_MAX_BYTES) throw new InvalidArgumentError(`symlink ${JSON.stringify(linkPath)}: target is longer than ${PATH_MAX_BYTES} bytes`);
  const depth = linkPath.split('/').length - 1;
  const segments = target.split('/');
  let ups = 0;
  while (segments[ups] === '..') ups++;
  if (ups > depth) throw new UnsafePathError(linkPath, `symlink target ${JSON.stringify(target)} leads outside the input root`);
  for (const segment of segments.slice(ups)) {
    if (segment === '' || segment === '.' || segment === '..') {
      throw new UnsafePathError(linkPath, `symlink target ${JSON.stringify(target)} is not normalised ('..' only at the start, no '.' or empty segments)`);
    }
  }
}

/**
 * Checks one Directory: every name valid, each list strictly sorted (UTF-8 byte order), names unique across
 * files, directories and symlinks, digests well-formed, symlink targets inside the root. `path` is where the
 * Directory sits, relative to the root ('' for the root): symlink targets are judged from there.
 */
export function validateDirectory(dir: Directory, path = ''): void {
  const at = (name: string): string => (path === '' ? name : `${path}/${name}`);
  const seen = new Set<string>();
  const checkList = (entries: ReadonlyArray<{ name: string }>, kind: string): void => {
    let previous: string | undefined;
    for (const { name } of entries) {
      validateName(name, at(name));
      if (previous !== undefined && compareNames(previous, name) >= 0) {
        throw new InvalidArgumentError(
          compareNames(previous, name) === 0
            ? `Directory ${JSON.stringify(path)}: ${kind} ${JSON.stringify(name)} appears twice`
            : `Directory ${JSON.stringify(path)}: ${kind} are not sorted by name`,
        );
      }
      if (seen.has(name)) throw new InvalidArgumentError(`Directory ${JSON.stringify(path)}: ${JSON.stringify(name)} names two entries`);
      seen.add(name);
      previous = name;
    }
  };
  checkList(dir.files, 'files');
  checkList(dir.directories, 'directories');
  checkList(dir.symlinks, 'symlinks');
  for (const f of dir.files) validateDigest(f.digest, `file ${JSON.stringify(at(f.name))}`);
  for (const d of dir.directories) validateDigest(d.digest, `directory ${JSON.stringify(at(d.name))}`);
  for (const s of dir.symlinks) validateSymlinkTarget(s.target, at(s.name));
}

// ---- building -----------------------------------------------------------------------------------------

interface DirectoryDraft {
  files: Map<string, FileNode>;
  directories: Map<string, DirectoryDraft>;
}

/**
 * Builds the input tree holding `files` (paths relative to the root), stores its Directory blobs and returns
 * the root digest. Every path is validated (UnsafePathError); a path given twice, or used both as a file and
 * as a directory, is an InvalidArgumentError. File blobs are not checked for presence: that is the caller's.
 */
export async function buildInputTree(files: ReadonlyArray<TreeFile>, store: BlobStore): Promise<Digest> {
  const root: DirectoryDraft = { files: new Map(), directories: new Map() };
  for (const file of files) {
    const segments = validateInputPath(file.path);
    const digest = validateDigest(file.digest, `file ${JSON.stringify(file.path)}`);
    if (typeof file.isExecutable !== 'boolean') throw new InvalidArgumentError(`file ${JSON.stringify(file.path)}: isExecutable must be a boolean`);
    const name = segments.pop() as string;
    let dir = root;
    let walked = '';
    for (const segment of segments) {
      walked = walked === '' ? segment : `${walked}/${segment}`;
      if (dir.files.has(segment)) throw new InvalidArgumentError(`${JSON.stringify(walked)} is both a file and a directory`);
      let child = dir.directories.get(segment);
      if (!child) {
        child = { files: new Map(), directories: new Map() };
        dir.directories.set(segment, child);
      }
      dir = child;
    }
    if (dir.directories.has(name)) throw new InvalidArgumentError(`${JSON.stringify(file.path)} is both a file and a directory`);
    if (dir.files.has(name)) throw new InvalidArgumentError(`${JSON.stringify(file.path)} is given twice`);
    dir.files.set(name, { name, digest, isExecutable: file.isExecutable });
  }
  return storeDraft(root, store);
}

async function storeDraft(draft: DirectoryDraft, store: BlobStore): Promise<Digest> {
  const directories: DirectoryNode[] = await Promise.all(
    [...draft.directories].map(async ([name, child]) => ({ name, digest: await storeDraft(child, store) })),
  );
  const bytes = encodeDirectory({ files: [...draft.files.values()], directories, symlinks: [] });
  const digest = digestOf(bytes);
  await store.put(digest, bytes);
  return digest;
}

// ---- walking ------------------------------------------------------------------------------------------

/**
 * Lists a tree, fetching and validating every Directory blob. MissingBlobsError names every Directory
 * blob the store lacks (file blobs are not checked); UnsafePathError / InvalidArgumentError for a
 * malformed Directory; TooLargeError past `limits`.
 */
export async function walkTree(rootDigest: Digest, store: BlobStore, limits: TreeLimits = {}): Promise<TreeListing> {
  const { listing, missingDirectories } = await collectTree(rootDigest, store, limits);
  if (missingDirectories.length > 0) throw new MissingBlobsError(missingDirectories);
  return listing;
}

/** A walk that goes as far as the store allows, reporting the Directory blobs it could not fetch. */
async function collectTree(
  rootDigest: Digest,
  store: BlobStore,
  limits: TreeLimits,
): Promise<{ listing: TreeListing; missingDirectories: Digest[] }> {
  const maxEntries = limits.maxEntries ?? DEFAULT_TREE_LIMITS.maxEntries;
  const maxDepth = limits.maxDepth ?? DEFAULT_TREE_LIMITS.maxDepth;
  const listing: TreeListing = { directories: [], files: [], symlinks: [] };
  const missing: Digest[] = [];
  // The same Directory digest may appear many times in a tree; fetch and decode it once.
  const fetched = new Map<string, Directory | undefined>();
  let entries = 0;
  let level: Array<{ path: string; digest: Digest }> = [{ path: '', digest: validateDigest(rootDigest, 'input root digest') }];

  for (let depth = 0; level.length > 0; depth++) {
    if (depth > maxDepth) throw new InvalidArgumentError(`input tree is deeper than ${maxDepth} levels`);
    await fetchDirectories(
      level.map((l) => l.digest),
      store,
      fetched,
      missing,
    );
    // The whole level is counted before any of it is expanded: Directory blobs that name one another many
    // times (a 1000 × 1000 fan-out of one blob is 1 000 000 entries) are refused before any listing is built.
    for (const { digest } of level) {
      const dir = fetched.get(digestKey(digest));
      if (dir) entries += dir.files.length + dir.directories.length + dir.symlinks.length;
    }
    if (entries > maxEntries) throw new TooLargeError(`input tree has more than ${maxEntries} entries`, { details: { maxEntries } });
    const next: typeof level = [];
    for (const { path, digest } of level) {
      const dir = fetched.get(digestKey(digest));
      if (!dir) continue;
      validateDirectory(dir, path);
      const at = (name: string): string => (path === '' ? name : `${path}/${name}`);
      for (const f of dir.files) listing.files.push({ path: at(f.name), digest: f.digest, isExecutable: f.isExecutable });
      for (const s of dir.symlinks) listing.symlinks.push({ path: at(s.name), target: s.target });
      for (const d of dir.directories) {
        listing.directories.push(at(d.name));
        next.push({ path: at(d.name), digest: d.digest });
      }
    }
    level = next;
  }
  return { listing, missingDirectories: missing };
}

/** Fetches and decodes the Directory blobs not fetched yet; those the store lacks go to `missing`. */
async function fetchDirectories(digests: Digest[], store: BlobStore, fetched: Map<string, Directory | undefined>, missing: Digest[]): Promise<void> {
  const memo = decodedDirectories(store);
  const wanted: Digest[] = [];
  for (const d of uniqueDigests(digests)) {
    const key = digestKey(d);
    if (fetched.has(key)) continue;
    const known = memo.get(key);
    if (known) fetched.set(key, known);
    else wanted.push(d);
  }
  if (wanted.length === 0) return;
  const absent = await store.findMissing(wanted);
  for (const d of absent) {
    fetched.set(digestKey(d), undefined);
    missing.push(d);
  }
  const present = wanted.filter((d) => !fetched.has(digestKey(d)));
  await forEachLimited(present, FETCH_CONCURRENCY, async (d) => {
    const key = digestKey(d);
    let bytes: Buffer;
    try {
      bytes = await store.get(d);
    } catch (err) {
      // Gone (or found corrupt) since findMissing: report it with the rest.
      if (isRemexError(err, 'NOT_FOUND')) {
        fetched.set(digestKey(d), undefined);
        missing.push(d);
        return;
      }
      throw err;
    }
    const dir = decodeDirectory(bytes);
    memo.set(key, dir);
    fetched.set(key, dir);
  });
}

const DECODED_DIRECTORIES_PER_STORE = 10_000;
const decodedByStore = new WeakMap<BlobStore, DirectoryMemo>();

/**
 * Decoded Directory blobs, remembered per store. Content addressing makes this always correct: the bytes
 * under a digest never change, and staging needs the listing, not the Directory blob itself (the files it
 * names are still checked). Workers stage the same small trees over and over; this saves a stat, a read and
 * a hash per directory per run.
 */
class DirectoryMemo {
  private readonly entries = new Map<string, Directory>();

  get(key: string): Directory | undefined {
    return this.entries.get(key);
  }

  set(key: string, dir: Directory): void {
    this.entries.set(key, Object.freeze(dir));
    if (this.entries.size > DECODED_DIRECTORIES_PER_STORE) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
  }
}

function decodedDirectories(store: BlobStore): DirectoryMemo {
  let memo = decodedByStore.get(store);
  if (!memo) decodedByStore.set(store, (memo = new DirectoryMemo()));
  return memo;
}

// ---- staging ------------------------------------------------------------------------------------------

/**
 * Writes the tree into `destDir`, which must not exist yet or be an empty directory. Executable files get
 * mode 0755, other files 0644, directories 0755. When blobs are missing it throws one MissingBlobsError
 * naming them all (Directory blobs before anything is written; file blobs when the first one is found
 * missing while writing). Every Directory is re-validated here, and symlinks are
 * created last, so no write goes through a symlink and nothing is written outside `destDir`.
 * On an error after writing began, `destDir` is left partly staged for the caller to remove.
 */
export async function stageTree(rootDigest: Digest, store: BlobStore, destDir: string, opts: StageOptions = {}): Promise<TreeListing> {
  const { listing, missingDirectories } = await collectTree(rootDigest, store, opts);
  const share = { shareStoredFile: opts.shareStoredFiles ?? false };
  const reportMissing = async (): Promise<MissingBlobsError> => {
    const missingFiles = await store.findMissing(listing.files.map((f) => f.digest));
    return new MissingBlobsError(uniqueDigests([...missingDirectories, ...missingFiles]));
  };
  if (missingDirectories.length > 0) throw await reportMissing();

  const root = resolve(destDir);
  prepareEmptyDirectory(root);
  const inside = (path: string): string => {
    const host = resolve(root, path);
    // Paths are validated segments already; this guards against a future change breaking that.
    if (!host.startsWith(root + sep)) throw new UnsafePathError(path, 'leaves the staging directory');
    return host;
  };
  // Synchronous, a slice at a time: each call is microseconds on a directory being built, where a promise
  // round trip through the thread pool costs several times that; a huge tree still yields now and then.
  for (let i = 0; i < listing.directories.length; i++) {
    const host = inside(listing.directories[i] as string);
    mkdirSync(host);
    chmodSync(host, DIRECTORY_MODE);
    if ((i + 1) % DIRECTORIES_PER_SLICE === 0) await setImmediate();
  }
  // Optimistic: files are almost always present, so no findMissing round first. A missing one stops the
  // staging and the error names every missing blob at once, as if checked up front.
  try {
    await forEachLimited(listing.files, MATERIALIZE_CONCURRENCY, (f) =>
      store.materialize(f.digest, inside(f.path), f.isExecutable ? EXECUTABLE_MODE : FILE_MODE, share),
    );
  } catch (err) {
    if (!isRemexError(err, 'NOT_FOUND')) throw err;
    const missing = await reportMissing();
    throw missing.missing.length > 0 ? missing : err;
  }
  for (const s of listing.symlinks) await symlink(s.target, inside(s.path));
  return listing;
}

/** Synchronous for the reason the directories below are: one run, a few microseconds each. */
function prepareEmptyDirectory(dir: string): void {
  try {
    mkdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    if (!lstatSync(dir).isDirectory() || readdirSync(dir).length > 0) {
      throw new InvalidArgumentError(`cannot stage into ${dir}: it exists and is not an empty directory`);
    }
  }
  chmodSync(dir, DIRECTORY_MODE);
}

/**
 * Runs `run` over `items`, at most `concurrency` at a time. After a failure no new item starts, and the
 * first error is thrown only once the running ones have settled, so nothing is still writing when it is.
 */
async function forEachLimited<T>(items: readonly T[], concurrency: number, run: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const item = items[next++] as T;
      try {
        await run(item);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const results = await Promise.allSettled(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure) throw failure.reason;
}
