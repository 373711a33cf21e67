import assert from 'node:assert/strict';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import type { BlobStore } from '../../src/cas/blob-store.js';
import { FsBlobStore } from '../../src/cas/fs/fs-blob-store.js';
import { MemoryBlobStore } from '../../src/cas/memory/memory-blob-store.js';
import type { TreeFile } from '../../src/cas/tree.js';
import {
  buildInputTree,
  compareNames,
  decodeDirectory,
  encodeDirectory,
  stageTree,
  validateDirectory,
  validateInputPath,
  validateSymlinkTarget,
  walkTree,
} from '../../src/cas/tree.js';
import type { Digest } from '../../src/core/digest.js';
import { digestOf, EMPTY_DIGEST } from '../../src/core/digest.js';
import { InvalidArgumentError, MissingBlobsError, TooLargeError, UnsafePathError } from '../../src/core/errors.js';
import type { Directory } from '../../src/core/model.js';
import { rawDirectoryBytes } from './reapi-protos.js';

const EMPTY_DIR: Directory = { files: [], directories: [], symlinks: [] };

async function putBlob(store: BlobStore, data: string | Buffer): Promise<Digest> {
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  const d = digestOf(bytes);
  await store.put(d, bytes);
  return d;
}

/** Stores a Directory's bytes as they are: crafted trees skip every check a builder would make. */
async function putRawDirectory(store: BlobStore, dir: Directory): Promise<Digest> {
  return putBlob(store, rawDirectoryBytes(dir));
}

async function stageRejects(store: BlobStore, root: Digest, dest: string, check: (err: unknown) => boolean): Promise<void> {
  await assert.rejects(stageTree(root, store, dest), check);
  await assert.rejects(stat(dest), { code: 'ENOENT' }, 'nothing was written');
}

describe('Directory codec', () => {
  test('sorts names by UTF-8 bytes (code points), not UTF-16 units', () => {
    const names = ['\u{1F600}', '\uFF5E', 'z', 'Z', 'é', 'a'];
    const sorted = [...names].sort(compareNames);
    assert.deepEqual(sorted, ['Z', 'a', 'z', 'é', '\uFF5E', '\u{1F600}']);
    const dir = decodeDirectory(encodeDirectory({ ...EMPTY_DIR, symlinks: names.map((name) => ({ name, target: 'a' })) }));
    assert.deepEqual(
      dir.symlinks.map((s) => s.name),
      sorted,
    );
  });
});

describe('validation', () => {
  const unsafePaths = ['../x', 'a/../../x', '/etc/passwd', 'a//b', './a', '', 'a\0b', 'a/', 'a/.', '.', '..', 'a/..', '//x'];

  test('validateInputPath rejects every traversal form', () => {
    for (const path of unsafePaths) assert.throws(() => validateInputPath(path), UnsafePathError, JSON.stringify(path));
    assert.deepEqual(validateInputPath('a/b c/d.txt'), ['a', 'b c', 'd.txt']);
    assert.deepEqual(validateInputPath('..a/b..'), ['..a', 'b..']);
    assert.throws(() => validateInputPath('x'.repeat(256)), InvalidArgumentError);
    assert.throws(() => validateInputPath('a\uD800'), InvalidArgumentError);
  });

  test('symlink targets stay inside the root', () => {
    const ok: Array<[string, string]> = [
      ['f', 'link'],
      ['sub/f', 'link'],
      ['../f', 'sub/link'],
      ['../../a/b', 'x/y/link'],
      ['..', 'sub/link'],
    ];
    for (const [target, at] of ok) validateSymlinkTarget(target, at);
    const bad: Array<[string, string]> = [
      ['/etc/passwd', 'link'],
      ['../x', 'link'],
      ['..', 'link'],
      ['../../x', 'sub/link'],
      ['a/../../x', 'sub/link'],
      ['a/..', 'link'],
      ['./a', 'link'],
      ['a//b', 'link'],
      ['a/', 'link'],
      ['', 'link'],
      ['a\0', 'link'],
    ];
    for (const [target, at] of bad) assert.throws(() => validateSymlinkTarget(target, at), UnsafePathError, `${at} -> ${target}`);
  });

  test('validateDirectory wants safe, sorted, unique names', () => {
    const d = digestOf('x');
    validateDirectory({ files: [{ name: 'a', digest: d, isExecutable: false }], directories: [{ name: 'b', digest: d }], symlinks: [] });
    for (const name of ['..', '.', '', 'a/b', 'a\0']) {
      assert.throws(() => validateDirectory({ ...EMPTY_DIR, directories: [{ name, digest: d }] }), UnsafePathError, name);
      assert.throws(() => validateDirectory({ ...EMPTY_DIR, files: [{ name, digest: d, isExecutable: false }] }), UnsafePathError, name);
    }
    const f = (name: string) => ({ name, digest: d, isExecutable: false });
    assert.throws(() => validateDirectory({ ...EMPTY_DIR, files: [f('b'), f('a')] }), InvalidArgumentError);
    assert.throws(() => validateDirectory({ ...EMPTY_DIR, files: [f('a'), f('a')] }), InvalidArgumentError);
    assert.throws(() => validateDirectory({ files: [f('a')], directories: [{ name: 'a', digest: d }], symlinks: [] }), InvalidArgumentError);
    assert.throws(() => validateDirectory({ ...EMPTY_DIR, files: [f('a')], symlinks: [{ name: 'a', target: 'x' }] }), InvalidArgumentError);
    assert.throws(() => validateDirectory({ ...EMPTY_DIR, symlinks: [{ name: 'l', target: '../x' }] }), UnsafePathError);
    validateDirectory({ ...EMPTY_DIR, symlinks: [{ name: 'l', target: '../x' }] }, 'sub');
  });
});

