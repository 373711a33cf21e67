/**
 * Failed token attempts, counted per remote address: past `maxFailures` within one window an address is
 * refused (RESOURCE_EXHAUSTED, before any token is looked at) until its window ends. Guessing a 128-bit or
 * longer token is hopeless anyway; the limit keeps a guesser from costing the server hashes and log lines
 * without end, and makes one show in the log once, as a single line per window.
 *
 * Memory is bounded: at most `maxAddresses` addresses are remembered, the least recently failing one is
 * forgotten first (a guesser with many addresses gets a fresh budget for those forgotten, never unbounded
 * memory). Only failures are counted: a request with a valid token costs nothing here.
 */
import { isIPv6 } from 'node:net';
import { RemexError } from '../core/errors.js';

export interface FailedAttemptOptions {
  /** Failures one address may have within a window before it is refused (default 60). */
  maxFailures?: number;
  /** Length of the window (default 60 s). */
  windowMs?: number;
  /** Addresses remembered at once (default 10 000). */
  maxAddresses?: number;
  /** The clock (tests). */
  now?: () => number;
}

export const DEFAULT_FAILED_ATTEMPTS: Readonly<Required<Omit<FailedAttemptOptions, 'now'>>> = Object.freeze({
  maxFailures: 60,
  windowMs: 60_000,
  maxAddresses: 10_000,
});

/**
 * An address refused for having failed too often; `retryAfterMs` says when its window ends. `first` is set
 * on the failure that reached the limit (worth a log line; the refusals after it are not).
 */
export class TooManyFailedAttemptsError extends RemexError {
  constructor(
    readonly retryAfterMs: number,
    readonly first = false,
  ) {
    super('RESOURCE_EXHAUSTED', `too many failed authentication attempts from this address: try again in ${Math.ceil(retryAfterMs / 1000)} s`, {
      details: { retryAfterMs },
    });
  }
}

interface Window {
  startMs: number;
  failures: number;
}

export class FailedAttempts {
  private readonly windows = new Map<string, Window>();
  private readonly maxFailures: number;
  private readonly windowMs: number;
  private readonly maxAddresses: number;
  private readonly now: () => number;

  constructor(opts: FailedAttemptOptions = {}) {
    this.maxFailures = opts.maxFailures ?? DEFAULT_FAILED_ATTEMPTS.maxFailures;
    this.windowMs = opts.windowMs ?? DEFAULT_FAILED_ATTEMPTS.windowMs;
    this.maxAddresses = opts.maxAddresses ?? DEFAULT_FAILED_ATTEMPTS.maxAddresses;
    this.now = opts.now ?? Date.now;
  }

  /** Addresses remembered now (never more than `maxAddresses`). */
  get size(): number {
    return this.windows.size;
  }

  /** Throws TooManyFailedAttemptsError while `address` is over its limit. */
  check(address: string): void {
    const w = this.current(hostKey(address));
    if (w && w.failures >= this.maxFailures) throw new TooManyFailedAttemptsError(w.startMs + this.windowMs - this.now());
  }

  /** Counts one failure of `address`; TooManyFailedAttemptsError (`first`) when it reaches the limit. */
  fail(peer: string): void {
    const address = hostKey(peer);
    let w = this.current(address);
    this.windows.delete(address);
    if (!w) {
      w = { startMs: this.now(), failures: 0 };
      if (this.windows.size >= this.maxAddresses) {
        const oldest = this.windows.keys().next();
        if (!oldest.done) this.windows.delete(oldest.value);
      }
    }
    w.failures++;
    // Re-inserted: the Map's order is least recently failing first.
    this.windows.set(address, w);
    if (w.failures === this.maxFailures) throw new TooManyFailedAttemptsError(w.startMs + this.windowMs - this.now(), true);
  }

  private current(address: string): Window | undefined {
    const w = this.windows.get(address);
    if (w && this.now() - w.startMs >= this.windowMs) {
      this.windows.delete(address);
      return undefined;
    }
    return w;
  }
}

/** The address part of a gRPC peer (`127.0.0.1:5000`, `[::1]:5000`, `ipv4:…`) or a socket address, as {@link hostKey} names it. */
export function peerAddress(peer: string | undefined): string {
  if (!peer) return 'unknown';
  const p = peer.replace(/^ipv[46]:/, '');
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(p);
  if (bracketed) return hostKey(bracketed[1] as string);
  // One colon: host:port. More: a bare IPv6 address.
  return hostKey(p.indexOf(':') === p.lastIndexOf(':') && p.includes(':') ? p.slice(0, p.lastIndexOf(':')) : p);
}

/**
 * One host, one name: an IPv6 address in its canonical form (`0:0::1` is `::1`), and an IPv4-mapped one
 * (`::ffff:127.0.0.1`, how a dual-stack socket reports an IPv4 peer) as its IPv4 address, so that the two
 * doors of one host share one failure budget. Anything else is kept as it is.
 */
export function hostKey(address: string): string {
  if (!isIPv6(address)) return address;
  const canonical = new URL(`http://[${address}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
  if (!mapped) return canonical;
  const [high, low] = [parseInt(mapped[1] as string, 16), parseInt(mapped[2] as string, 16)];
  return [high >> 8, high & 255, low >> 8, low & 255].join('.');
}

/**
 * How loudly a door logs a refusal: every failed attempt is a warning up to the limit (reaching it
 * included); the refusals of an address over its limit are debug, so a guesser costs one line per window.
 */
export function refusalLogLevel(err: unknown): 'warn' | 'debug' {
  return err instanceof TooManyFailedAttemptsError && !err.first ? 'debug' : 'warn';
}
