/**
 * The CAS's retention flags as `remex serve` takes them: `--cas-max-bytes 50G` (the filesystem store's
 * cap) and `--cas-grace 10m` (how long a blob used or reported present stays safe from eviction).
 */
import { InvalidArgumentError } from '../core/errors.js';

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kib: 1024, m: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tib: 1024 ** 4 };
const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, '': 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `SIZE`: bytes, or a number with K, M, G or T (binary units: 1G = 2^30 bytes). */
export function parseSize(text: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = SIZE_UNITS[(m?.[2] ?? '').toLowerCase()];
  const bytes = m && unit !== undefined ? Math.floor(Number(m[1]) * unit) : NaN;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new InvalidArgumentError(`${flag}: expected a size such as 500M or 20G, not ${JSON.stringify(text)}`);
  return bytes;
}

/** `DURATION`: seconds, or a number with ms, s, m, h or d. */
export function parseDuration(text: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|)\s*$/i.exec(text);
  const unit = DURATION_UNITS[(m?.[2] ?? '').toLowerCase()];
  const ms = m && unit !== undefined ? Math.round(Number(m[1]) * unit) : NaN;
  if (!Number.isSafeInteger(ms) || ms < 0) throw new InvalidArgumentError(`${flag}: expected a duration such as 90s, 10m or 7d, not ${JSON.stringify(text)}`);
  return ms;
}
