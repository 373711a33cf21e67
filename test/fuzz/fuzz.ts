/**
 * What every fuzz test shares: a fixed seed and a small number of runs in CI (the whole set well under a
 * minute), more with `npm run fuzz` (REMEX_FUZZ_RUNS; REMEX_FUZZ_SEED picks another seed, and a failure
 * prints the seed and path that replay it), and the one property every parser of outside bytes keeps:
 * it returns, or it refuses with a RemexError that says what is wrong — never a TypeError, a RangeError
 * or anything else that would reach a client as INTERNAL.
 */
import assert from 'node:assert/strict';
import type { Parameters as FcParameters } from 'fast-check';
import { isRemexError } from '../../src/core/errors.js';

const DEFAULT_SEED = 18;

/** fast-check parameters: `ciRuns` runs unless REMEX_FUZZ_RUNS says more; a bound per input against hangs. */
export function fuzzParams<T>(ciRuns: number, perInputTimeoutMs = 10_000): FcParameters<T> {
  const runs = Number(process.env.REMEX_FUZZ_RUNS);
  const seed = Number(process.env.REMEX_FUZZ_SEED);
  return {
    seed: Number.isInteger(seed) ? seed : DEFAULT_SEED,
    numRuns: Number.isInteger(runs) && runs > 0 ? Math.max(ciRuns, runs) : ciRuns,
    timeout: perInputTimeoutMs,
    endOnFailure: true,
    includeErrorInReport: true,
  };
}

/** Asserts `err` is a clear refusal: a RemexError with a code and a message. */
export function assertClearRefusal(err: unknown, what: string): void {
  if (!isRemexError(err)) assert.fail(`${what}: threw ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)} instead of a RemexError`);
  assert.ok(err.message.length > 0, `${what}: a refusal says why`);
  assert.notEqual(err.code, 'INTERNAL', `${what}: ${err.message}`);
}

/** Runs `parse`; true when it returned, false when it refused clearly; fails on anything else. */
export function parsesOrRefuses(parse: () => unknown, what: string): boolean {
  try {
    parse();
    return true;
  } catch (err) {
    assertClearRefusal(err, what);
    return false;
  }
}

/** Same for an async parse. */
export async function parsesOrRefusesAsync(parse: () => Promise<unknown>, what: string): Promise<boolean> {
  try {
    await parse();
    return true;
  } catch (err) {
    assertClearRefusal(err, what);
    return false;
  }
}

/**
 * Mutations of a real sample: bytes flipped, overwritten with boundary values, cut short, or a slice
 * repeated — what a damaged or hostile file of that kind looks like.
 */
export function mutate(sample: Buffer, ops: ReadonlyArray<{ kind: number; at: number; value: number }>): Buffer {
  let out = Buffer.from(sample);
  for (const { kind, at, value } of ops) {
    if (out.length === 0) break;
    const i = at % out.length;
    switch (kind % 5) {
      case 0:
        out[i] = (out[i] as number) ^ (1 << (value % 8));
        break;
      case 1:
        out[i] = [0x00, 0xff, 0x7f, 0x80, 0x01][value % 5] as number;
        break;
      case 2:
        out = out.subarray(0, i);
        break;
      case 3:
        out = Buffer.concat([out.subarray(0, i), out.subarray(i, i + (value % 64)), out.subarray(i)]);
        break;
      default:
        if (out.length >= 4) out.writeUInt32LE(([0, 0xffffffff, 0x7fffffff, 0x80000000, value][value % 5] as number) >>> 0, Math.min(i, out.length - 4));
    }
  }
  return out;
}

/** Collects unhandled rejections while a fuzz test runs; `check()` fails if any happened. */
export function watchUnhandledRejections(): { check(): void; stop(): void } {
  const seen: unknown[] = [];
  const onRejection = (reason: unknown): void => {
    seen.push(reason);
  };
  process.on('unhandledRejection', onRejection);
  return {
    check: () => assert.deepEqual(seen.map(String), [], 'no unhandled rejection'),
    stop: () => process.off('unhandledRejection', onRejection),
  };
}
