/**
 * The CAS's size flag as `remex serve` takes it: `--cas-max-bytes 50G` (the filesystem store's cap); its
 * durations (`--cas-grace 10m`, `--retain 7d`) are core/duration.ts's.
 */
import { InvalidArgumentError } from '../core/errors.js';

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kib: 1024, m: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tib: 1024 ** 4 };

/** `SIZE`: bytes, or a number with K, M, G or T (binary units: 1G = 2^30 bytes). */
export function parseSize(text: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = SIZE_UNITS[(m?.[2] ?? '').toLowerCase()];
  const bytes = m && unit !== undefined ? Math.floor(Number(m[1]) * unit) : NaN;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new InvalidArgumentError(`${flag}: expected a size such as 500M or 20G, not ${JSON.stringify(text)}`);
  return bytes;
}
