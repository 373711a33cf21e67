/**
 * The wire shapes the HTTP door validates (zod), each written once: digests, limits, run reports, job
 * failures, shared by the execution request (`execution-request.ts`), the blob routes and the worker
 * protocol routes (`http/`). Rules that are the domain's own (what a hash is, the limit kinds, the failure
 * codes) come from core; this module only says how JSON carries them. `parseWith` turns a refusal into an
 * InvalidArgumentError naming every issue, so every route reports bad input alike.
 *
 * It lives in api/, not core/: only the front doors parse untrusted JSON, and core stays free of a
 * validation library (decision 0018).
 */
import { z } from 'zod';
import { HASH_RE } from '../core/digest.js';
import { InvalidArgumentError, isJobFailureCode } from '../core/errors.js';
import { checkLabels } from '../core/labels.js';
import { LIMIT_KINDS } from '../core/limits.js';
import { MAX_PROGRESS_HISTORY } from '../core/model.js';
import { MAX_PROGRESS_MESSAGE_CHARS, MAX_PROGRESS_METRICS, METRIC_NAME } from '../events/bus-events.js';
import type { JobFailure } from '../core/model.js';

export const hash = z.string().regex(HASH_RE, 'hash must be 64 lower-case hex characters (SHA-256)');
export const sizeBytes = z.number().int().nonnegative();
export const digest = z.strictObject({ hash, sizeBytes });

/** At most this many digests per find-missing call. */
export const MAX_DIGESTS_PER_LIST = 100_000;
export const digestList = z.strictObject({ digests: z.array(digest).max(MAX_DIGESTS_PER_LIST) });

/** A request's limits, each optional (the server's defaults fill the rest). */
export const resourceLimits = z.strictObject({
  memoryBytes: z.number().int().positive(),
  processes: z.number().int().positive(),
  cpuTimeMs: z.number().int().positive(),
  fileSizeBytes: z.number().int().nonnegative(),
  outputBytes: z.number().int().nonnegative(),
  tmpBytes: z.number().int().nonnegative(),
  openFiles: z.number().int().positive(),
});

export const limitKind = z.enum(LIMIT_KINDS);

/**
 * The worker protocol's shapes below (a run report, a failure, progress) are plain objects: fields this
 * server does not know — a newer worker's — are accepted and dropped, so workers can be upgraded before
 * their server. Known fields keep their types and bounds, and the body limit bounds the rest.
 */
const wireDigest = z.object({ hash, sizeBytes });

const outputStream = z.object({ digest: wireDigest, inlineBase64: z.string().nullable(), totalBytes: z.number().int().nonnegative(), truncated: z.boolean() });

/** A worker's RunReport (core/model.ts). */
export const runReport = z.object({
  exitCode: z.number().int().nullable(),
  signal: z.string().nullable(),
  timedOut: z.boolean(),
  limitExceeded: limitKind.nullable(),
  stdout: outputStream,
  stderr: outputStream,
  outputFiles: z.array(z.object({ path: z.string(), digest: wireDigest, isExecutable: z.boolean() })),
  outputDirectories: z.array(z.object({ path: z.string(), treeDigest: wireDigest })).optional(),
  wallTimeMs: z.number().nonnegative(),
  cpuTimeMs: z.number().nonnegative(),
  maxRssKb: z.number().nonnegative(),
  emulated: z.boolean(),
  worker: z.string(),
  host: z
    .strictObject({
      cpuModel: z.string().max(256),
      cores: z.number().int().nonnegative(),
      memoryBytes: z.number().nonnegative(),
      kernel: z.string().max(256),
      slots: z.number().int().positive(),
      pricePerHour: z.number().nonnegative().finite().nullable(),
    })
    .optional(),
  times: z
    .strictObject({
      stagingStartedAtMs: z.number().nonnegative().finite(),
      stagedAtMs: z.number().nonnegative().finite(),
      programStartedAtMs: z.number().nonnegative().finite(),
      programEndedAtMs: z.number().nonnegative().finite(),
      outputsStoredAtMs: z.number().nonnegative().finite(),
    })
    .optional(),
});

/**
 * A worker's JobFailure. A code this server does not know (a newer worker's) is kept in the message and
 * stored as INTERNAL: the job still ends with the worker's words, and every failure stored is typed.
 */
export const jobFailure = z
  .strictObject({ code: z.string(), message: z.string() })
  .transform(({ code, message }): JobFailure => (isJobFailureCode(code) ? { code, message } : { code: 'INTERNAL', message: `${code}: ${message}` }));

/** A running job's progress as a worker reports it, within the event bus's bounds. */
export const jobProgress = z.object({
  percent: z.number().min(0).max(100).optional(),
  message: z.string().max(MAX_PROGRESS_MESSAGE_CHARS).optional(),
  metrics: z
    .record(z.string().regex(METRIC_NAME, 'metric names are a letter then letters, digits, _ . : -'), z.number().finite())
    .refine((m) => Object.keys(m).length <= MAX_PROGRESS_METRICS, `at most ${MAX_PROGRESS_METRICS} metrics`)
    .optional(),
  atMs: z.number().int().nonnegative(),
  history: z.array(z.object({ percent: z.number().min(0).max(100), atMs: z.number().int().nonnegative() })).max(MAX_PROGRESS_HISTORY),
});

/** Labels (`{"suite": "stream"}`), as core/labels.ts defines them. */
export const labels = z
  .record(z.string(), z.string())
  .superRefine((value, ctx) => {
    try {
      checkLabels(value);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
    }
  });

/** Validates `body`; an InvalidArgumentError names every issue (in the message and in `details.issues`). */
export function parseWith<T>(schema: z.ZodType<T>, body: unknown, what: string): T {
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((i) => ({ path: i.path.map(String).join('.'), message: i.message }));
  throw new InvalidArgumentError(`invalid ${what}: ${issues.map((i) => `${i.path || '(body)'}: ${i.message}`).join('; ')}`, { details: { issues } });
}
