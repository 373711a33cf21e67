import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { openSync, readSync, closeSync } from 'node:fs';
import { describe, it } from 'node:test';
import { UnsupportedExecutableError } from '../../src/core/errors.js';
import type { ElfExecutableInfo } from '../../src/core/executable-format.js';
import { detectExecutable, EXECUTABLE_HEADER_BYTES } from '../../src/core/executable-format.js';
import { isaOfNodeArch } from '../../src/core/platform.js';
import { compileC, CROSS_CC, requireTools } from '../helpers/tools.js';

const HELLO = { name: 'exe-format-hello', code: '#include <stdio.h>\nint main(void) { puts("hi"); return 0; }\n' };

function readHeader(path: string): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(EXECUTABLE_HEADER_BYTES);
    const n = readSync(fd, buf, 0, buf.length, 0);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

function detectElf(bytes: Uint8Array): ElfExecutableInfo {
  const info = detectExecutable(bytes);
  assert.equal(info.kind, 'elf');
  return info as ElfExecutableInfo;
}

/** Asserts an UnsupportedExecutableError whose machine-readable format detail is `format`; returns it. */
function assertUnsupported(bytes: Uint8Array, format: string): UnsupportedExecutableError {
  let caught: unknown;
  try {
    detectExecutable(bytes);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof UnsupportedExecutableError, `expected UnsupportedExecutableError, got ${String(caught)}`);
  assert.equal(caught.code, 'INVALID_ARGUMENT');
  assert.equal(caught.details?.format, format);
  assert.ok(caught.message.length > 0);
  return caught;
}

interface ElfSpec {
  elfClass?: 32 | 64;
  little?: boolean;
  osAbi?: number;
  type?: number;
  machine: number;
  /** Program headers to write right after the ELF header; `interp` adds a PT_INTERP naming this path. */
  interp?: string;
  /** Extra PT_LOAD headers before the PT_INTERP, to push it further. */
  loads?: number;
  /** Overrides e_phoff (for headers beyond the bytes). */
  phoff?: number;
}

/** A minimal but well-formed ELF header (and optional program headers) built byte by byte. */
function craftElf(spec: ElfSpec): Buffer {
  const is64 = (spec.elfClass ?? 64) === 64;
  const little = spec.little ?? true;
  const ehsize = is64 ? 64 : 52;
  const phentsize = is64 ? 56 : 32;
  const phdrs: Array<{ type: number; offset: number; size: number }> = [];
  for (let i = 0; i < (spec.loads ?? 0); i++) phdrs.push({ type: 1, offset: 0, size: 0 });
  const interpBytes = spec.interp === undefined ? undefined : Buffer.from(`${spec.interp}\0`, 'latin1');
  const interpOffset = ehsize + (phdrs.length + (interpBytes ? 1 : 0)) * phentsize;
  if (interpBytes) phdrs.push({ type: 3, offset: interpOffset, size: interpBytes.length });
  const buf = Buffer.alloc(interpOffset + (interpBytes?.length ?? 0));
  buf.set([0x7f, 0x45, 0x4c, 0x46, is64 ? 2 : 1, little ? 1 : 2, 1, spec.osAbi ?? 0]);
  const u16 = (v: number, at: number): number => (little ? buf.writeUInt16LE(v, at) : buf.writeUInt16BE(v, at));
  const u32 = (v: number, at: number): number => (little ? buf.writeUInt32LE(v, at) : buf.writeUInt32BE(v, at));
  const u64 = (v: number, at: number): number => (little ? buf.writeBigUInt64LE(BigInt(v), at) : buf.writeBigUInt64BE(BigInt(v), at));
  u16(spec.type ?? 2, 16);
  u16(spec.machine, 18);
  u32(1, 20);
  const phoff = spec.phoff ?? (phdrs.length > 0 ? ehsize : 0);
  if (is64) {
    u64(phoff, 32);
    u16(ehsize, 52);
    u16(phentsize, 54);
    u16(phdrs.length, 56);
  } else {
    u32(phoff, 28);
    u16(ehsize, 40);
    u16(phentsize, 42);
    u16(phdrs.length, 44);
  }
  phdrs.forEach((p, i) => {
    const at = ehsize + i * phentsize;
    u32(p.type, at);
    if (is64) {
      u64(p.offset, at + 8);
      u64(p.size, at + 32);
    } else {
      u32(p.offset, at + 4);
      u32(p.size, at + 16);
    }
  });
  if (interpBytes) buf.set(interpBytes, interpOffset);
  return buf;
}

