/**
 * Output collection for REAPI (worker/outputs.ts): parents made before the run without following
 * symlinks, output directories stored as Trees, nothing taken from outside the input root.
 */
import assert from 'node:assert/strict';
import { lstat, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { decodeTree, encodeDirectory } from '../../../src/cas/directory-codec.js';
import { MemoryBlobStore } from '../../../src/cas/memory/memory-blob-store.js';
import { digestOf } from '../../../src/core/digest.js';
import { UnsafePathError } from '../../../src/core/errors.js';
import { collectOutputs, createOutputParents } from '../../../src/worker/outputs.js';

let scratch: string;
let root: string;
let store: MemoryBlobStore;

beforeEach(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'remex-outputs-'));
  root = join(scratch, 'root');
  await mkdir(root);
  store = new MemoryBlobStore();
});

afterEach(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('createOutputParents', () => {
  test('makes the directories leading up to each output, relative to the working directory, not the output itself', async () => {
    await mkdir(join(root, 'w'));
    await createOutputParents(root, 'w', ['a/b/file', 'dir', 'c/d/outdir', '']);
    assert.ok((await lstat(join(root, 'w/a/b'))).isDirectory());
    assert.ok((await lstat(join(root, 'w/c/d'))).isDirectory());
    await assert.rejects(lstat(join(root, 'w/a/b/file')), { code: 'ENOENT' });
    await assert.rejects(lstat(join(root, 'w/c/d/outdir')), { code: 'ENOENT' });
  });

  test('never goes through a symlink or a file in the way, and refuses paths that leave the root', async () => {
    const outside = join(scratch, 'outside');
    await mkdir(outside);
    await symlink(outside, join(root, 'link'));
    await writeFile(join(root, 'file'), 'x');
    await createOutputParents(root, '', ['link/sub/out', 'file/sub/out']);
    await assert.rejects(lstat(join(outside, 'sub')), { code: 'ENOENT' });
    await assert.rejects(createOutputParents(root, '', ['../escape/out']), UnsafePathError);
  });
});

describe('collectOutputs', () => {
  test('stores a directory as a Tree: files, modes, subdirectories, safe symlinks; children once each, parents first', async () => {
    const out = join(root, 'out');
    await mkdir(join(out, 'x/y'), { recursive: true });
    await mkdir(join(out, 'z/y'), { recursive: true });
    await writeFile(join(out, 'x/y/same'), 'same');
    await writeFile(join(out, 'z/y/same'), 'same');
    await writeFile(join(out, 'run.sh'), '#!/bin/sh', { mode: 0o755 });
    await symlink('x/y/same', join(out, 'ok-link'));
    await symlink('../../etc/passwd', join(out, 'escaping-link'));
    await symlink('/etc/passwd', join(out, 'absolute-link'));
    const collected = await collectOutputs(root, '', ['out'], store);
    assert.deepEqual(collected.files, []);
    assert.equal(collected.directories.length, 1);
    const { path, treeDigest } = collected.directories[0] as { path: string; treeDigest: { hash: string; sizeBytes: number } };
    assert.equal(path, 'out');
    const tree = decodeTree(await store.get(treeDigest));
    assert.deepEqual(
      tree.root.files.map((f) => [f.name, f.isExecutable]),
      [['run.sh', true]],
    );
    assert.deepEqual(
      tree.root.symlinks,
      [{ name: 'ok-link', target: 'x/y/same' }],
    );
    // x and z are identical, so they are one Directory; y likewise: 2 distinct children.
    assert.equal(tree.children.length, 2);
    const x = tree.root.directories.find((d) => d.name === 'x');
    assert.deepEqual(tree.children[0]?.digest, x?.digest, 'a parent comes before its children');
    assert.deepEqual(x?.digest, tree.root.directories.find((d) => d.name === 'z')?.digest);
    assert.deepEqual(tree.children[1]?.digest, digestOf(encodeDirectory(tree.children[1]?.directory ?? { files: [], directories: [], symlinks: [] })));
    const same = tree.children[1]?.directory.files[0];
    assert.equal((await store.get(same?.digest ?? digestOf(''))).toString(), 'same');
  });

  test('takes files and directories, skips symlinked outputs and anything reached through one', async () => {
    const outside = join(scratch, 'outside');
    await mkdir(outside);
    await writeFile(join(outside, 'secret'), 'secret');
    await mkdir(join(root, 'w'));
    await writeFile(join(root, 'w/file'), 'file');
    await symlink(outside, join(root, 'w/dirlink'));
    await symlink(join(outside, 'secret'), join(root, 'w/filelink'));
    const collected = await collectOutputs(root, 'w', ['file', 'dirlink', 'filelink', 'dirlink/secret', 'absent'], store);
    assert.deepEqual(
      collected.files.map((f) => f.path),
      ['w/file'],
    );
    assert.deepEqual(collected.directories, []);
    assert.equal((await readFile(join(outside, 'secret'), 'utf8')), 'secret');
    await assert.rejects(collectOutputs(root, 'w', ['../../x'], store), UnsafePathError);
  });

  test("'' as an output directory is the working directory itself", async () => {
    await mkdir(join(root, 'w'));
    await writeFile(join(root, 'w/f'), 'f');
    const collected = await collectOutputs(root, 'w', [''], store);
    assert.deepEqual(
      collected.directories.map((d) => d.path),
      ['w'],
    );
  });
});
