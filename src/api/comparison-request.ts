/**
 * `POST /v1/comparisons`: one program (one binary per platform) measured on several platforms. Each entry
 * is an ordinary execution request, built once; the runner submits it once per round. Everything that can
 * be refused is refused here, before any run starts: a platform no worker serves, an executable whose ELF
 * machine is not its entry's platform, a repeat count below 1.
 */
import { z } from 'zod';
import type { BlobStore } from '../cas/blob-store.js';
import type { ComparisonPlan } from '../compare/comparison.js';
import type { SubmitRun } from '../compare/runner.js';
import { InvalidArgumentError, UnsupportedExecutableError, UnsupportedPlatformError } from '../core/errors.js';
import { detectExecutable, EXECUTABLE_HEADER_BYTES } from '../core/executable-format.js';
import { canonicalPlatform } from '../core/platform.js';
import type { Scheduler } from '../scheduler/scheduler.js';
import { buildExecution, executionRequestSchema } from './execution-request.js';
import type { ExecutionPolicy } from './execution-request.js';
import { parseWith } from './schemas.js';

export const MAX_COMPARISON_ENTRIES = 16;
export const MAX_COMPARISON_REPEAT = 1000;
export const MAX_COMPARISON_WARMUP = 100;

const label = z.string().min(1).max(80).regex(/^[A-Za-z0-9_.#:+-]+$/, 'labels are letters, digits and _.#:+-');

export const comparisonRequestSchema = z.strictObject({
  entries: z
    .array(z.strictObject({ label: label.optional(), execution: executionRequestSchema.extend({ platform: z.string().min(1).max(64) }) }))
    .min(1)
    .max(MAX_COMPARISON_ENTRIES),
  repeat: z.number().int().min(1, 'repeat must be at least 1').max(MAX_COMPARISON_REPEAT).default(10),
  warmup: z.number().int().min(0).max(MAX_COMPARISON_WARMUP).default(1),
  /** A label or a platform; the first entry when absent. */
  baseline: z.string().min(1).max(80).optional(),
  allowDifferentOutput: z.boolean().default(false),
  /** Entries the client could not prepare (a source that does not compile for that platform), reported as such. */
  failedEntries: z.array(z.strictObject({ platform: z.string().min(1).max(64), label: label.optional(), reason: z.string().max(8192) })).max(MAX_COMPARISON_ENTRIES).default([]),
});

export type ComparisonRequest = z.infer<typeof comparisonRequestSchema>;

export interface PreparedComparison {
  plan: ComparisonPlan;
  submitters: Map<string, SubmitRun>;
}

/** Validates a comparison request against the fleet and the blobs, and builds each entry's execution once. */
export async function prepareComparison(body: unknown, deps: { scheduler: Scheduler; blobs: BlobStore; policy: ExecutionPolicy }): Promise<PreparedComparison> {
  const req = parseWith(comparisonRequestSchema, body, 'comparison request');
  const served = new Set((await deps.scheduler.status()).platforms.map((p) => p.platform));
  const seen = new Map<string, number>();
  const labelFor = (platform: string, given: string | undefined): string => {
    const count = (seen.get(platform) ?? 0) + 1;
    seen.set(platform, count);
    return given ?? (count === 1 ? platform : `${platform}#${count}`);
  };

  const entries: ComparisonPlan['entries'] = [];
  const unserved: string[] = [];
  for (const e of req.entries) {
    const platform = canonicalPlatform(e.execution.platform);
    if (!served.has(platform)) unserved.push(platform);
    entries.push({ label: labelFor(platform, e.label), platform });
  }
  if (unserved.length > 0) {
    throw new UnsupportedPlatformError(`no worker serves ${[...new Set(unserved)].join(', ')} (served: ${[...served].sort().join(', ') || 'none'}); nothing was run`, {
      details: { unserved, served: [...served].sort() },
    });
  }
  const failedEntries = req.failedEntries.map((f) => {
    const platform = canonicalPlatform(f.platform);
    return { platform, label: labelFor(platform, f.label), reason: f.reason };
  });
  const labels = [...entries, ...failedEntries].map((e) => e.label);
  if (new Set(labels).size !== labels.length) throw new InvalidArgumentError(`entry labels must be unique: ${labels.join(', ')}`);

  const baselineEntry = req.baseline === undefined ? entries[0]! : entries.find((e) => e.label === req.baseline) ?? entries.find((e) => e.platform === safeCanonical(req.baseline!));
  if (!baselineEntry) throw new InvalidArgumentError(`baseline ${req.baseline} is none of the entries (${entries.map((e) => e.label).join(', ')})`);

  const submitters = new Map<string, SubmitRun>();
  for (const [i, e] of req.entries.entries()) {
    const entry = entries[i]!;
    await assertMachineMatches(e.execution.executable, entry.platform, entry.label, deps.blobs);
    // Every run must run: never a cached result, never merged with another run.
    const built = await buildExecution({ ...e.execution, platform: entry.platform, doNotCache: true, skipCacheLookup: true }, deps.blobs, deps.policy);
    submitters.set(entry.label, async (meta) => (await deps.scheduler.submit({ ...built, instance: '', name: meta.name, labels: { ...built.labels, ...meta.labels } })).job);
  }
  return {
    plan: { entries, repeat: req.repeat, warmup: req.warmup, baseline: baselineEntry.label, allowDifferentOutput: req.allowDifferentOutput, failedEntries },
    submitters,
  };
}

function safeCanonical(text: string): string | undefined {
  try {
    return canonicalPlatform(text);
  } catch {
    return undefined;
  }
}

/** An ELF executable must be built for its entry's platform (a script or unknown format is left to run). */
async function assertMachineMatches(executable: { hash: string; sizeBytes: number }, platform: string, label: string, blobs: BlobStore): Promise<void> {
  if (!(await blobs.has(executable))) return; // buildExecution reports the missing blob
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of await blobs.getStream(executable, { offset: 0, limit: EXECUTABLE_HEADER_BYTES })) {
    chunks.push(Buffer.from(chunk));
    size += chunk.byteLength;
    if (size >= EXECUTABLE_HEADER_BYTES) break;
  }
  const info = detectExecutable(Buffer.concat(chunks));
  if (info.kind === 'elf' && info.platform && info.platform !== platform) {
    throw new UnsupportedExecutableError(`the executable given for ${label} is an ELF for ${info.platform}, not ${platform}; nothing was run`);
  }
}
