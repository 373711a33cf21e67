import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { chooseRunRoot, DEFAULT_TMPFS_DIR } from '../../src/server/run-root.js';

/** A real tmpfs to choose; these tests need one, as remex serve does for the fast path. */
const TMPFS = DEFAULT_TMPFS_DIR;

describe('chooseRunRoot', () => {
  let dataDir: string;
  let tmpfsDir: string;

  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'remex-run-root-'));
    // A directory of our own on the tmpfs stands for it, so the tests do not touch others' names there.
    tmpfsDir = await mkdtemp(join(TMPFS, 'remex-run-root-test-'));
  });

  afterEach(async () => {
    await rm(dataDir, { recursive: true, force: true });
    await rm(tmpfsDir, { recursive: true, force: true });
  });

  test('on a tmpfs: a private directory per data directory, emptied at start, removed by dispose', async () => {
    const first = await chooseRunRoot({ dataDir, tmpfsDir });
    assert.equal(first.kind, 'tmpfs');
    assert.ok(first.path.startsWith(`${tmpfsDir}/remex-runs-`));
    assert.equal((await stat(first.path)).mode & 0o777, 0o700);
    // A run left behind by a server that died.
    await mkdir(join(first.path, 'run-old', 'root'), { recursive: true });
    await writeFile(join(first.path, 'run-old', 'root', 'out.o'), 'stale');

    const again = await chooseRunRoot({ dataDir, tmpfsDir });
    assert.equal(again.path, first.path, 'the same data directory gets the same run directory');
    assert.deepEqual(await readdir(again.path), []);
    const other = await chooseRunRoot({ dataDir: join(dataDir, 'other'), tmpfsDir });
    assert.notEqual(other.path, first.path);

    await again.dispose();
    await assert.rejects(stat(again.path), { code: 'ENOENT' });
  });

  test('falls back to <dataDir>/runs: not a tmpfs, absent, too little free space, or configured so', async () => {
    const notTmpfs = await chooseRunRoot({ dataDir, tmpfsDir: dataDir });
    // The test's tmpdir may itself be a tmpfs on some hosts; then this case says nothing.
    if (notTmpfs.kind === 'data-dir') assert.match(notTmpfs.reason ?? '', /not a tmpfs/);
    const absent = await chooseRunRoot({ dataDir, tmpfsDir: join(dataDir, 'absent') });
    assert.deepEqual([absent.kind, absent.path], ['data-dir', join(dataDir, 'runs')]);
    const full = await chooseRunRoot({ dataDir, tmpfsDir, minTmpfsFreeBytes: Number.MAX_SAFE_INTEGER });
    assert.equal(full.kind, 'data-dir');
    assert.match(full.reason ?? '', /MiB free/);
    const configured = await chooseRunRoot({ dataDir, tmpfsDir, mode: 'data-dir' });
    assert.equal(configured.kind, 'data-dir');
    await configured.dispose();
    assert.deepEqual(await readdir(tmpfsDir), [], 'nothing was made on the tmpfs');
  });

  test('a name taken by someone else (a symlink, or a directory others can enter) is not used', async () => {
    const probe = await chooseRunRoot({ dataDir, tmpfsDir });
    await probe.dispose();
    const target = await mkdtemp(join(tmpfsDir, 'elsewhere-'));
    await symlink(target, probe.path);
    const viaSymlink = await chooseRunRoot({ dataDir, tmpfsDir });
    assert.equal(viaSymlink.kind, 'data-dir');
    assert.match(viaSymlink.reason ?? '', /not a private directory/);
    await rm(probe.path);

    await mkdir(probe.path);
    await chmod(probe.path, 0o755);
    await writeFile(join(probe.path, 'theirs'), 'x');
    const open = await chooseRunRoot({ dataDir, tmpfsDir });
    assert.equal(open.kind, 'data-dir');
    assert.deepEqual(await readdir(probe.path), ['theirs'], 'what is there is left alone');
  });
});
