/**
 * Durations as people type them: `90s`, `45m`, `4h`, `2d`, `1h30m`, `500ms`. One parser for every flag and
 * query parameter that takes one (`--max-runtime`, `--since`), with an error that shows the forms.
 */
import { InvalidArgumentError } from './errors.js';

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y;
/** Longer than any job remex runs: a typo of several zeros is refused rather than believed. */
export const MAX_DURATION_MS = 366 * UNIT_MS.d!;

/** Milliseconds of `text`; InvalidArgumentError naming `what` when it is not a duration above zero. */
export function parseDuration(text: string, what = 'duration'): number {
  const trimmed = text.trim();
  const refuse = (why: string): never => {
    throw new InvalidArgumentError(`${what} ${JSON.stringify(text)}: ${why} (durations look like 90s, 45m, 4h, 2d, 1h30m or 500ms)`);
  };
  if (trimmed === '') refuse('empty');
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < trimmed.length) {
    const at = PART.lastIndex;
    const m = PART.exec(trimmed);
    if (!m) refuse(`not a duration at "${trimmed.slice(at)}"`);
    total += Number(m![1]) * (UNIT_MS[m![2] as string] as number);
  }
  if (!(total > 0)) refuse('must be above zero');
  if (total > MAX_DURATION_MS) refuse('longer than a year');
  return Math.round(total);
}

/** `4h`, `1h30m`, `45s`, `250ms`: the largest units that say `ms` exactly (for tables and messages). */
export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  let rest = Math.round(ms / 1_000);
  const parts: string[] = [];
  for (const [unit, seconds] of [['d', 86_400], ['h', 3_600], ['m', 60], ['s', 1]] as const) {
    if (rest >= seconds) {
      parts.push(`${Math.floor(rest / seconds)}${unit}`);
      rest %= seconds;
    }
  }
  return parts.slice(0, 2).join('');
}