describe('buildInputTree', () => {
  test('rejects every unsafe path, duplicate and file/directory conflict, storing nothing', async () => {
    const store = new MemoryBlobStore();
    const d = digestOf('x');
    for (const path of ['../x', 'a/../../x', '/etc/passwd', 'a//b', './a', '', 'a\0b', 'a/']) {
      await assert.rejects(buildInputTree([{ path, digest: d, isExecutable: false }], store), UnsafePathError, JSON.stringify(path));
    }
    const conflicts: TreeFile[][] = [
      [
        { path: 'a', digest: d, isExecutable: false },
        { path: 'a', digest: d, isExecutable: true },
      ],
      [
        { path: 'a', digest: d, isExecutable: false },
        { path: 'a/b', digest: d, isExecutable: false },
      ],
      [
        { path: 'a/b/c', digest: d, isExecutable: false },
        { path: 'a/b', digest: d, isExecutable: false },
      ],
    ];
    for (const files of conflicts) await assert.rejects(buildInputTree(files, store), InvalidArgumentError);
    await assert.rejects(buildInputTree([{ path: 'a', digest: { hash: 'x', sizeBytes: 1 }, isExecutable: false }], store), InvalidArgumentError);
    assert.equal(store.size, 0);
  });

  test('is canonical: the same files in any order give the same root digest', async () => {
    const store = new MemoryBlobStore();
    const files: TreeFile[] = [
      { path: 'b/y', digest: digestOf('1'), isExecutable: false },
      { path: 'a', digest: digestOf('2'), isExecutable: true },
      { path: 'b/x/z', digest: digestOf('3'), isExecutable: false },
    ];
    const one = await buildInputTree(files, store);
    const two = await buildInputTree([...files].reverse(), store);
    assert.deepEqual(one, two);
    const root = decodeDirectory(await store.get(one));
    assert.deepEqual(
      root.files.map((f) => f.name),
      ['a'],
    );
    assert.deepEqual(
      root.directories.map((x) => x.name),
      ['b'],
    );
  });

  test('an empty file list is an empty root directory', async () => {
    const store = new MemoryBlobStore();
    const root = await buildInputTree([], store);
    assert.deepEqual(decodeDirectory(await store.get(root)), EMPTY_DIR);
  });
});

