/**
 * Executable format detection: from the first bytes of a file, what it is and which remex platform runs
 * it. Only Linux ELF executables map to a platform; scripts need the caller to name one; everything else
 * (Windows PE, Mach-O, object files, archives, data) is refused with a message that says what it is.
 * Pure: the caller reads the bytes.
 */
import { UnsupportedExecutableError } from './errors.js';
import type { Isa } from './platform.js';
import { formatPlatform } from './platform.js';

/**
 * Bytes {@link detectExecutable} looks at. Fewer (a short file) are fine. 4 KiB holds the ELF program
 * headers and interpreter path of ordinary binaries, and the PE header of ordinary Windows programs.
 */
export const EXECUTABLE_HEADER_BYTES = 4096;

/** A Linux ELF executable some remex worker can run. */
export interface ElfExecutableInfo {
  readonly kind: 'elf';
  /** Canonical platform triple, `<isa>-linux-cpu`. */
  readonly platform: string;
  readonly isa: Isa;
  readonly elfClass: 32 | 64;
  readonly byteOrder: 'little' | 'big';
  /** e_machine. */
  readonly machine: number;
  /** e_ident[EI_OSABI]: 0 (System V) or 3 (GNU/Linux). */
  readonly osAbi: number;
  /** e_type: a fixed-address executable, or a position-independent one (PIE, static-pie, shared object). */
  readonly fileType: 'ET_EXEC' | 'ET_DYN';
  /**
   * `dynamic` when a PT_INTERP program header names a dynamic loader, `static` when the program headers
   * have none, `unknown` when the program headers lie beyond the bytes given.
   */
  readonly linkage: 'dynamic' | 'static' | 'unknown';
  /** The PT_INTERP path (`/lib64/ld-linux-x86-64.so.2`) when dynamic and within the bytes given. */
  readonly interpreter: string | null;
}

/** A `#!` script: runnable on any platform that has its interpreter, so the caller must choose one. */
export interface ScriptInfo {
  readonly kind: 'script';
  readonly platform: null;
  /** The interpreter path after `#!`. */
  readonly interpreter: string;
  /** The single optional argument Linux passes after the interpreter path (`python3` in `#!/usr/bin/env python3`). */
  readonly interpreterArgument: string | null;
}

export type ExecutableInfo = ElfExecutableInfo | ScriptInfo;

/**
 * Identifies an executable from its first bytes (up to {@link EXECUTABLE_HEADER_BYTES}; more are ignored).
 * Throws {@link UnsupportedExecutableError} for anything no remex worker runs: PE, Mach-O, ELF files for
 * another OS, an unsupported or unknown machine, object files, truncated or malformed headers, non-executables.
 */
export function detectExecutable(header: Uint8Array): ExecutableInfo {
  const bytes = header.subarray(0, EXECUTABLE_HEADER_BYTES);
  if (bytes.byteLength === 0) throw unsupported('the file is empty, not an executable', 'empty');
  if (startsWith(bytes, ELF_MAGIC)) return detectElf(bytes);
  if (startsWith(bytes, SHEBANG)) return detectScript(bytes);
  if (startsWith(bytes, MZ)) throw describePe(bytes);
  const macho = describeMachO(bytes);
  if (macho) throw macho;
  throw describeOther(bytes);
}

// ---- ELF ----------------------------------------------------------------------------------------------

const ELF_MAGIC = [0x7f, 0x45, 0x4c, 0x46];
const ELFCLASS32 = 1;
const ELFCLASS64 = 2;
const ELFDATA2LSB = 1;
const ELFDATA2MSB = 2;
const ET_REL = 1;
const ET_EXEC = 2;
const ET_DYN = 3;
const ET_CORE = 4;
const PT_INTERP = 3;

/** OS ABIs whose binaries run on Linux. NetBSD and OpenBSD mark theirs 0 too and so pass: only a note says. */
const LINUX_OS_ABIS = new Set([0, 3]);

