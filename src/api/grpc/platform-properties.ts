/**
 * REAPI platform properties → a remex platform triple (`<isa>-<os>-<specialty>`).
 *
 * Understood properties (names exact, values case-insensitive):
 * - `OSFamily`: `linux` (the only OS remex runs).
 * - `ISA`: a base instruction set in any spelling remex knows (REAPI's `x86-64`, `arm-a64`, `rv64g`,
 *   `power-isa-le`…, or remex's `x86_64`, `aarch64`, `riscv64`…), optionally with REAPI's extension values
 *   (`armv8`, `arm-neon`, `x86-avx2`…) for the same family, which any worker of that ISA is taken to meet.
 * - `remex-platform`: a whole triple (`aarch64-linux-cpu`, `x86_64-linux-gpu`), for what the other two
 *   cannot say (the specialty). When given with them, they must agree.
 *
 * No properties at all means the server's default platform. Anything else — an unknown property name, an
 * unknown ISA or OS, contradictory values — is an UnsupportedPlatformError (FAILED_PRECONDITION) at once:
 * remex never queues an action for a platform it cannot even name.
 */
import { UnsupportedPlatformError } from '../../core/errors.js';
import type { Isa, Platform } from '../../core/platform.js';
import { formatPlatform, normaliseIsa, OSES, parsePlatform } from '../../core/platform.js';

/** The property naming a whole remex platform triple. */
export const PLATFORM_TRIPLE_PROPERTY = 'remex-platform';

export const SUPPORTED_PLATFORM_PROPERTIES: readonly string[] = ['OSFamily', 'ISA', PLATFORM_TRIPLE_PROPERTY];

export interface PlatformProperty {
  name: string;
  value: string;
}

/** REAPI's instruction-set extension values, by the ISAs they can extend. */
const ISA_EXTENSIONS: Readonly<Record<string, readonly Isa[]>> = {
  'arm-neon': ['arm', 'aarch64'],
  'arm-sve': ['aarch64'],
  'arm-vfpv3': ['arm'],
  'arm-vfpv4': ['arm'],
  armv6: ['arm'],
  armv7: ['arm'],
  armv8: ['arm', 'aarch64'],
  'x86-avx': ['x86_64', 'x86'],
  'x86-avx2': ['x86_64', 'x86'],
  'x86-avx-512': ['x86_64'],
  'x86-sse4.1': ['x86_64', 'x86'],
  'x86-sse4.2': ['x86_64', 'x86'],
};

/** The canonical platform the properties ask for; `defaultPlatform` when there are none. */
export function platformOfProperties(properties: readonly PlatformProperty[], defaultPlatform: string): string {
  if (properties.length === 0) return formatPlatform(parsePlatform(defaultPlatform));
  const byName = new Map<string, string[]>();
  for (const { name, value } of properties) {
    if (!SUPPORTED_PLATFORM_PROPERTIES.includes(name)) {
      throw new UnsupportedPlatformError(
        `platform property ${JSON.stringify(name)} is not supported (supported: ${SUPPORTED_PLATFORM_PROPERTIES.join(', ')})`,
        { details: { property: name } },
      );
    }
    byName.set(name, [...(byName.get(name) ?? []), value]);
  }

  const triple = single(byName, PLATFORM_TRIPLE_PROPERTY);
  const base: Platform = triple !== undefined ? parsePlatform(triple) : parsePlatform(defaultPlatform);
  const isa = isaOf(byName.get('ISA') ?? []);
  const os = osOf(single(byName, 'OSFamily'));
  if (triple !== undefined && isa !== undefined && isa !== base.isa) {
    throw new UnsupportedPlatformError(`platform properties disagree: ISA asks for ${isa}, ${PLATFORM_TRIPLE_PROPERTY} for ${formatPlatform(base)}`);
  }
  return formatPlatform({ isa: isa ?? base.isa, os: os ?? base.os, specialty: base.specialty });
}

function single(byName: ReadonlyMap<string, string[]>, name: string): string | undefined {
  const values = [...new Set(byName.get(name) ?? [])];
  if (values.length > 1) throw new UnsupportedPlatformError(`platform property ${name} has several values (${values.join(', ')}); it takes one`);
  return values[0];
}

function isaOf(values: readonly string[]): Isa | undefined {
  let isa: Isa | undefined;
  const extensions: string[] = [];
  for (const value of values) {
    const lower = value.toLowerCase();
    if (Object.hasOwn(ISA_EXTENSIONS, lower)) {
      extensions.push(lower);
      continue;
    }
    const found = normaliseIsa(lower);
    if (!found) throw new UnsupportedPlatformError(`unknown ISA ${JSON.stringify(value)}`, { details: { property: 'ISA', value } });
    if (isa !== undefined && isa !== found) throw new UnsupportedPlatformError(`platform asks for two instruction sets, ${isa} and ${found}`);
    isa = found;
  }
  if (extensions.length > 0 && isa === undefined) throw new UnsupportedPlatformError(`ISA extensions (${extensions.join(', ')}) given without a base instruction set`);
  for (const ext of extensions) {
    if (!(ISA_EXTENSIONS[ext] as readonly Isa[]).includes(isa as Isa)) throw new UnsupportedPlatformError(`ISA extension ${ext} does not apply to ${isa}`);
  }
  return isa;
}

function osOf(value: string | undefined): Platform['os'] | undefined {
  if (value === undefined) return undefined;
  const lower = value.toLowerCase();
  const os = OSES.find((o) => o === lower);
  if (!os) throw new UnsupportedPlatformError(`OSFamily ${JSON.stringify(value)} is not supported (supported: ${OSES.join(', ')})`, { details: { property: 'OSFamily', value } });
  return os;
}
