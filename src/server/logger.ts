/** Structured logs (pino) to stderr. Secrets never go into log fields; `redact` is the safety net. */
import pino from 'pino';
import type { Logger } from 'pino';

export function createLogger(level = process.env.REMEX_LOG_LEVEL ?? 'info'): Logger {
  return pino(
    { level, base: { pid: process.pid }, redact: ['req.headers.authorization', '*.token', 'token'] },
    pino.destination({ dest: 2, sync: false }),
  );
}
