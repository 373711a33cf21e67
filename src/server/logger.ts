/**
 * Structured logs (pino) to stderr: JSON lines for machines, or, on a terminal, one readable line each
 * (pino-pretty, loaded only then). Secrets never go into log fields; `redact` is the safety net for
 * whatever carries request headers or token fields by mistake.
 */
import { createRequire } from 'node:module';
import pino from 'pino';
import type { DestinationStream, Logger } from 'pino';
import type { LogFormat } from './defaults.js';

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
  'secret',
  '*.secret',
  'webhookSecret',
  '*.webhookSecret',
];

export { LOG_FORMATS, LOG_LEVELS } from './defaults.js';
export type { LogFormat } from './defaults.js';

export interface LoggerOptions {
  /** Default: REMEX_LOG_LEVEL, else info. */
  level?: string;
  format?: LogFormat;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? process.env.REMEX_LOG_LEVEL ?? 'info';
  const format = opts.format ?? 'auto';
  const pretty = format === 'pretty' || (format === 'auto' && process.stderr.isTTY === true);
  return pino({ level, base: { pid: process.pid }, redact: REDACT_PATHS }, pretty ? prettyStream() : pino.destination({ dest: 2, sync: false }));
}

/** One readable line per entry on stderr: time, level, message, then the fields (ids included). */
function prettyStream(): DestinationStream {
  const require = createRequire(import.meta.url);
  const pretty = require('pino-pretty') as (opts: Record<string, unknown>) => DestinationStream;
  return pretty({ destination: 2, sync: true, colorize: process.stderr.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' });
}
