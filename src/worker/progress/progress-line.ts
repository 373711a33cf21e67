/**
 * The parser of one line a program writes to its progress channel (`$REMEX_PROGRESS`). Pure: no I/O, never
 * throws, whatever the input; every line is either an update within the event bus's bounds (so it can become a
 * ProgressEvent without another check failing) or a rejection with a reason a person can act on.
 *
 * Two forms:
 * - `<percent>[%][ <message>]`: `42`, `99.5`, `42% compiling stage 3`. The percent is decimal digits with an
 *   optional fraction (no sign, no exponent), 0 to 100; the message is the rest of the line after the blanks
 *   that follow the percent, trailing blanks removed.
 * - a JSON object with the keys `percent`, `message` and `metrics`, each optional but not all absent:
 *   `{"percent":42,"message":"…","metrics":{"triad_mbps":48532.5}}`. A benchmark may report figures
 *   before it knows how far it is, so `percent` is not required when `message` or `metrics` is given (the
 *   channel carries the last percent forward). Any other key is rejected rather than ignored: a typo such
 *   as `precent` should show as a malformed line, not as progress that silently never moves.
 *
 * An empty message (`""`, or nothing after the percent) is the same as none; empty `metrics` are the same as
 * none. Messages hold no control characters (they are shown in terminals: an escape sequence must not
 * reach one); `-0` is read as 0.
 */
import { MAX_PROGRESS_MESSAGE_CHARS, MAX_PROGRESS_METRICS, METRIC_NAME } from '../../events/bus-events.js';

/** What one line says. At least one field is present. */
export interface ProgressUpdate {
  /** 0 to 100. */
  readonly percent?: number;
  /** 1 to {@link MAX_PROGRESS_MESSAGE_CHARS} characters, no control characters. */
  readonly message?: string;
  /** 1 to {@link MAX_PROGRESS_METRICS} entries; names match {@link METRIC_NAME}; values finite. */
  readonly metrics?: Readonly<Record<string, number>>;
}

export type ProgressLineResult = { readonly ok: true; readonly update: ProgressUpdate } | { readonly ok: false; readonly reason: string };

/**
 * The longest line parsed, in UTF-16 code units. Room for the largest valid JSON line: 16 metrics with
 * 64-character names and long numbers (about 1.6 K), a 256-character message written as `\uXXXX` escapes
 * (about 1.5 K), and the keys.
 */
export const MAX_PROGRESS_LINE_CHARS = 4096;
/** A valid line nests an object in an object (`metrics`); anything deeper is refused before JSON.parse. */
const MAX_JSON_DEPTH = 2;

const SIMPLE_LINE = /^(\d+(?:\.\d+)?)(%?)(?:[ \t]+(.*))?$/s;
// C0 controls, DEL and C1 controls; a tab is allowed in a message.
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTER = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f]/;
const JSON_KEYS: ReadonlySet<string> = new Set(['percent', 'message', 'metrics']);

/** Parses one line, without its line terminator (a trailing `\r` is tolerated). Never throws. */
export function parseProgressLine(line: string): ProgressLineResult {
  if (typeof line !== 'string') return reject('not a string');
  if (line.length > MAX_PROGRESS_LINE_CHARS) return reject(`line longer than ${MAX_PROGRESS_LINE_CHARS} characters`);
  // A byte-order mark starts the first line of files some editors and shells (PowerShell) write.
  const text = line.replace(/^\uFEFF?[ \t]+|^\uFEFF|[ \t\r]+$/g, '');
  if (text === '') return reject('empty line');
  if (text.startsWith('{')) return parseJsonLine(text);
  if (text.startsWith('[') || text.startsWith('"')) return reject('JSON progress must be an object');
  return parseSimpleLine(text);
}

/**
 * The JSON line that {@link parseProgressLine} reads back as `update` (the form that carries every field
 * exactly). For tests and for tools that write progress.
 */
export function formatProgressLine(update: ProgressUpdate): string {
  const out: { percent?: number; message?: string; metrics?: Readonly<Record<string, number>> } = {};
  if (update.percent !== undefined) out.percent = update.percent;
  if (update.message !== undefined) out.message = update.message;
  if (update.metrics !== undefined) out.metrics = update.metrics;
  return JSON.stringify(out);
}

