/**
 * Bearer tokens: how they are written in files and environment variables, and how they are checked.
 *
 * The server keeps only the SHA-256 of each token, and checks a presented token by hashing it and
 * comparing the hash with every stored hash in constant time (no early exit, no map lookup keyed by the
 * secret). Tokens never appear in error messages: a bad line is reported by file and line number.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { InvalidArgumentError, RemexError } from '../core/errors.js';
import { FailedAttempts } from './failed-attempts.js';
import type { FailedAttemptOptions } from './failed-attempts.js';

/** Who a token speaks for: a client (submit, read, events) or a worker (the worker protocol). */
export type Scope = 'client' | 'worker';

export const MIN_TOKEN_LENGTH = 16;
export const MAX_TOKEN_LENGTH = 4096;
// Visible ASCII without spaces: valid in an HTTP header and in gRPC metadata, unambiguous in a file.
const TOKEN_RE = /^[\x21-\x7e]+$/;

export class UnauthenticatedError extends RemexError {
  constructor(message: string) {
    super('UNAUTHENTICATED', message);
  }
}

export class PermissionDeniedError extends RemexError {
  constructor(message: string) {
    super('PERMISSION_DENIED', message);
  }
}

function checkToken(token: string, where: string): string {
  if (token.length < MIN_TOKEN_LENGTH || token.length > MAX_TOKEN_LENGTH || !TOKEN_RE.test(token)) {
    throw new InvalidArgumentError(
      `${where}: a token must be ${MIN_TOKEN_LENGTH} to ${MAX_TOKEN_LENGTH} visible ASCII characters without spaces (e.g. \`openssl rand -hex 32\`)`,
    );
  }
  return token;
}

/**
 * The tokens in a token file's text: one per line; blank lines and lines starting with `#` are ignored,
 * as is white space around a token. Several tokens allow rotation (add the new one, move clients and
 * workers over, remove the old one).
 */
export function parseTokens(text: string, source: string): string[] {
  const tokens: string[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    tokens.push(checkToken(line, `${source} line ${i + 1}`));
  });
  return tokens;
}

/** Tokens from an environment variable's value: separated by commas or white space. */
export function parseTokenList(value: string, source: string): string[] {
  return value
    .split(/[\s,]+/)
    .filter((t) => t !== '')
    .map((t, i) => checkToken(t, `${source} (token ${i + 1})`));
}

export interface TokenFile {
  tokens: string[];
  /** Set when group or others may read the file (a warning, not an error). */
  looseMode?: string;
}

/** Reads a token file; an unreadable file or one without any token is an error naming the file. */
export function readTokenFile(path: string): TokenFile {
  let text: string;
  let mode: number;
  try {
    text = readFileSync(path, 'utf8');
    mode = statSync(path).mode;
  } catch (err) {
    throw new InvalidArgumentError(`cannot read token file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const tokens = parseTokens(text, path);
  if (tokens.length === 0) throw new InvalidArgumentError(`token file ${path} holds no token`);
  return { tokens, ...((mode & 0o077) !== 0 ? { looseMode: (mode & 0o777).toString(8) } : {}) };
}

/** The one token a client or worker sends: the first of its token file. */
export function readOwnToken(path: string): string {
  return readTokenFile(path).tokens[0] as string;
}

function sha256(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** Parses `Authorization: Bearer <token>`; undefined when the header is absent. */
export function bearerToken(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  const value = Array.isArray(header) ? header[0] ?? '' : header;
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(value);
  if (!m) throw new UnauthenticatedError('malformed Authorization header: expected "Bearer <token>"');
  return m[1] as string;
}

const NEEDED: Record<Scope, string> = {
  client: 'a client token',
  worker: 'a worker token',
};

/**
 * The server's token check. `open()` lets everything through (the embedded default on loopback);
 * otherwise each scope accepts the tokens configured for it, and a scope with none accepts nobody (a
 * controller with client tokens but no worker tokens serves only its local pool).
 */
export class Authenticator {
  /** Failed attempts per remote address (see failed-attempts.ts), shared by every door of this server. */
  private readonly failures: FailedAttempts;

  private constructor(
    private readonly hashes: Readonly<Record<Scope, readonly Buffer[]>>,
    readonly enabled: boolean,
    failedAttempts: FailedAttemptOptions = {},
  ) {
    this.failures = new FailedAttempts(failedAttempts);
  }

  static open(): Authenticator {
    return new Authenticator({ client: [], worker: [] }, false);
  }

  /** Keeps only the SHA-256 of each token. At least one token in all is required. */
  static fromTokens(tokens: { client?: readonly string[]; worker?: readonly string[] }, failedAttempts?: FailedAttemptOptions): Authenticator {
    const client = [...new Set(tokens.client ?? [])].map(sha256);
    const worker = [...new Set(tokens.worker ?? [])].map(sha256);
    if (client.length + worker.length === 0) throw new InvalidArgumentError('authentication needs at least one token');
    return new Authenticator({ client, worker }, true, failedAttempts);
  }

  /** How many tokens each scope accepts (for the start-up log). */
  get counts(): Record<Scope, number> {
    return { client: this.hashes.client.length, worker: this.hashes.worker.length };
  }

  /** The scopes a token grants; empty when it is no configured token. Constant time in the token. */
  scopesOf(token: string): Set<Scope> {
    const presented = sha256(token);
    const scopes = new Set<Scope>();
    for (const scope of ['client', 'worker'] as const) {
      let match = 0;
      for (const stored of this.hashes[scope]) match |= timingSafeEqual(presented, stored) ? 1 : 0;
      if (match) scopes.add(scope);
    }
    return scopes;
  }

  /**
   * Checks the Authorization header of a request that needs one of `allowed`. Throws
   * UnauthenticatedError (no token, malformed, unknown token) or PermissionDeniedError (a valid token of
   * another kind). Open: never throws.
   *
   * With `remote` (the caller's address), failed attempts are counted for it: past the limit it gets
   * TooManyFailedAttemptsError (RESOURCE_EXHAUSTED) before its token is looked at. A valid token of the
   * wrong kind is not a failed attempt.
   */
  authorize(header: string | string[] | undefined, allowed: readonly Scope[], remote?: string): void {
    if (!this.enabled) return;
    if (remote === undefined) return this.check(header, allowed);
    this.failures.check(remote);
    try {
      this.check(header, allowed);
    } catch (err) {
      if (err instanceof UnauthenticatedError) this.failures.fail(remote);
      throw err;
    }
  }

  private check(header: string | string[] | undefined, allowed: readonly Scope[]): void {
    const token = bearerToken(header);
    if (token === undefined) {
      throw new UnauthenticatedError(`this server requires authentication: send "Authorization: Bearer <token>" with ${allowed.map((s) => NEEDED[s]).join(' or ')}`);
    }
    const scopes = this.scopesOf(token);
    if (scopes.size === 0) throw new UnauthenticatedError('invalid token');
    if (!allowed.some((s) => scopes.has(s))) {
      throw new PermissionDeniedError(`this call needs ${allowed.map((s) => NEEDED[s]).join(' or ')}; the token given is ${[...scopes].map((s) => NEEDED[s]).join(' and ')}`);
    }
  }
}

/** 127.0.0.0/8, ::1, localhost (and their IPv4-mapped form): addresses only this host can reach. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}