describe('detectExecutable on real binaries', () => {
  const interpreters: Record<string, string> = {
    x86_64: '/lib64/ld-linux-x86-64.so.2',
    aarch64: '/lib/ld-linux-aarch64.so.1',
    riscv64: '/lib/ld-linux-riscv64-lp64d.so.1',
    arm: '/lib/ld-linux-armhf.so.3',
  };
  const expected: Record<string, { elfClass: 32 | 64; machine: number }> = {
    x86_64: { elfClass: 64, machine: 62 },
    aarch64: { elfClass: 64, machine: 183 },
    riscv64: { elfClass: 64, machine: 243 },
    arm: { elfClass: 32, machine: 40 },
  };

  for (const isa of Object.keys(CROSS_CC)) {
    const cc = CROSS_CC[isa] as string;
    it(`${isa}: dynamically linked PIE from ${cc}`, (t) => {
      if (!requireTools(t, cc)) return;
      const info = detectElf(readHeader(compileC(HELLO, isa)));
      assert.equal(info.platform, `${isa}-linux-cpu`);
      assert.equal(info.isa, isa);
      assert.equal(info.elfClass, expected[isa]?.elfClass);
      assert.equal(info.machine, expected[isa]?.machine);
      assert.equal(info.byteOrder, 'little');
      assert.equal(info.fileType, 'ET_DYN');
      assert.equal(info.linkage, 'dynamic');
      assert.equal(info.interpreter, interpreters[isa]);
      assert.ok([0, 3].includes(info.osAbi));
    });

    it(`${isa}: statically linked from ${cc} -static`, (t) => {
      if (!requireTools(t, cc)) return;
      const info = detectElf(readHeader(compileC(HELLO, isa, { static: true })));
      assert.equal(info.platform, `${isa}-linux-cpu`);
      assert.equal(info.fileType, 'ET_EXEC');
      assert.equal(info.linkage, 'static');
      assert.equal(info.interpreter, null);
    });
  }

  it('x86_64: static-pie and shared object are ET_DYN without an interpreter', (t) => {
    if (!requireTools(t, 'gcc')) return;
    const staticPie = detectElf(readHeader(compileC(HELLO, 'x86_64', { extraFlags: ['-static-pie'] })));
    assert.deepEqual([staticPie.fileType, staticPie.linkage, staticPie.interpreter], ['ET_DYN', 'static', null]);
    const lib = { name: 'exe-format-lib', code: 'int answer(void) { return 42; }\n' };
    const shared = detectElf(readHeader(compileC(lib, 'x86_64', { extraFlags: ['-shared', '-fPIC'] })));
    assert.equal(shared.platform, 'x86_64-linux-cpu');
    assert.equal(shared.fileType, 'ET_DYN');
  });

  it('x86_64: a relocatable object file is refused', (t) => {
    if (!requireTools(t, 'gcc')) return;
    const obj = compileC({ name: 'exe-format-obj', code: 'int f(void) { return 1; }\n' }, 'x86_64', { extraFlags: ['-c'] });
    assertUnsupported(readHeader(obj), 'elf');
  });

  it('the running node binary maps to the host platform', () => {
    const isa = isaOfNodeArch(process.arch);
    if (isa === undefined) return;
    assert.equal(detectElf(readHeader(process.execPath)).platform, `${isa}-linux-cpu`);
  });

  it('ignores bytes past EXECUTABLE_HEADER_BYTES and works with fewer', () => {
    const exe = craftElf({ machine: 62, interp: '/lib/ld.so' });
    const big = Buffer.concat([exe, Buffer.alloc(10 * EXECUTABLE_HEADER_BYTES, 0xff)]);
    assert.equal(detectElf(big).interpreter, '/lib/ld.so');
    assert.equal(detectElf(exe).interpreter, '/lib/ld.so');
  });
});

