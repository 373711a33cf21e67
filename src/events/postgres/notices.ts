/**
 * What a NOTIFY between controllers carries, encoded and decoded. A payload is at most
 * {@link MAX_PAYLOAD_BYTES} (PostgreSQL refuses 8000 bytes or more):
 *
 * - a job change: `{o, id, s, p?, t?}` — the publishing bus, the job's id, its state, when it waits for a
 *   worker its platform, and when it was published (epoch ms, for the bus's lag); the receiver re-reads the
 *   job from the shared store (a job is too big to carry).
 *   This is the shape of the releases before event kinds, which still read it.
 * - any other event: `{o, k, …}` — the event itself, its kind in `k`, a log chunk's bytes in base64. It
 *   has no `id`, so a controller of an earlier release ignores it. A log chunk too big for one payload is
 *   cut into consecutive chunks that each fit (offsets kept): decision 0019.
 */
import type { JobState } from '../../core/model.js';
import { checkEvent, EVENT_KINDS } from '../bus-events.js';
import type { BusEvent } from '../bus-events.js';

/** PostgreSQL refuses NOTIFY payloads of 8000 bytes or more. */
export const MAX_PAYLOAD_BYTES = 7_999;

/** A job change as announced: the receiver reads the job itself. */
export interface JobNotice {
  o: string;
  id: string;
  s: JobState;
  p?: string;
  /** When it was published, epoch ms (absent from earlier releases' notices). */
  t?: number;
}

export type OtherEvent = Exclude<BusEvent, { kind: 'job' }>;

export type Decoded =
  | { type: 'job'; origin: string; id: string; state: unknown; platform: unknown; sentAtMs: unknown }
  | { type: 'event'; origin: string; event: OtherEvent }
  /** A notice of a kind this release knows that fails its checks: worth reporting, unlike one of an unknown kind. */
  | { type: 'invalid'; origin: string; kind: string; reason: string };

const KINDS_IN_NOTICES: ReadonlySet<string> = new Set(EVENT_KINDS.filter((kind) => kind !== 'job'));

export function encodeJobNotice(notice: JobNotice): string | undefined {
  const payload = JSON.stringify(notice);
  return Buffer.byteLength(payload) <= MAX_PAYLOAD_BYTES ? payload : undefined;
}

/**
 * The payloads announcing a progress, log or worker event, in order; a log chunk becomes as many as its
 * bytes need. Undefined when even an empty chunk of it would not fit (ids are bounded, so never in practice).
 */
export function encodeEvent(origin: string, event: OtherEvent): string[] | undefined {
  if (event.kind !== 'log') {
    const payload = JSON.stringify({ o: origin, k: event.kind, ...withoutKind(event) });
    return Buffer.byteLength(payload) <= MAX_PAYLOAD_BYTES ? [payload] : undefined;
  }
  const data = Buffer.from(event.data.buffer, event.data.byteOffset, event.data.byteLength);
  const piece = (offset: number, bytes: Buffer): string => JSON.stringify({ o: origin, k: 'log', ...withoutKind(event), offset, data: bytes.toString('base64') });
  // The envelope with the largest offset any piece has: the room left for base64, 4 characters per 3 bytes.
  const room = MAX_PAYLOAD_BYTES - Buffer.byteLength(piece(event.offset + data.length, Buffer.alloc(0)));
  const bytesPerPiece = Math.floor(room / 4) * 3;
  if (bytesPerPiece <= 0) return undefined;
  const payloads: string[] = [];
  for (let at = 0; at < data.length; at += bytesPerPiece) payloads.push(piece(event.offset + at, data.subarray(at, at + bytesPerPiece)));
  return payloads;
}

/**
 * A payload from the channel, checked. Undefined for one that is not a remex notice, or of a kind this
 * release does not know (a later release's, during a rolling upgrade: ignored as the job notices' readers
 * ignore these).
 */
export function decodeNotice(payload: string): Decoded | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(payload);
  } catch {
    return undefined;
  }
  if (typeof raw !== 'object' || raw === null) return undefined;
  const { o, k, id, s, p, t, ...rest } = raw as Record<string, unknown>;
  if (typeof o !== 'string') return undefined;
  if (k === undefined) return typeof id === 'string' ? { type: 'job', origin: o, id, state: s, platform: p, sentAtMs: t } : undefined;
  if (typeof k !== 'string' || !KINDS_IN_NOTICES.has(k)) return undefined;
  const invalid = (reason: string): Decoded => ({ type: 'invalid', origin: o, kind: k, reason });
  const fields: Record<string, unknown> = { ...rest, kind: k };
  // `s`, `p`, `t` and `id` are a job notice's names; no other kind uses them, so they are not put back.
  if (k === 'log') {
    if (typeof fields.data !== 'string') return invalid('data is not base64 text');
    fields.data = Buffer.from(fields.data, 'base64');
  }
  const event = fields as unknown as OtherEvent;
  try {
    checkEvent(event);
  } catch (err) {
    return invalid(err instanceof Error ? err.message : String(err));
  }
  return { type: 'event', origin: o, event };
}

/** The event's own fields, without its kind (the notice's `k`) nor a log chunk's bytes (encoded apart). */
function withoutKind(event: OtherEvent): Record<string, unknown> {
  const { kind: _kind, ...rest } = event as OtherEvent & Record<string, unknown>;
  if (event.kind === 'log') delete rest.data;
  return rest;
}
