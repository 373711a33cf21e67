/** removeTree: the worker's removal of a run directory (src/worker/remove-tree.ts), on a real filesystem. */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { removeTree } from '../../src/worker/remove-tree.js';

let scratch: string;

describe('removeTree', () => {
  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'remex-remove-tree-'));
  });
  after(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  test('removes nested directories, many entries, read-only files and directories; follows no symlink', async () => {
    const outside = join(scratch, 'outside');
    await mkdir(outside);
    await writeFile(join(outside, 'keep'), 'must survive');
    const run = join(scratch, 'run');
    let deep = join(run, 'deep');
    for (let i = 0; i < 60; i++) deep = join(deep, `d${i}`);
    await mkdir(deep, { recursive: true });
    await writeFile(join(deep, 'leaf'), 'x');
    await mkdir(join(run, 'wide'));
    for (let i = 0; i < 300; i++) await writeFile(join(run, 'wide', `f${i}`), String(i));
    await symlink(outside, join(run, 'link-to-dir'));
    await symlink(join(outside, 'keep'), join(run, 'wide', 'link-to-file'));
    await symlink(join(scratch, 'nowhere'), join(run, 'dangling'));
    await writeFile(join(run, 'read-only'), 'ro', { mode: 0o444 });
    await mkdir(join(run, 'locked'));
    await writeFile(join(run, 'locked', 'inside'), 'x');
    await chmod(join(run, 'locked'), 0o555);

    await removeTree(run);
    assert.equal(existsSync(run), false);
    assert.equal(await readFile(join(outside, 'keep'), 'utf8'), 'must survive');
  });

  test('a large tree gives the event loop back while it is removed', async () => {
    const run = join(scratch, 'large');
    await mkdir(join(run, 'a', 'b'), { recursive: true });
    for (let i = 0; i < 1500; i++) await writeFile(join(run, i % 2 ? 'a' : join('a', 'b'), `f${i}`), '');
    let ticks = 0;
    const ticking = setInterval(() => ticks++, 0);
    try {
      await removeTree(run);
    } finally {
      clearInterval(ticking);
    }
    assert.equal(existsSync(run), false);
    assert.ok(ticks > 0, 'a timer ran while 1,500 entries were removed');
  });

  test('a path that is gone already, or a file, is removed without error', async () => {
    await removeTree(join(scratch, 'never-made'));
    const file = join(scratch, 'a-file');
    await writeFile(file, 'x');
    await removeTree(file);
    assert.equal(existsSync(file), false);
  });
});
