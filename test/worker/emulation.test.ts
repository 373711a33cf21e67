/**
 * Platform detection: the native ISA, qemu-user binaries found on PATH (real ones where installed,
 * fake ones in a temporary PATH otherwise), sysroots and their overrides.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { canonicalPlatform, isaOfNodeArch } from '../../src/core/platform.js';
import { DEFAULT_SYSROOTS, detectPlatformSupport, findQemu } from '../../src/worker/emulation.js';
import { requireTools } from '../helpers/tools.js';

async function fakeBin(t: TestContext, names: string[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'remex-emulation-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, 'bin'));
  for (const name of names) await writeFile(join(dir, 'bin', name), '#!/bin/sh\n', { mode: 0o755 });
  return dir;
}

describe('detectPlatformSupport', () => {
  test('on this host: native first, then the installed qemu-user targets with their sysroots', async (t) => {
    if (!requireTools(t, 'qemu-aarch64-static', 'qemu-riscv64-static', 'qemu-arm-static')) return;
    const native = isaOfNodeArch(process.arch);
    const platforms = await detectPlatformSupport();
    assert.equal(platforms[0]?.platform, `${native}-linux-cpu`);
    assert.equal(platforms[0]?.emulated, false);
    assert.equal(platforms[0]?.emulation, null);
    for (const isa of ['aarch64', 'riscv64', 'arm'] as const) {
      if (isa === native) continue;
      const p = platforms.find((x) => x.platform === `${isa}-linux-cpu`);
      assert.ok(p, `${isa} detected`);
      assert.equal(p.emulated, true);
      assert.match(p.emulation?.qemuPath ?? '', new RegExp(`/qemu-${isa}-static$`));
      assert.equal(p.emulation?.sysroot, DEFAULT_SYSROOTS[isa]);
    }
    for (const p of platforms) assert.equal(canonicalPlatform(p.platform), p.platform);
  });

  test('finds qemu on the given PATH, -static preferred, and applies sysroot overrides', async (t) => {
    const dir = await fakeBin(t, ['qemu-aarch64', 'qemu-aarch64-static', 'qemu-riscv64', 'qemu-i386']);
    const sysroot = join(dir, 'sysroot-rv');
    await mkdir(sysroot);
    const platforms = await detectPlatformSupport({
      nativeIsa: 'x86_64',
      isas: ['x86_64', 'aarch64', 'riscv64', 'arm', 'x86'],
      searchPath: join(dir, 'bin'),
      sysroots: { aarch64: join(dir, 'missing'), riscv64: sysroot, x86: null },
    });
    assert.deepEqual(platforms, [
      { platform: 'x86_64-linux-cpu', emulated: false, emulation: null },
      { platform: 'aarch64-linux-cpu', emulated: true, emulation: { qemuPath: join(dir, 'bin', 'qemu-aarch64-static'), sysroot: null } },
      { platform: 'riscv64-linux-cpu', emulated: true, emulation: { qemuPath: join(dir, 'bin', 'qemu-riscv64'), sysroot } },
      { platform: 'x86-linux-cpu', emulated: true, emulation: { qemuPath: join(dir, 'bin', 'qemu-i386'), sysroot: null } },
    ]);
  });

  test('an explicit qemu path wins; a non-executable one means no emulation', async (t) => {
    const dir = await fakeBin(t, ['my-qemu-arm']);
    await writeFile(join(dir, 'bin', 'not-executable'), '', { mode: 0o644 });
    const platforms = await detectPlatformSupport({
      nativeIsa: 'x86_64',
      isas: ['arm', 'riscv64'],
      searchPath: '',
      qemuPaths: { arm: join(dir, 'bin', 'my-qemu-arm'), riscv64: join(dir, 'bin', 'not-executable') },
      sysroots: { arm: null },
    });
    assert.deepEqual(platforms, [{ platform: 'arm-linux-cpu', emulated: true, emulation: { qemuPath: join(dir, 'bin', 'my-qemu-arm'), sysroot: null } }]);
  });

  test('relative PATH entries are ignored', async (t) => {
    await fakeBin(t, []);
    assert.equal(await findQemu('aarch64', 'bin:.'), null);
  });
});