describe('detectExecutable on crafted ELF headers', () => {
  const supported: Array<[string, ElfSpec, string]> = [
    ['x86_64', { machine: 62 }, 'x86_64-linux-cpu'],
    ['aarch64', { machine: 183 }, 'aarch64-linux-cpu'],
    ['riscv64', { machine: 243 }, 'riscv64-linux-cpu'],
    ['arm (32-bit)', { machine: 40, elfClass: 32 }, 'arm-linux-cpu'],
    ['x86 (32-bit)', { machine: 3, elfClass: 32 }, 'x86-linux-cpu'],
    ['ppc64le', { machine: 21 }, 'ppc64le-linux-cpu'],
    ['s390x (big-endian)', { machine: 22, little: false }, 's390x-linux-cpu'],
    ['mips64el', { machine: 8 }, 'mips64el-linux-cpu'],
    ['loongarch64', { machine: 258 }, 'loongarch64-linux-cpu'],
    ['GNU/Linux OS ABI', { machine: 62, osAbi: 3 }, 'x86_64-linux-cpu'],
  ];
  for (const [name, spec, platform] of supported) {
    it(`maps ${name} to ${platform}`, () => {
      const info = detectElf(craftElf(spec));
      assert.equal(info.platform, platform);
      assert.equal(info.machine, spec.machine);
      assert.equal(info.elfClass, spec.elfClass ?? 64);
      assert.equal(info.byteOrder, spec.little === false ? 'big' : 'little');
      assert.equal(info.linkage, 'static');
    });
  }

  it('reads PT_INTERP in big-endian and 32-bit headers', () => {
    assert.equal(detectElf(craftElf({ machine: 22, little: false, interp: '/lib/ld64.so.1', loads: 2 })).interpreter, '/lib/ld64.so.1');
    const arm = detectElf(craftElf({ machine: 40, elfClass: 32, interp: '/lib/ld-linux-armhf.so.3', loads: 3 }));
    assert.deepEqual([arm.linkage, arm.interpreter], ['dynamic', '/lib/ld-linux-armhf.so.3']);
  });

  it('reports linkage unknown when the program headers lie beyond the bytes given', () => {
    const info = detectElf(craftElf({ machine: 62, phoff: 1_000_000, loads: 1 }).subarray(0, 64));
    assert.equal(info.linkage, 'unknown');
    assert.equal(info.interpreter, null);
  });

  it('refuses an ELF for FreeBSD and other OS ABIs, naming the ABI', () => {
    for (const osAbi of [9, 2, 12, 6, 97, 200]) {
      const err = assertUnsupported(craftElf({ machine: 62, osAbi }), 'elf');
      assert.equal(err.details?.osAbi, osAbi);
    }
  });

  it('refuses an unknown e_machine, naming the number', () => {
    const err = assertUnsupported(craftElf({ machine: 0x7777 }), 'elf');
    assert.equal(err.details?.machine, 0x7777);
    assert.ok(err.message.includes(String(0x7777)));
  });

  it('refuses known machines remex has no platform for', () => {
    for (const machine of [2, 43, 20, 50, 247]) assert.equal(assertUnsupported(craftElf({ machine }), 'elf').details?.machine, machine);
  });

  it('refuses supported machines in the wrong class or byte order', () => {
    const cases: ElfSpec[] = [
      { machine: 243, elfClass: 32 }, // riscv32
      { machine: 62, elfClass: 32 }, // x32
      { machine: 183, little: false }, // aarch64_be
      { machine: 183, elfClass: 32 }, // ILP32
      { machine: 21, little: false }, // ppc64 big-endian
      { machine: 40, elfClass: 32, little: false }, // armeb
      { machine: 8, elfClass: 32 }, // mipsel
      { machine: 8, little: false }, // mips64 big-endian
      { machine: 22, elfClass: 32, little: false }, // s390 (31-bit)
      { machine: 3, elfClass: 64 }, // nonsense
    ];
    for (const spec of cases) {
      const err = assertUnsupported(craftElf(spec), 'elf');
      assert.deepEqual([err.details?.machine, err.details?.elfClass], [spec.machine, spec.elfClass ?? 64]);
    }
  });

  it('refuses object files and core dumps', () => {
    assertUnsupported(craftElf({ machine: 62, type: 1 }), 'elf');
    assertUnsupported(craftElf({ machine: 62, type: 4 }), 'elf');
    assertUnsupported(craftElf({ machine: 62, type: 0x1234 }), 'elf');
  });

  it('refuses truncated and malformed headers clearly', () => {
    const good = craftElf({ machine: 62 });
    for (const length of [4, 8, 15, 16, 17, 40, 63]) assertUnsupported(good.subarray(0, length), 'elf');
    const badClass = Buffer.from(good);
    badClass[4] = 7;
    assertUnsupported(badClass, 'elf');
    const badData = Buffer.from(good);
    badData[5] = 0;
    assertUnsupported(badData, 'elf');
    const badVersion = Buffer.from(good);
    badVersion[6] = 2;
    assertUnsupported(badVersion, 'elf');
    const tinyPhdrs = craftElf({ machine: 62, loads: 1 });
    tinyPhdrs.writeUInt16LE(8, 54);
    assertUnsupported(tinyPhdrs, 'elf');
  });

  it('never throws anything but UnsupportedExecutableError on garbage after the ELF magic', () => {
    for (let i = 0; i < 2000; i++) {
      const bytes = randomBytes(1 + (i % 300));
      bytes.set([0x7f, 0x45, 0x4c, 0x46].slice(0, bytes.length));
      if (i % 3 === 0 && bytes.length > 7) bytes.set([i % 2 ? 1 : 2, 1 + (i % 2), 1, 0], 4);
      try {
        detectExecutable(bytes);
      } catch (err) {
        assert.ok(err instanceof UnsupportedExecutableError, `got ${String(err)}`);
      }
    }
  });

  it('never crashes on any prefix of a real-looking header', () => {
    const exe = craftElf({ machine: 183, interp: '/lib/ld-linux-aarch64.so.1', loads: 4 });
    for (let n = 0; n <= exe.length; n++) {
      try {
        detectExecutable(exe.subarray(0, n));
      } catch (err) {
        assert.ok(err instanceof UnsupportedExecutableError, `prefix ${n}: got ${String(err)}`);
      }
    }
  });
});

