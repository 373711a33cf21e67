import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UnsupportedPlatformError } from '../../src/core/errors.js';
import { canonicalPlatform, formatPlatform, ISAS, isaOfNodeArch, isIsa, normaliseIsa, parsePlatform } from '../../src/core/platform.js';

function assertUnsupported(text: string): void {
  assert.throws(
    () => parsePlatform(text),
    (err: unknown) => err instanceof UnsupportedPlatformError && err.code === 'FAILED_PRECONDITION',
  );
}

describe('platform', () => {
  it('parses and formats every canonical ISA', () => {
    for (const isa of ISAS) {
      for (const specialty of ['cpu', 'gpu'] as const) {
        const text = `${isa}-linux-${specialty}`;
        const p = parsePlatform(text);
        assert.deepEqual(p, { isa, os: 'linux', specialty });
        assert.equal(formatPlatform(p), text);
        assert.equal(canonicalPlatform(text), text);
      }
    }
  });

  it('normalises ISA aliases, including ones that contain a dash', () => {
    const cases: Array<[string, string]> = [
      ['amd64-linux-cpu', 'x86_64-linux-cpu'],
      ['x86-64-linux-cpu', 'x86_64-linux-cpu'],
      ['arm64-linux-cpu', 'aarch64-linux-cpu'],
      ['arm-a64-linux-cpu', 'aarch64-linux-cpu'],
      ['armhf-linux-cpu', 'arm-linux-cpu'],
      ['arm-a32-linux-cpu', 'arm-linux-cpu'],
      ['i686-linux-cpu', 'x86-linux-cpu'],
      ['x86-32-linux-cpu', 'x86-linux-cpu'],
      ['riscv-64-linux-cpu', 'riscv64-linux-cpu'],
      ['ppc64el-linux-gpu', 'ppc64le-linux-gpu'],
      ['AMD64-linux-cpu', 'x86_64-linux-cpu'],
      ['  aarch64-linux-cpu\n', 'aarch64-linux-cpu'],
    ];
    for (const [text, canonical] of cases) assert.equal(canonicalPlatform(text), canonical, text);
  });

  it('refuses malformed, unknown and unsupported platforms', () => {
    for (const text of ['', 'x86_64', 'x86_64-linux', 'sparc-linux-cpu', 'x86_64-windows-cpu', 'x86_64-darwin-cpu', 'x86_64-linux-tpu', 'x86_64-Linux-cpu', '-linux-cpu']) {
      assertUnsupported(text);
    }
  });

  it('isIsa is exact; normaliseIsa knows aliases and nothing else', () => {
    assert.equal(isIsa('aarch64'), true);
    assert.equal(isIsa('arm64'), false);
    assert.equal(normaliseIsa('arm64'), 'aarch64');
    assert.equal(normaliseIsa('ARMHF'), 'arm');
    assert.equal(normaliseIsa('sparc64'), undefined);
    assert.equal(normaliseIsa('toString'), undefined);
  });

  it('does not mistake Object.prototype members for ISA aliases', () => {
    assert.equal(normaliseIsa('constructor'), undefined);
    assertUnsupported('constructor-linux-cpu');
    assertUnsupported('__proto__-linux-cpu');
  });

  it('maps Node.js process.arch values', () => {
    assert.equal(isaOfNodeArch('x64'), 'x86_64');
    assert.equal(isaOfNodeArch('arm64'), 'aarch64');
    assert.equal(isaOfNodeArch('ia32'), 'x86');
    assert.equal(isaOfNodeArch('loong64'), 'loongarch64');
    assert.equal(isaOfNodeArch('mips'), undefined);
    assert.ok(isaOfNodeArch(process.arch) === undefined || isIsa(isaOfNodeArch(process.arch) as string));
  });
});