function parseSimpleLine(text: string): ProgressLineResult {
  const m = SIMPLE_LINE.exec(text);
  if (m === null) {
    const first = text.split(/[ \t]/, 1)[0] ?? '';
    return reject(`expected a percentage (0 to 100) or a JSON object, got ${quote(first)}`);
  }
  const percent = checkPercent(Number(m[1]));
  if (typeof percent === 'string') return reject(percent);
  const message = m[3] ?? '';
  if (message === '') return { ok: true, update: { percent } };
  const bad = checkMessage(message);
  if (bad !== null) return reject(bad);
  return { ok: true, update: { percent, message } };
}

function parseJsonLine(text: string): ProgressLineResult {
  const depthProblem = jsonDepthProblem(text);
  if (depthProblem !== null) return reject(depthProblem);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return reject(`invalid JSON: ${err instanceof Error ? err.message.slice(0, 120) : 'cannot parse'}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return reject('JSON progress must be an object');
  const fields = value as Record<string, unknown>;
  for (const key of Object.keys(fields)) {
    if (!JSON_KEYS.has(key)) return reject(`unknown key ${quote(key)}: expected percent, message or metrics`);
  }
  const update: { percent?: number; message?: string; metrics?: Record<string, number> } = {};
  if (fields.percent !== undefined) {
    if (typeof fields.percent !== 'number') return reject('percent must be a number');
    const percent = checkPercent(fields.percent);
    if (typeof percent === 'string') return reject(percent);
    update.percent = percent;
  }
  if (fields.message !== undefined) {
    if (typeof fields.message !== 'string') return reject('message must be a string');
    if (fields.message !== '') {
      const bad = checkMessage(fields.message);
      if (bad !== null) return reject(bad);
      update.message = fields.message;
    }
  }
  if (fields.metrics !== undefined) {
    const metrics = readMetrics(fields.metrics);
    if (typeof metrics === 'string') return reject(metrics);
    if (metrics !== null) update.metrics = metrics;
  }
  if (update.percent === undefined && update.message === undefined && update.metrics === undefined) {
    return reject('nothing to report: give percent, message or metrics');
  }
  return { ok: true, update };
}

/** The percent, or why it is refused. */
function checkPercent(n: number): number | string {
  if (!Number.isFinite(n)) return 'percent must be a finite number';
  if (n < 0 || n > 100) return `percent ${n} is not between 0 and 100`;
  return n === 0 ? 0 : n;
}

function checkMessage(message: string): string | null {
  if (message.length > MAX_PROGRESS_MESSAGE_CHARS) return `message longer than ${MAX_PROGRESS_MESSAGE_CHARS} characters`;
  if (CONTROL_CHARACTER.test(message)) return 'message contains control characters';
  return null;
}

/** The metrics (null when empty), or why they are refused. */
function readMetrics(raw: unknown): Record<string, number> | null | string {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'metrics must be an object';
  const entries = Object.entries(raw as Record<string, unknown>);
  if (entries.length === 0) return null;
  if (entries.length > MAX_PROGRESS_METRICS) return `at most ${MAX_PROGRESS_METRICS} metrics`;
  const metrics: Record<string, number> = {};
  for (const [name, value] of entries) {
    // METRIC_NAME starts with a letter, so `__proto__` is refused here and assigning to a plain object is safe.
    if (!METRIC_NAME.test(name)) return `metric name ${quote(name)} must match ${METRIC_NAME.source}`;
    if (typeof value !== 'number' || !Number.isFinite(value)) return `metric ${name} must be a finite number`;
    metrics[name] = value === 0 ? 0 : value;
  }
  return metrics;
}

/**
 * Why `text` nests deeper than a valid line can, or null. A scan outside strings, so a deep `[[[[…` is
 * refused with a clear reason and JSON.parse never builds it.
 */
function jsonDepthProblem(text: string): string | null {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > MAX_JSON_DEPTH) return `JSON nested deeper than ${MAX_JSON_DEPTH} levels`;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
  return null;
}

function quote(s: string): string {
  return JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}…` : s);
}

function reject(reason: string): ProgressLineResult {
  return { ok: false, reason };
}
