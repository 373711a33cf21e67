/**
 * Real tools the tests need (bwrap, qemu-user, cross compilers). Locally a missing tool skips the test
 * with a reason; in CI (CI=true) a missing tool fails it, so a skip can never pass as green.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import { BUILT_EXEC_HELPER } from '../../src/worker/sandbox/bwrap/host-layout.js';

export const IN_CI = process.env.CI === 'true';

export function which(tool: string): string | undefined {
  try {
    const out = execFileSync('sh', ['-c', `command -v "$1"`, 'sh', tool], { encoding: 'utf8' }).trim();
    return out || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Returns true when every tool is on PATH. Otherwise: in CI throws (the test fails); locally marks the
 * test skipped with the reason and returns false, and the caller returns early.
 */
export function requireTools(t: TestContext, ...tools: string[]): boolean {
  const missing = tools.filter((tool) => !which(tool));
  if (missing.length === 0) return true;
  const reason = `missing tools: ${missing.join(', ')} (run scripts/setup.sh as root)`;
  if (IN_CI) throw new Error(reason);
  t.skip(reason);
  return false;
}

/** Like {@link requireTools} for remex-exec, which `npm run build` compiles when a C compiler is there. */
export function requireExecHelper(t: TestContext): boolean {
  if (existsSync(BUILT_EXEC_HELPER)) return true;
  const reason = `${BUILT_EXEC_HELPER} was not built (scripts/build-native.sh needs a C compiler; run scripts/setup.sh as root)`;
  if (IN_CI) throw new Error(reason);
  t.skip(reason);
  return false;
}

/** Cross compilers by remex ISA name. */
export const CROSS_CC: Record<string, string> = {
  x86_64: 'gcc',
  aarch64: 'aarch64-linux-gnu-gcc',
  riscv64: 'riscv64-linux-gnu-gcc',
  arm: 'arm-linux-gnueabihf-gcc',
};

const repoRoot = resolve(import.meta.dirname, '..', '..', '..');
export const FIXTURES_DIR = join(repoRoot, 'test', 'fixtures');
const BUILD_CACHE = join(repoRoot, '.remex', 'test-bin');

export interface CompileOptions {
  static?: boolean;
  extraFlags?: string[];
}

/**
 * Compiles a C source (a path under test/fixtures or inline text) for an ISA with the real cross
 * compiler, caching the binary by content so repeated runs are quick. Returns the binary's path.
 */
export function compileC(source: { file: string } | { code: string; name: string }, isa: string, opts: CompileOptions = {}): string {
  const cc = CROSS_CC[isa];
  if (!cc) throw new Error(`no cross compiler known for ${isa}`);
  const code = 'file' in source ? readFileSync(join(FIXTURES_DIR, source.file), 'utf8') : source.code;
  const name = 'file' in source ? source.file.replace(/[/.]/g, '_') : source.name;
  const flags = ['-O1', ...(opts.static ? ['-static'] : []), ...(opts.extraFlags ?? [])];
  const key = createHash('sha256').update(JSON.stringify([cc, flags, code])).digest('hex').slice(0, 16);
  const out = join(BUILD_CACHE, `${name}-${isa}${opts.static ? '-static' : ''}-${key}`);
  if (existsSync(out)) return out;
  mkdirSync(BUILD_CACHE, { recursive: true });
  const src = `${out}.c`;
  writeFileSync(src, code);
  const tmp = `${out}.tmp${process.pid}`;
  execFileSync(cc, [...flags, '-o', tmp, src], { stdio: ['ignore', 'inherit', 'inherit'] });
  renameSync(tmp, out);
  return out;
}