const OS_ABI_NAMES: Record<number, string> = {
  1: 'HP-UX',
  2: 'NetBSD',
  6: 'Solaris',
  7: 'AIX',
  8: 'IRIX',
  9: 'FreeBSD',
  10: 'Tru64',
  11: 'Novell Modesto',
  12: 'OpenBSD',
  13: 'OpenVMS',
  14: 'HP NonStop Kernel',
  15: 'AROS',
  16: 'FenixOS',
  17: 'CloudABI',
  18: 'OpenVOS',
  64: 'ARM EABI (bare metal)',
  97: 'ARM (bare metal)',
  255: 'standalone (bare metal)',
};

interface ElfIdentity {
  readonly elfClass: 32 | 64;
  readonly byteOrder: 'little' | 'big';
}

/** One supported ISA per e_machine, with the class and byte order Linux uses for it; others are refused by name. */
const ELF_MACHINES: Record<number, { isa: Isa; elfClass: 32 | 64; byteOrder: 'little' | 'big' }> = {
  62: { isa: 'x86_64', elfClass: 64, byteOrder: 'little' },
  183: { isa: 'aarch64', elfClass: 64, byteOrder: 'little' },
  243: { isa: 'riscv64', elfClass: 64, byteOrder: 'little' },
  40: { isa: 'arm', elfClass: 32, byteOrder: 'little' },
  3: { isa: 'x86', elfClass: 32, byteOrder: 'little' },
  21: { isa: 'ppc64le', elfClass: 64, byteOrder: 'little' },
  22: { isa: 's390x', elfClass: 64, byteOrder: 'big' },
  8: { isa: 'mips64el', elfClass: 64, byteOrder: 'little' },
  258: { isa: 'loongarch64', elfClass: 64, byteOrder: 'little' },
};

/** What the supported machines are called in another class or byte order, for the refusal message. */
function variantName(machine: number, id: ElfIdentity): string | undefined {
  const key = `${machine}/${id.elfClass}/${id.byteOrder}`;
  const names: Record<string, string> = {
    '62/32/little': 'x86-64 x32 ABI',
    '183/64/big': 'big-endian AArch64',
    '183/32/little': 'AArch64 ILP32',
    '243/32/little': 'riscv32',
    '40/32/big': 'big-endian ARM',
    '21/64/big': 'big-endian ppc64',
    '22/32/big': '31-bit s390',
    '8/32/big': '32-bit big-endian MIPS',
    '8/32/little': '32-bit little-endian MIPS (or the n32 ABI)',
    '8/64/big': 'big-endian mips64',
  };
  return names[key];
}

const OTHER_MACHINE_NAMES: Record<number, string> = {
  2: 'SPARC',
  4: 'Motorola 68000',
  7: 'Intel 80860',
  18: 'SPARC v8+',
  20: 'PowerPC (32-bit)',
  42: 'SuperH',
  43: 'SPARC v9',
  50: 'IA-64 (Itanium)',
  83: 'AVR',
  92: 'OpenRISC',
  94: 'Xtensa',
  164: 'Qualcomm Hexagon',
  190: 'NVIDIA CUDA',
  220: 'Z80',
  224: 'AMD GPU',
  247: 'eBPF',
  252: 'C-SKY',
};

function detectElf(bytes: Uint8Array): ElfExecutableInfo {
  const identBytes = 16;
  if (bytes.byteLength < identBytes) throw malformedElf(`truncated: ${bytes.byteLength} bytes, shorter than e_ident`);
  const classByte = bytes[4];
  const dataByte = bytes[5];
  if (classByte !== ELFCLASS32 && classByte !== ELFCLASS64) throw malformedElf(`invalid class byte ${classByte}`);
  if (dataByte !== ELFDATA2LSB && dataByte !== ELFDATA2MSB) throw malformedElf(`invalid byte-order byte ${dataByte}`);
  if (bytes[6] !== 1) throw malformedElf(`unknown ELF version ${bytes[6]}`);
  const id: ElfIdentity = { elfClass: classByte === ELFCLASS64 ? 64 : 32, byteOrder: dataByte === ELFDATA2LSB ? 'little' : 'big' };
  const osAbi = bytes[7] as number;

  const headerSize = id.elfClass === 64 ? 64 : 52;
  if (bytes.byteLength < headerSize) {
    throw malformedElf(`truncated: ${bytes.byteLength} bytes, shorter than the ${headerSize}-byte ELF${id.elfClass} header`);
  }
  const r = new ByteReader(bytes, id.byteOrder === 'little');
  const type = r.u16(16);
  const machine = r.u16(18);

  if (!LINUX_OS_ABIS.has(osAbi)) {
    const name = OS_ABI_NAMES[osAbi];
    throw unsupported(
      `this is an ELF executable for ${name ?? `OS ABI ${osAbi}`}, not Linux; remex workers run Linux executables only`,
      'elf',
      { osAbi },
    );
  }
  if (type === ET_REL) throw unsupported('this is an ELF relocatable object file (.o), not an executable; link it first', 'elf');
  if (type === ET_CORE) throw unsupported('this is an ELF core dump, not an executable', 'elf');
  if (type !== ET_EXEC && type !== ET_DYN) throw malformedElf(`unknown e_type ${type}`);

  const isa = isaOf(machine, id);
  const programHeaders = readProgramHeaders(r, id);
  return {
    kind: 'elf',
    platform: formatPlatform({ isa, os: 'linux', specialty: 'cpu' }),
    isa,
    elfClass: id.elfClass,
    byteOrder: id.byteOrder,
    machine,
    osAbi,
    fileType: type === ET_EXEC ? 'ET_EXEC' : 'ET_DYN',
    ...programHeaders,
  };
}

