/**
 * How a sandboxed program ended, decoded from what bubblewrap reports. bwrap's pid-namespace init
 * turns "killed by signal n" into exit status 128 + n (as shells do) and nothing finer reaches the
 * outside, so a program that itself exits with 129…192 would be reported as killed by that signal.
 * `remex-exec as -s` waits for the program itself and reports its exact end beside bwrap's status
 * (run-result.ts prefers it); the shell-style decoding here is for runs without it (the sh/unshare
 * fallback, or a waiter the program killed).
 */
import { constants } from 'node:os';

const LAST_SIGNAL = 64;
const FIRST_REALTIME_SIGNAL = 34;

const SIGNAL_NAMES: ReadonlyMap<number, string> = (() => {
  const names = new Map<number, string>();
  // Aliases share numbers (SIGIOT = SIGABRT, SIGPOLL = SIGIO); the first listed is the usual name.
  for (const [name, num] of Object.entries(constants.signals)) if (!names.has(num)) names.set(num, name);
  return names;
})();

/** `SIGSEGV` for 11; real-time signals as `SIGRTMIN+k`; `SIG<n>` for numbers Node has no name for. */
export function signalName(signo: number): string {
  const known = SIGNAL_NAMES.get(signo);
  if (known) return known;
  if (signo >= FIRST_REALTIME_SIGNAL && signo <= LAST_SIGNAL) return `SIGRTMIN+${signo - FIRST_REALTIME_SIGNAL}`;
  return `SIG${signo}`;
}

export interface ProgramEnd {
  exitCode: number | null;
  signal: string | null;
}

/** Splits a shell-style status (0…255, 128 + n for signal n) into an exit code or a signal name. */
export function decodeShellStatus(status: number): ProgramEnd {
  const signo = status - 128;
  if (signo >= 1 && signo <= LAST_SIGNAL) return { exitCode: null, signal: signalName(signo) };
  return { exitCode: status, signal: null };
}
