/**
 * `GET /v1/executions`' query string → a JobQuery: which executions a listing returns, newest first, a page
 * at a time. `state` takes one state or a comma-separated list, and so does `platform` (aliases allowed); `label` (repeatable) `NAME=VALUE`, every
 * one must match; `name`; `since` a duration back from now (`4h`) or an ISO 8601 time; `limit` 1–1000
 * (default 50); `after` the `next` cursor of the page before.
 */
import { z } from 'zod';
import { parseDuration } from '../core/duration.js';
import { InvalidArgumentError } from '../core/errors.js';
import { parseLabels } from '../core/labels.js';
import { JOB_STATES } from '../core/model.js';
import { canonicalPlatform } from '../core/platform.js';
import type { JobState } from '../core/model.js';
import type { JobQuery } from '../store/ports.js';
import { parseWith } from './schemas.js';

export const DEFAULT_LIST_LIMIT = 50;
export const MAX_LIST_LIMIT = 1000;

const oneOrMany = z.union([z.string(), z.array(z.string()).max(64)]).optional();
const querySchema = z.strictObject({
  state: oneOrMany,
  platform: oneOrMany,
  label: oneOrMany,
  name: z.string().min(1).max(200).optional(),
  since: z.string().min(1).max(64).optional(),
  limit: z.string().regex(/^\d{1,4}$/, 'limit must be an integer from 1 to 1000').optional(),
  after: z.string().min(1).max(256).optional(),
});

export function parseExecutionQuery(raw: unknown, nowMs: number): JobQuery {
  const q = parseWith(querySchema, raw ?? {}, 'execution listing query');
  const limit = q.limit === undefined ? DEFAULT_LIST_LIMIT : Number(q.limit);
  if (limit < 1 || limit > MAX_LIST_LIMIT) throw new InvalidArgumentError(`limit must be an integer from 1 to ${MAX_LIST_LIMIT}`);
  const query: JobQuery = { limit };
  const list = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
  const states = list(q.state).flatMap((s) => s.split(',')).map((s) => s.trim()).filter((s) => s !== '');
  for (const s of states) {
    if (!(JOB_STATES as readonly string[]).includes(s)) throw new InvalidArgumentError(`state ${JSON.stringify(s)} is not one of ${JOB_STATES.join(', ')}`);
  }
  if (states.length > 0) query.states = states as JobState[];
  const platforms = list(q.platform).flatMap((s) => s.split(',')).map((s) => s.trim()).filter((s) => s !== '');
  // Aliases name the same triple (`arm64` is aarch64-linux-cpu); an unknown ISA is an error, not an empty page.
  if (platforms.length > 0) query.platforms = [...new Set(platforms.map(canonicalPlatform))];
  const labels = list(q.label);
  if (labels.length > 0) query.labels = parseLabels(labels, 'label');
  if (q.name !== undefined) query.name = q.name;
  if (q.since !== undefined) query.createdSinceMs = sinceMs(q.since, nowMs);
  if (q.after !== undefined) query.afterId = q.after;
  return query;
}

/** `4h` (back from now) or an ISO 8601 time. */
function sinceMs(text: string, nowMs: number): number {
  if (/^\d{4}-\d{2}-\d{2}/.test(text)) {
    const at = Date.parse(text);
    if (Number.isNaN(at)) throw new InvalidArgumentError(`since ${JSON.stringify(text)} is not an ISO 8601 time`);
    return at;
  }
  return nowMs - parseDuration(text, 'since');
}