function isaOf(machine: number, id: ElfIdentity): Isa {
  const known = ELF_MACHINES[machine];
  if (known && known.elfClass === id.elfClass && known.byteOrder === id.byteOrder) return known.isa;
  const details = { machine, elfClass: id.elfClass, byteOrder: id.byteOrder };
  const variant = known ? variantName(machine, id) : undefined;
  if (known) {
    const what = variant ?? `ELF${id.elfClass} ${id.byteOrder}-endian ${known.isa}`;
    throw unsupported(`this is a ${what} executable (e_machine ${machine}); no remex platform runs it`, 'elf', details);
  }
  const other = OTHER_MACHINE_NAMES[machine];
  throw unsupported(
    other
      ? `this is an ELF executable for ${other} (e_machine ${machine}); no remex platform runs it`
      : `this is an ELF executable for an unknown machine (e_machine ${machine}); no remex platform runs it`,
    'elf',
    details,
  );
}

function readProgramHeaders(r: ByteReader, id: ElfIdentity): Pick<ElfExecutableInfo, 'linkage' | 'interpreter'> {
  const is64 = id.elfClass === 64;
  const phoff = is64 ? r.u64(32) : r.u32(28);
  const phentsize = r.u16(is64 ? 54 : 42);
  const phnum = r.u16(is64 ? 56 : 44);
  const minEntry = is64 ? 56 : 32;
  // PN_XNUM means the real count is in section header 0, which is far beyond the header bytes.
  if (phnum === 0xffff) return { linkage: 'unknown', interpreter: null };
  if (phnum === 0) return { linkage: 'static', interpreter: null };
  if (phentsize < minEntry) throw malformedElf(`program header entries of ${phentsize} bytes, fewer than ${minEntry}`);
  if (phoff === undefined || phoff + phnum * phentsize > r.length) return { linkage: 'unknown', interpreter: null };

  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (r.u32(at) !== PT_INTERP) continue;
    const offset = is64 ? r.u64(at + 8) : r.u32(at + 4);
    const size = is64 ? r.u64(at + 32) : r.u32(at + 16);
    return { linkage: 'dynamic', interpreter: offset === undefined || size === undefined ? null : r.cString(offset, size) };
  }
  return { linkage: 'static', interpreter: null };
}

function malformedElf(reason: string): UnsupportedExecutableError {
  return unsupported(`malformed ELF header (${reason}); not a runnable executable`, 'elf');
}

// ---- scripts ------------------------------------------------------------------------------------------

const SHEBANG = [0x23, 0x21];

function detectScript(bytes: Uint8Array): ScriptInfo {
  const newline = bytes.indexOf(0x0a);
  const line = Buffer.from(bytes.subarray(2, newline < 0 ? bytes.byteLength : newline))
    .toString('latin1')
    .replace(/\r$/, '');
  // Linux splits the #! line once, at the first blank after the interpreter; the rest is one argument.
  const trimmed = line.replace(/^[ \t]+/, '');
  const blank = trimmed.search(/[ \t]/);
  const interpreter = blank < 0 ? trimmed : trimmed.slice(0, blank);
  const rest = blank < 0 ? '' : trimmed.slice(blank).trim();
  if (interpreter === '') throw unsupported('this is a script whose #! line names no interpreter', 'script');
  return { kind: 'script', platform: null, interpreter, interpreterArgument: rest === '' ? null : rest };
}

