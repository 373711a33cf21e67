/**
 * Platforms. remex names a worker pool by a triple `<isa>-<os>-<specialty>` (`aarch64-linux-cpu`);
 * REAPI platform properties (OSFamily, ISA) map onto it. Parsing is strict: an unknown ISA, OS or
 * specialty is an error, never a silent default.
 */
import { UnsupportedPlatformError } from './errors.js';

export const ISAS = ['x86_64', 'aarch64', 'riscv64', 'arm', 'x86', 'ppc64le', 's390x', 'mips64el', 'loongarch64'] as const;
export type Isa = (typeof ISAS)[number];

export const OSES = ['linux'] as const;
export type Os = (typeof OSES)[number];

export const SPECIALTIES = ['cpu', 'gpu'] as const;
export type Specialty = (typeof SPECIALTIES)[number];

export interface Platform {
  readonly isa: Isa;
  readonly os: Os;
  readonly specialty: Specialty;
}

/** Other spellings users and tools write for an ISA (Compiler Explorer's, Debian's, REAPI's). */
const ISA_ALIASES: Record<string, Isa> = {
  amd64: 'x86_64',
  'x86-64': 'x86_64',
  arm64: 'aarch64',
  'arm-a64': 'aarch64',
  arm32: 'arm',
  armhf: 'arm',
  'arm-a32': 'arm',
  i386: 'x86',
  i686: 'x86',
  'x86-32': 'x86',
  'riscv-64': 'riscv64',
  rv64g: 'riscv64',
  ppc64el: 'ppc64le',
  'power-isa-le': 'ppc64le',
  la64v100: 'loongarch64',
};

export function isIsa(s: string): s is Isa {
  return (ISAS as readonly string[]).includes(s);
}

/** Canonical ISA for any accepted spelling, or undefined. */
export function normaliseIsa(s: string): Isa | undefined {
  const lower = s.toLowerCase();
  return isIsa(lower) ? lower : Object.hasOwn(ISA_ALIASES, lower) ? ISA_ALIASES[lower] : undefined;
}

export function formatPlatform(p: Platform): string {
  return `${p.isa}-${p.os}-${p.specialty}`;
}

/** Parses `<isa>-<os>-<specialty>`; ISA aliases are accepted and normalised (`arm64-linux-cpu` → aarch64). */
export function parsePlatform(text: string): Platform {
  const parts = text.trim().split('-');
  // ISA aliases may themselves contain a dash (x86-64, arm-a64): the last two parts are os and specialty.
  if (parts.length < 3) {
    throw new UnsupportedPlatformError(`platform ${JSON.stringify(text)} is not a triple <isa>-<os>-<specialty>`);
  }
  const specialty = parts.pop() as string;
  const os = parts.pop() as string;
  const isaText = parts.join('-');
  const isa = normaliseIsa(isaText);
  if (!isa) {
    throw new UnsupportedPlatformError(`platform ${JSON.stringify(text)}: unknown ISA ${JSON.stringify(isaText)} (known: ${ISAS.join(', ')})`);
  }
  if (!(OSES as readonly string[]).includes(os)) {
    throw new UnsupportedPlatformError(`platform ${JSON.stringify(text)}: unsupported OS ${JSON.stringify(os)} (supported: ${OSES.join(', ')})`);
  }
  if (!(SPECIALTIES as readonly string[]).includes(specialty)) {
    throw new UnsupportedPlatformError(
      `platform ${JSON.stringify(text)}: unknown specialty ${JSON.stringify(specialty)} (known: ${SPECIALTIES.join(', ')})`,
    );
  }
  return { isa, os: os as Os, specialty: specialty as Specialty };
}

/** Parses and re-formats, so every stored or compared platform string is canonical. */
export function canonicalPlatform(text: string): string {
  return formatPlatform(parsePlatform(text));
}

/** ISA of a Node.js `process.arch` value, or undefined when remex has no name for it. */
export function isaOfNodeArch(arch: string): Isa | undefined {
  const map: Record<string, Isa> = { x64: 'x86_64', arm64: 'aarch64', arm: 'arm', ia32: 'x86', riscv64: 'riscv64', ppc64: 'ppc64le', s390x: 's390x', loong64: 'loongarch64' };
  return Object.hasOwn(map, arch) ? map[arch] : undefined;
}