for (const backend of ['memory', 'fs'] as const) {
  describe(`stageTree over the ${backend} store`, () => {
    let scratch: string;
    let store: BlobStore;

    beforeEach(async () => {
      scratch = await mkdtemp(join(tmpdir(), 'remex-tree-'));
      store = backend === 'memory' ? new MemoryBlobStore() : new FsBlobStore({ root: join(scratch, 'cas'), maxBlobBytes: 1 << 20 });
    });

    afterEach(async () => {
      await rm(scratch, { recursive: true, force: true });
    });

    test('build then stage round-trips nested directories, contents and modes', async () => {
      const contents: Record<string, string> = {
        program: '#!/bin/sh\necho hi\n',
        'data/input.txt': 'input',
        'data/deep/er/file': 'deep',
        'data/deep/same': 'input',
        'other/empty': '',
        'other/tool': 'tool',
      };
      const executables = new Set(['program', 'other/tool']);
      const files: TreeFile[] = [];
      for (const [path, text] of Object.entries(contents)) files.push({ path, digest: await putBlob(store, text), isExecutable: executables.has(path) });
      const root = await buildInputTree(files, store);

      const dest = join(scratch, 'stage');
      const listing = await stageTree(root, store, dest);
      assert.equal(listing.files.length, files.length);
      for (const [path, text] of Object.entries(contents)) {
        assert.equal(await readFile(join(dest, path), 'utf8'), text, path);
        assert.equal((await stat(join(dest, path))).mode & 0o777, executables.has(path) ? 0o755 : 0o644, path);
      }
      for (const dir of ['', 'data', 'data/deep', 'data/deep/er', 'other']) {
        assert.equal((await stat(join(dest, dir))).mode & 0o777, 0o755, dir);
      }
      assert.deepEqual((await readdir(dest)).sort(), ['data', 'other', 'program']);

      const walked = await walkTree(root, store);
      assert.deepEqual(walked.directories, ['data', 'other', 'data/deep', 'data/deep/er']);
      assert.deepEqual(
        walked.files.map((f) => f.path).sort(),
        Object.keys(contents).sort(),
      );
    });

    test('stages symlinks that stay inside, a shared subdirectory twice, into an existing empty directory', async () => {
      const f = await putBlob(store, 'shared');
      const shared = await putRawDirectory(store, { files: [{ name: 'f', digest: f, isExecutable: false }], directories: [], symlinks: [{ name: 'up', target: '../top' }] });
      const root = await putRawDirectory(store, {
        files: [{ name: 'top', digest: f, isExecutable: false }],
        directories: [
          { name: 'a', digest: shared },
          { name: 'b', digest: shared },
        ],
        symlinks: [{ name: 'link', target: 'a/f' }],
      });
      const dest = join(scratch, 'stage');
      await mkdir(dest);
      await stageTree(root, store, dest);
      assert.equal(await readlink(join(dest, 'link')), 'a/f');
      assert.equal(await readFile(join(dest, 'link'), 'utf8'), 'shared');
      assert.equal(await readFile(join(dest, 'b', 'up'), 'utf8'), 'shared');
      assert.ok((await lstat(join(dest, 'a', 'up'))).isSymbolicLink());
    });

    test('refuses to stage into a non-empty directory', async () => {
      const root = await buildInputTree([], store);
      const dest = join(scratch, 'stage');
      await mkdir(dest);
      await writeFile(join(dest, 'x'), '');
      await assert.rejects(stageTree(root, store, dest), InvalidArgumentError);
    });

    test('a crafted Directory naming ".." or escaping through a symlink is refused before anything is written', async () => {
      const evil = await putBlob(store, 'pwned');
      const outside = join(scratch, 'outside');
      await mkdir(outside);
      const sub = await putRawDirectory(store, { files: [{ name: 'escaped', digest: evil, isExecutable: true }], directories: [], symlinks: [] });
      const crafted: Directory[] = [
        { files: [], directories: [{ name: '..', digest: sub }], symlinks: [] },
        { files: [{ name: '..', digest: evil, isExecutable: false }], directories: [], symlinks: [] },
        { files: [{ name: '../outside/x', digest: evil, isExecutable: false }], directories: [], symlinks: [] },
        { files: [], directories: [{ name: '.', digest: sub }], symlinks: [] },
        { files: [], directories: [], symlinks: [{ name: 'l', target: '/etc' }] },
        { files: [], directories: [], symlinks: [{ name: 'l', target: '../outside' }] },
        {
          files: [],
          directories: [{ name: 'd', digest: await putRawDirectory(store, { files: [], directories: [], symlinks: [{ name: 'l', target: '../../outside' }] }) }],
          symlinks: [],
        },
        {
          files: [],
          directories: [{ name: 'd', digest: await putRawDirectory(store, { files: [], directories: [], symlinks: [{ name: 'l', target: 'x/../..' }] }) }],
          symlinks: [],
        },
      ];
      for (const dir of crafted) {
        const root = await putRawDirectory(store, dir);
        await stageRejects(store, root, join(scratch, 'stage'), (err) => err instanceof UnsafePathError && err.code === 'INVALID_ARGUMENT');
      }
      assert.deepEqual(await readdir(outside), []);
    });

    test('a crafted Directory with unsorted or duplicate names, or malformed bytes, is refused', async () => {
      const f = await putBlob(store, 'x');
      const node = (name: string) => ({ name, digest: f, isExecutable: false });
      const roots = [
        await putRawDirectory(store, { files: [node('b'), node('a')], directories: [], symlinks: [] }),
        await putRawDirectory(store, { files: [node('a'), node('a')], directories: [], symlinks: [] }),
        await putRawDirectory(store, { files: [node('a')], directories: [], symlinks: [{ name: 'a', target: 'b' }] }),
        await putBlob(store, 'not a protobuf message'),
      ];
      for (const root of roots) await stageRejects(store, root, join(scratch, 'stage'), (err) => err instanceof InvalidArgumentError);
    });

    test('reports every missing blob at once, files and directories, before writing', async () => {
      const present = await putBlob(store, 'present');
      const missingFiles = [digestOf('gone 1'), digestOf('gone 2'), digestOf('gone 3')];
      const missingDir = digestOf('{"directories":[],"files":[],"symlinks":[]} but not stored');
      const sub = await putRawDirectory(store, {
        files: [
          { name: 'g2', digest: missingFiles[1] as Digest, isExecutable: false },
          { name: 'p', digest: present, isExecutable: false },
        ],
        directories: [],
        symlinks: [],
      });
      const root = await putRawDirectory(store, {
        files: [
          { name: 'g1', digest: missingFiles[0] as Digest, isExecutable: false },
          { name: 'g1b', digest: missingFiles[0] as Digest, isExecutable: false },
          { name: 'g3', digest: missingFiles[2] as Digest, isExecutable: true },
        ],
        directories: [
          { name: 'absent', digest: missingDir },
          { name: 'sub', digest: sub },
        ],
        symlinks: [],
      });
      const dest = join(scratch, 'stage');
      let caught: unknown;
      await stageTree(root, store, dest).catch((err: unknown) => (caught = err));
      assert.ok(caught instanceof MissingBlobsError);
      assert.equal(caught.code, 'FAILED_PRECONDITION');
      const key = (d: Digest) => `${d.hash}/${d.sizeBytes}`;
      assert.deepEqual(caught.missing.map(key).sort(), [missingDir, ...missingFiles].map(key).sort());
      await assert.rejects(stat(dest), { code: 'ENOENT' });

      await assert.rejects(walkTree(root, store), (err) => err instanceof MissingBlobsError && err.missing.length === 1);
      const absentRoot = digestOf('no such root');
      await assert.rejects(stageTree(absentRoot, store, dest), (err) => err instanceof MissingBlobsError && err.missing[0]?.hash === absentRoot.hash);
    });

    test('bounds trees that expand through shared Directory blobs', async () => {
      const f = await putBlob(store, 'leaf');
      let level = await putRawDirectory(store, { files: [{ name: 'f', digest: f, isExecutable: false }], directories: [], symlinks: [] });
      for (let i = 0; i < 16; i++) {
        level = await putRawDirectory(store, {
          files: [],
          directories: [
            { name: 'a', digest: level },
            { name: 'b', digest: level },
          ],
          symlinks: [],
        });
      }
      await assert.rejects(stageTree(level, store, join(scratch, 'stage'), { maxEntries: 10_000 }), TooLargeError);
      await assert.rejects(walkTree(level, store, { maxDepth: 8 }), InvalidArgumentError);
      await assert.rejects(stat(join(scratch, 'stage')), { code: 'ENOENT' });
    });

    test('the empty blob as a file needs nothing stored', async () => {
      const root = await buildInputTree([{ path: 'empty', digest: EMPTY_DIGEST, isExecutable: false }], store);
      const dest = join(scratch, 'stage');
      await stageTree(root, store, dest);
      assert.equal((await stat(join(dest, 'empty'))).size, 0);
    });
  });
}