// ---- Windows PE ---------------------------------------------------------------------------------------

const MZ = [0x4d, 0x5a];

const PE_MACHINES: Record<number, string> = {
  0x014c: 'x86',
  0x8664: 'x86-64',
  0xaa64: 'arm64',
  0xa641: 'arm64ec',
  0x01c0: 'arm',
  0x01c4: 'arm (Thumb-2)',
  0x0200: 'IA-64',
  0x5032: 'riscv32',
  0x5064: 'riscv64',
  0x6264: 'loongarch64',
  0x0ebc: 'EFI byte code',
};

function describePe(bytes: Uint8Array): UnsupportedExecutableError {
  const r = new ByteReader(bytes, true);
  const lfanew = bytes.byteLength >= 0x40 ? r.u32(0x3c) : undefined;
  if (lfanew === undefined || lfanew + 6 > bytes.byteLength || !startsWith(bytes.subarray(lfanew), [0x50, 0x45, 0, 0])) {
    return unsupported('this is a DOS/Windows "MZ" executable; remex workers run Linux ELF executables only', 'mz');
  }
  const machineCode = r.u16(lfanew + 4);
  const machine = PE_MACHINES[machineCode] ?? `machine 0x${machineCode.toString(16)}`;
  const characteristics = lfanew + 24 <= bytes.byteLength ? r.u16(lfanew + 22) : 0;
  const what = characteristics & 0x2000 ? 'Windows PE DLL' : 'Windows PE executable';
  return unsupported(`this is a ${what} for ${machine}; remex workers run Linux ELF executables only`, 'pe', { machine });
}

// ---- Mach-O -------------------------------------------------------------------------------------------

const MH_MAGIC = 0xfeedface;
const MH_MAGIC_64 = 0xfeedfacf;
const MH_CIGAM = 0xcefaedfe;
const MH_CIGAM_64 = 0xcffaedfe;
const FAT_MAGIC = 0xcafebabe;
const FAT_MAGIC_64 = 0xcafebabf;
const CPU_ARCH_ABI64 = 0x01000000;
const CPU_ARCH_ABI64_32 = 0x02000000;

const MACHO_CPUS: Record<number, string> = {
  7: 'i386',
  [7 | CPU_ARCH_ABI64]: 'x86_64',
  12: 'arm',
  [12 | CPU_ARCH_ABI64]: 'arm64',
  [12 | CPU_ARCH_ABI64_32]: 'arm64_32',
  18: 'ppc',
  [18 | CPU_ARCH_ABI64]: 'ppc64',
};

const MACHO_FILE_TYPES: Record<number, string> = {
  1: 'object file',
  2: 'executable',
  6: 'dynamic library',
  8: 'bundle',
};

function machoCpu(cputype: number): string {
  return MACHO_CPUS[cputype] ?? `cpu type 0x${cputype.toString(16)}`;
}

