/**
 * What the kernel lets a program receive as arguments and environment. Above it exec fails with E2BIG,
 * which the worker could only report as its own failure: the doors refuse such a request up front instead.
 */
import { InvalidArgumentError } from './errors.js';
import type { EnvironmentVariable } from './model.js';

/** One argument or `NAME=value`, its terminating NUL included (Linux's MAX_ARG_STRLEN). */
export const MAX_ARGUMENT_BYTES = 128 * 1024;
/**
 * Arguments and environment together, a pointer's 8 bytes counted for each string as the kernel does.
 * Linux allows a quarter of the stack limit (2 MiB under the usual 8 MiB); the sandbox's launcher passes
 * both on as its own arguments, so half of that keeps room for its options.
 */
export const MAX_COMMAND_LINE_BYTES = 1024 * 1024;

/** InvalidArgumentError when exec would refuse these arguments and environment. */
export function checkCommandLine(args: readonly string[], env: readonly EnvironmentVariable[]): void {
  let total = 0;
  const count = (text: string, what: () => string): void => {
    const bytes = Buffer.byteLength(text, 'utf8') + 1;
    if (bytes > MAX_ARGUMENT_BYTES) throw new InvalidArgumentError(`${what()} is ${bytes - 1} bytes; the most one can be is ${MAX_ARGUMENT_BYTES - 1}`);
    total += bytes + 8;
  };
  args.forEach((arg, i) => count(arg, () => `argument ${i}`));
  for (const { name, value } of env) count(`${name}=${value}`, () => `environment variable ${name} (as NAME=value)`);
  if (total > MAX_COMMAND_LINE_BYTES) {
    throw new InvalidArgumentError(`arguments and environment are ${total} bytes together; the most is ${MAX_COMMAND_LINE_BYTES}`);
  }
}
