/**
 * Which platforms this host can run: its own ISA natively, and every other ISA for which a qemu-user
 * binary is installed (`qemu-<isa>-static` or `qemu-<isa>` on PATH). A sysroot, when present, lets
 * dynamically linked programs of that ISA find their loader and libraries (qemu's `-L`).
 *
 * qemu is called explicitly rather than through binfmt_misc: binfmt registrations are host-global
 * state remex neither controls nor can see inside the sandbox, and an explicit call works on every host.
 */
import { access, realpath, stat } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import { ISAS, type Isa, type Specialty, formatPlatform, isaOfNodeArch } from '../core/platform.js';
import type { EmulationSpec } from './sandbox/sandbox.js';

/** How a worker serves one platform. */
export interface PlatformSupport {
  /** Canonical triple, e.g. `aarch64-linux-cpu`. */
  platform: string;
  emulated: boolean;
  /** How to run it under qemu-user; null when native. */
  emulation: EmulationSpec | null;
}

export interface PlatformDetectionOptions {
  /** ISAs to consider. Default: every ISA remex knows. */
  isas?: readonly Isa[];
  /** The host's ISA. Default: from `process.arch`. */
  nativeIsa?: Isa;
  /** Sysroot per ISA, overriding {@link DEFAULT_SYSROOTS}; null means "none, static programs only". */
  sysroots?: Partial<Record<Isa, string | null>>;
  /** qemu-user binary per ISA, overriding the PATH search. */
  qemuPaths?: Partial<Record<Isa, string>>;
  /** Directories searched for qemu. Default: `PATH`. */
  searchPath?: string;
  specialty?: Specialty;
}

/** The name qemu gives each ISA (`qemu-<name>`). */
export const QEMU_TARGETS: Readonly<Record<Isa, string>> = {
  x86_64: 'x86_64',
  aarch64: 'aarch64',
  riscv64: 'riscv64',
  arm: 'arm',
  x86: 'i386',
  ppc64le: 'ppc64le',
  s390x: 's390x',
  mips64el: 'mips64el',
  loongarch64: 'loongarch64',
};

/** Where Debian's cross libc packages (`libc6-dev-<arch>-cross`) install each ISA's sysroot. */
export const DEFAULT_SYSROOTS: Readonly<Record<Isa, string>> = {
  x86_64: '/usr/x86_64-linux-gnu',
  aarch64: '/usr/aarch64-linux-gnu',
  riscv64: '/usr/riscv64-linux-gnu',
  arm: '/usr/arm-linux-gnueabihf',
  x86: '/usr/i686-linux-gnu',
  ppc64le: '/usr/powerpc64le-linux-gnu',
  s390x: '/usr/s390x-linux-gnu',
  mips64el: '/usr/mips64el-linux-gnuabi64',
  loongarch64: '/usr/loongarch64-linux-gnu',
};

/** Native platform first, then every emulated one found, in {@link ISAS} order. */
export async function detectPlatformSupport(opts: PlatformDetectionOptions = {}): Promise<PlatformSupport[]> {
  const specialty = opts.specialty ?? 'cpu';
  const nativeIsa = opts.nativeIsa ?? isaOfNodeArch(process.arch);
  const isas = opts.isas ?? ISAS;
  const searchPath = opts.searchPath ?? process.env.PATH ?? '';
  const found = await Promise.all(
    isas.map(async (isa): Promise<PlatformSupport | null> => {
      const platform = formatPlatform({ isa, os: 'linux', specialty });
      if (isa === nativeIsa) return { platform, emulated: false, emulation: null };
      const emulation = await findEmulation(isa, opts, searchPath);
      return emulation ? { platform, emulated: true, emulation } : null;
    }),
  );
  const supported = found.filter((p): p is PlatformSupport => p !== null);
  return supported.sort((a, b) => Number(a.emulated) - Number(b.emulated));
}

/** How to emulate `isa` on this host, or null when no qemu-user binary for it is installed. */
export async function findEmulation(isa: Isa, opts: Pick<PlatformDetectionOptions, 'qemuPaths' | 'sysroots'>, searchPath: string): Promise<EmulationSpec | null> {
  const configured = opts.qemuPaths?.[isa];
  const qemuPath = configured !== undefined ? ((await isExecutableFile(configured)) ? await realpath(configured) : null) : await findQemu(isa, searchPath);
  if (!qemuPath) return null;
  const wanted = opts.sysroots && isa in opts.sysroots ? opts.sysroots[isa] : DEFAULT_SYSROOTS[isa];
  const sysroot = wanted && (await isDirectory(wanted)) ? await realpath(wanted) : null;
  return { qemuPath, sysroot };
}

/** `qemu-<target>-static` (preferred: no host libraries needed inside the sandbox) or `qemu-<target>`. */
export async function findQemu(isa: Isa, searchPath: string): Promise<string | null> {
  const target = QEMU_TARGETS[isa];
  for (const name of [`qemu-${target}-static`, `qemu-${target}`]) {
    for (const dir of searchPath.split(delimiter)) {
      if (!isAbsolute(dir)) continue;
      const candidate = join(dir, name);
      // Resolved: the sandbox binds it at this path, which must not go through a symlinked directory.
      if (await isExecutableFile(candidate)) return realpath(candidate);
    }
  }
  return null;
}

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    await access(path, fsConstants.X_OK);
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}