/** Mach-O (thin or universal) described in an error, or undefined when the bytes are not Mach-O. */
function describeMachO(bytes: Uint8Array): UnsupportedExecutableError | undefined {
  if (bytes.byteLength < 4) return undefined;
  const magic = new ByteReader(bytes, false).u32(0);
  const thinLittle = magic === MH_CIGAM || magic === MH_CIGAM_64;
  if (magic === MH_MAGIC || magic === MH_MAGIC_64 || thinLittle) {
    const r = new ByteReader(bytes, thinLittle);
    const bits = magic === MH_MAGIC_64 || magic === MH_CIGAM_64 ? 64 : 32;
    const cpu = bytes.byteLength >= 8 ? machoCpu(r.u32(4)) : 'an unknown cpu';
    const fileType = bytes.byteLength >= 16 ? (MACHO_FILE_TYPES[r.u32(12)] ?? 'file') : 'file';
    return unsupported(
      `this is a ${bits}-bit Mach-O ${fileType} for ${cpu} (macOS/iOS); remex workers run Linux ELF executables only`,
      'macho',
      { cpus: [cpu] },
    );
  }
  if (magic !== FAT_MAGIC && magic !== FAT_MAGIC_64) return undefined;
  const r = new ByteReader(bytes, false);
  const count = bytes.byteLength >= 8 ? r.u32(4) : 0;
  // 0xcafebabe also starts a Java class file, whose next word is its version (major 45 and up, so at
  // least 45); a universal binary holds a handful of architectures. file(1) tells them apart the same way.
  if (magic === FAT_MAGIC && (count === 0 || count > 30)) {
    return unsupported('this is a Java class file, not a native executable', 'java-class');
  }
  const entrySize = magic === FAT_MAGIC_64 ? 32 : 20;
  const cpus: string[] = [];
  for (let i = 0; i < count && 8 + (i + 1) * entrySize <= bytes.byteLength; i++) cpus.push(machoCpu(r.u32(8 + i * entrySize)));
  const list = cpus.length > 0 ? ` (${cpus.join(', ')})` : '';
  return unsupported(
    `this is a Mach-O universal binary${list} for macOS/iOS; remex workers run Linux ELF executables only`,
    'macho-universal',
    { cpus },
  );
}

// ---- everything else ----------------------------------------------------------------------------------

const OTHER_FORMATS: Array<{ magic: number[]; what: string; format: string }> = [
  { magic: [0x00, 0x61, 0x73, 0x6d], what: 'a WebAssembly module', format: 'wasm' },
  { magic: [...Buffer.from('!<arch>\n', 'latin1')], what: 'an ar archive (a static library, or a .deb)', format: 'ar' },
  { magic: [0x50, 0x4b, 0x03, 0x04], what: 'a zip archive (or a .jar)', format: 'zip' },
  { magic: [0x1f, 0x8b], what: 'gzip-compressed data', format: 'gzip' },
  { magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], what: 'xz-compressed data', format: 'xz' },
  { magic: [0x28, 0xb5, 0x2f, 0xfd], what: 'zstd-compressed data', format: 'zstd' },
];

function describeOther(bytes: Uint8Array): UnsupportedExecutableError {
  for (const f of OTHER_FORMATS) {
    if (startsWith(bytes, f.magic)) return unsupported(`this is ${f.what}, not an executable`, f.format);
  }
  return unsupported('not an executable: no ELF, #! script, PE or Mach-O header', 'unknown');
}

// ---- helpers ------------------------------------------------------------------------------------------

function unsupported(message: string, format: string, details: Record<string, unknown> = {}): UnsupportedExecutableError {
  return new UnsupportedExecutableError(message, { details: { format, ...details } });
}

function startsWith(bytes: Uint8Array, magic: readonly number[]): boolean {
  return bytes.byteLength >= magic.length && magic.every((b, i) => bytes[i] === b);
}

/** Bounds-checked integer reads; a read past the end is a malformed header, never a RangeError. */
class ByteReader {
  private readonly view: DataView;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly little: boolean,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get length(): number {
    return this.bytes.byteLength;
  }

  u16(at: number): number {
    this.check(at, 2);
    return this.view.getUint16(at, this.little);
  }

  u32(at: number): number {
    this.check(at, 4);
    return this.view.getUint32(at, this.little);
  }

  /** undefined when the value is beyond any offset these bytes could hold. */
  u64(at: number): number | undefined {
    this.check(at, 8);
    const v = this.view.getBigUint64(at, this.little);
    return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : undefined;
  }

  /** A NUL-terminated string within [at, at + size), or null when it is not wholly within the bytes. */
  cString(at: number, size: number): string | null {
    if (at + size > this.bytes.byteLength || size === 0) return null;
    const field = this.bytes.subarray(at, at + size);
    const nul = field.indexOf(0);
    return Buffer.from(nul < 0 ? field : field.subarray(0, nul)).toString('latin1');
  }

  private check(at: number, size: number): void {
    if (at < 0 || at + size > this.bytes.byteLength) {
      throw truncatedHeader(at, size, this.bytes.byteLength);
    }
  }
}

function truncatedHeader(at: number, size: number, length: number): UnsupportedExecutableError {
  return unsupported(`truncated header: needs bytes ${at}..${at + size}, only ${length} given`, 'truncated');
}
