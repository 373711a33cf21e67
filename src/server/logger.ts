/**
 * Structured logs (pino) to stderr. Secrets never go into log fields; `redact` is the safety net for
 * whatever carries request headers or token fields by mistake.
 */
import pino from 'pino';
import type { Logger } from 'pino';

/** Log paths that could hold a bearer token; their values are replaced by [Redacted]. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  '*.headers.authorization',
  'authorization',
  '*.authorization',
  'metadata.authorization',
  'token',
  '*.token',
  'tokens',
  '*.tokens',
];

export function createLogger(level = process.env.REMEX_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { pid: process.pid }, redact: REDACT_PATHS }, pino.destination({ dest: 2, sync: false }));
}