describe('detectExecutable on other formats', () => {
  function pe(machine: number, dll = false): Buffer {
    const buf = Buffer.alloc(0x200);
    buf.write('MZ', 0, 'latin1');
    buf.writeUInt32LE(0x80, 0x3c);
    buf.write('PE\0\0', 0x80, 'latin1');
    buf.writeUInt16LE(machine, 0x84);
    buf.writeUInt16LE(dll ? 0x2022 : 0x0022, 0x80 + 22);
    return buf;
  }

  it('refuses Windows PE executables, naming the machine', () => {
    assert.equal(assertUnsupported(pe(0x8664), 'pe').details?.machine, 'x86-64');
    assert.equal(assertUnsupported(pe(0xaa64), 'pe').details?.machine, 'arm64');
    assert.equal(assertUnsupported(pe(0x14c, true), 'pe').details?.machine, 'x86');
    assert.equal(assertUnsupported(pe(0x9999), 'pe').details?.machine, 'machine 0x9999');
  });

  it('refuses a DOS MZ file without a PE header, and a PE whose header is cut off', () => {
    const dos = Buffer.alloc(0x40);
    dos.write('MZ', 0, 'latin1');
    dos.writeUInt32LE(0x10000, 0x3c);
    assertUnsupported(dos, 'mz');
    assertUnsupported(Buffer.from('MZ'), 'mz');
    assertUnsupported(pe(0x8664).subarray(0, 0x82), 'mz');
  });

  it('refuses thin Mach-O in every byte order and width', () => {
    const thin = (magic: number, little: boolean, cpu: number): Buffer => {
      const buf = Buffer.alloc(32);
      buf.writeUInt32BE(magic, 0);
      if (little) buf.writeUInt32LE(cpu, 4);
      else buf.writeUInt32BE(cpu, 4);
      if (little) buf.writeUInt32LE(2, 12);
      else buf.writeUInt32BE(2, 12);
      return buf;
    };
    assert.deepEqual(assertUnsupported(thin(0xcffaedfe, true, 0x0100000c), 'macho').details?.cpus, ['arm64']);
    assert.deepEqual(assertUnsupported(thin(0xcffaedfe, true, 0x01000007), 'macho').details?.cpus, ['x86_64']);
    assert.deepEqual(assertUnsupported(thin(0xcefaedfe, true, 7), 'macho').details?.cpus, ['i386']);
    assert.deepEqual(assertUnsupported(thin(0xfeedface, false, 18), 'macho').details?.cpus, ['ppc']);
    assert.deepEqual(assertUnsupported(thin(0xfeedfacf, false, 0x01000012), 'macho').details?.cpus, ['ppc64']);
    assertUnsupported(Buffer.from([0xcf, 0xfa, 0xed, 0xfe]), 'macho');
  });

  it('refuses universal (fat) Mach-O, listing its architectures', () => {
    const fat = (magic: number, entry: number, cpus: number[]): Buffer => {
      const buf = Buffer.alloc(8 + cpus.length * entry);
      buf.writeUInt32BE(magic, 0);
      buf.writeUInt32BE(cpus.length, 4);
      cpus.forEach((cpu, i) => buf.writeUInt32BE(cpu, 8 + i * entry));
      return buf;
    };
    assert.deepEqual(assertUnsupported(fat(0xcafebabe, 20, [0x01000007, 0x0100000c]), 'macho-universal').details?.cpus, ['x86_64', 'arm64']);
    assert.deepEqual(assertUnsupported(fat(0xcafebabf, 32, [0x0100000c, 12]), 'macho-universal').details?.cpus, ['arm64', 'arm']);
  });

  it('tells a Java class file (same magic as fat Mach-O) apart', () => {
    const cls = Buffer.from([0xca, 0xfe, 0xba, 0xbe, 0x00, 0x00, 0x00, 0x41, 0, 0]);
    assertUnsupported(cls, 'java-class');
  });

  it('reports #! scripts with their interpreter and no platform', () => {
    assert.deepEqual(detectExecutable(Buffer.from('#!/bin/sh\necho hi\n')), {
      kind: 'script',
      platform: null,
      interpreter: '/bin/sh',
      interpreterArgument: null,
    });
    assert.deepEqual(detectExecutable(Buffer.from('#! /usr/bin/env  python3 -u \r\nprint(1)\n')), {
      kind: 'script',
      platform: null,
      interpreter: '/usr/bin/env',
      interpreterArgument: 'python3 -u',
    });
    assert.equal(detectExecutable(Buffer.from('#!/bin/bash')).platform, null);
  });

  it('refuses a #! line with no interpreter', () => {
    assertUnsupported(Buffer.from('#!\n'), 'script');
    assertUnsupported(Buffer.from('#!   \nfoo'), 'script');
    assertUnsupported(Buffer.from('#!'), 'script');
  });

  it('refuses empty files, data and known non-executable formats', () => {
    assertUnsupported(new Uint8Array(0), 'empty');
    assertUnsupported(Buffer.from('hello, world\n'), 'unknown');
    assertUnsupported(Buffer.from([0x7f]), 'unknown');
    assertUnsupported(Buffer.from([0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0]), 'wasm');
    assertUnsupported(Buffer.from('!<arch>\nfoo.o/'), 'ar');
    assertUnsupported(Buffer.from([0x50, 0x4b, 0x03, 0x04, 0, 0]), 'zip');
    assertUnsupported(Buffer.from([0x1f, 0x8b, 8, 0]), 'gzip');
  });
});
