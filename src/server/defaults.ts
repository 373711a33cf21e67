/**
 * The defaults of `remex serve`'s and `remex worker`'s flags, in a module that loads nothing heavy: every
 * `remex` command builds its help from them, and only `serve` and `worker` load the server (a client
 * command starts in tens of milliseconds, not the ~0.7 s the server's modules take).
 */
import { availableParallelism, hostname } from 'node:os';
import { DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT, DEFAULT_LEASE_TIMEOUT_MS, DEFAULT_MAX_ATTEMPTS } from '../core/defaults.js';

/** The defaults of every flag of `remex serve`, as the CLI shows them. */
export const SERVE_DEFAULTS = Object.freeze({
  host: '127.0.0.1',
  port: DEFAULT_HTTP_PORT,
  dataDir: '.remex/data',
  grpcPort: DEFAULT_GRPC_PORT,
  leaseTimeoutSeconds: DEFAULT_LEASE_TIMEOUT_MS / 1000,
  maxAttempts: DEFAULT_MAX_ATTEMPTS,
  runDirectories: 'auto' as const,
});

export const WORKER_DEFAULTS = Object.freeze({
  name: `worker@${hostname()}`,
  workDir: '.remex/worker',
});

/** Slots of a worker (the local pool or `remex worker`) unless told: one per CPU. */
export function defaultSlots(): number {
  return availableParallelism();
}

/** `--log-level`'s choices (pino's levels). */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
/** `--log-format`'s choices; `auto`: readable lines when stderr is a terminal, JSON lines otherwise. */
export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];
