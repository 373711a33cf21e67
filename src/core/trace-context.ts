/**
 * W3C Trace Context (`traceparent: 00-<trace id>-<parent id>-<flags>`): an execution keeps the trace of
 * the request that submitted it — from an HTTP header or gRPC metadata, or a new trace when none came or
 * it was malformed (as the W3C recommendation says: never an error) — and carries it to the worker and into
 * every log line about it. No I/O but random ids.
 */
import { randomBytes } from 'node:crypto';

export interface TraceContext {
  /** The header value, as carried on: `00-<traceId>-<spanId>-<flags>`. */
  traceparent: string;
  /** 32 lower-case hex digits. */
  traceId: string;
  /** The caller's span (the parent of what remex does), 16 lower-case hex digits. */
  spanId: string;
  sampled: boolean;
}

const TRACEPARENT_RE = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

/** The trace context of a `traceparent` value; undefined when absent or malformed. */
export function parseTraceparent(value: string | readonly string[] | undefined): TraceContext | undefined {
  const text = (Array.isArray(value) ? value[0] : value) as string | undefined;
  if (typeof text !== 'string' || text.length > 512) return undefined;
  const m = TRACEPARENT_RE.exec(text.trim().toLowerCase());
  if (!m) return undefined;
  const [, version, traceId, spanId, flags, rest] = m as unknown as [string, string, string, string, string, string | undefined];
  // Version ff is invalid; version 00 has nothing after the flags; ids of zeros are invalid.
  if (version === 'ff' || (version === '00' && rest !== undefined) || traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined;
  const sampled = (parseInt(flags, 16) & 1) === 1;
  return { traceparent: `00-${traceId}-${spanId}-${flags}`, traceId, spanId, sampled };
}

/** A new trace, for a request that brought none (not sampled: nobody asked to record it). */
export function newTraceContext(): TraceContext {
  const traceId = randomBytes(16).toString('hex');
  const spanId = randomBytes(8).toString('hex');
  return { traceparent: `00-${traceId}-${spanId}-00`, traceId, spanId, sampled: false };
}

/** The request's trace context, or a new one. */
export function traceContextOf(value: string | readonly string[] | undefined): TraceContext {
  return parseTraceparent(value) ?? newTraceContext();
}

/** The trace id of a stored `traceparent`, for log lines; undefined when there is none. */
export function traceIdOf(traceparent: string | undefined): string | undefined {
  return traceparent !== undefined ? parseTraceparent(traceparent)?.traceId : undefined;
}
