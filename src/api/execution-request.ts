/**
 * The HTTP front door's request: "run this executable with these files". It becomes the same
 * ExecutionSpec every front door builds: an input tree in the CAS, a Command, limits, and an action digest
 * over everything that decides the result (the cache and merge key).
 */
import { z } from 'zod';
import type { BlobStore } from '../cas/blob-store.js';
import { buildInputTree } from '../cas/tree.js';
import type { Digest } from '../core/digest.js';
import { checkCommandLine } from '../core/command-line.js';
import { digestOf } from '../core/digest.js';
import { InvalidArgumentError, MissingBlobsError, UnsupportedExecutableError } from '../core/errors.js';
import { detectExecutable, EXECUTABLE_HEADER_BYTES } from '../core/executable-format.js';
import type { ResourceLimits } from '../core/limits.js';
import type { ExecutionSpec } from '../core/model.js';
import { DEFAULT_LOG_CEILING_BYTES, DEFAULT_MAX_LOG_CEILING_BYTES } from '../core/model.js';
import { canonicalPlatform } from '../core/platform.js';
import { digest, hash, labels, parseWith, resourceLimits, sizeBytes } from './schemas.js';

/** Input files one HTTP execution request may name (its 32 MiB body would otherwise be the only bound). */
export const MAX_INPUT_FILES = 10_000;

export const executionRequestSchema = z.strictObject({
  /** Optional when the executable is an ELF binary: its header tells the platform. */
  platform: z.string().min(1).max(64).optional(),
  executable: digest,
  /** File name of the executable inside the sandbox (argv[0] is `./<name>`). */
  executableName: z.string().min(1).max(255).default('program'),
  /** Extra input files: path relative to the working directory → digest. */
  files: z
    .record(z.string().min(1).max(4096), z.strictObject({ hash, sizeBytes, executable: z.boolean().default(false) }))
    .superRefine((files, ctx) => {
      const n = Object.keys(files).length;
      if (n > MAX_INPUT_FILES) ctx.addIssue({ code: 'custom', message: `at most ${MAX_INPUT_FILES} files per execution, not ${n} (pack more into an archive, or use REAPI)` });
    })
    .default({}),
  args: z.array(z.string().max(128 * 1024)).max(4096).default([]),
  stdin: z.string().max(16 * 1024 * 1024).optional(),
  stdinDigest: digest.optional(),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'environment variable names are [A-Za-z_][A-Za-z0-9_]*'), z.string()).default({}),
  timeoutMs: z.number().int().positive().optional(),
  /** How long past timeoutMs the failsafe layers wait before they end the run as emergency_stopped (server default otherwise). */
  failsafeMs: z.number().int().positive().max(7 * 24 * 3_600_000).optional(),
  limits: resourceLimits.partial().default({}),
  /** Files to collect after the run, relative to the working directory. */
  outputPaths: z.array(z.string().min(1).max(4096)).max(1024).default([]),
  priority: z.number().int().min(-1000).max(1000).default(0),
  doNotCache: z.boolean().default(false),
  skipCacheLookup: z.boolean().default(false),
  /** The submitter's name for the job (`stream-c7g`) and labels (`suite=stream`): listed and selected by, not part of the action. */
  name: z.string().min(1).max(200).optional(),
  labels: labels.optional(),
  /** Give the program a progress channel (`REMEX_PROGRESS`); `remex submit` asks for one. */
  progress: z.boolean().default(false),
  /** Give the program a results directory (`REMEX_RESULTS`), collected whichever way the run ends. */
  results: z.boolean().default(false),
  /** Stream stdout and stderr live and keep them in the CAS up to a ceiling (a long job); `remex submit` asks. */
  logs: z.boolean().default(false),
  /** The live log's ceiling per stream (bytes); implies `logs`. Default 256 MiB, at most the server's maximum. */
  logCeilingBytes: z.number().int().positive().optional(),
  /** Run at most once: when its worker is lost the job fails as LOST instead of running again. */
  noRetry: z.boolean().default(false),
  /** Where the server POSTs the final result, signed (a webhook): an http(s) URL. */
  notify: z
    .string()
    .max(2048)
    .refine((u) => URL.canParse(u) && /^https?:$/.test(new URL(u).protocol), 'notify must be an http:// or https:// URL')
    .optional(),
});

export type ExecutionRequest = z.infer<typeof executionRequestSchema>;

/** What the server allows; requests above a maximum are refused, not silently lowered. */
export interface ExecutionPolicy {
  defaultTimeoutMs: number;
  maxTimeoutMs: number;
  defaultLimits: ResourceLimits;
  maxLimits: ResourceLimits;
  /** The highest live-log ceiling a job may ask for (DEFAULT_MAX_LOG_CEILING_BYTES when absent). */
  maxLogCeilingBytes?: number;
}

export interface BuiltExecution {
  actionDigest: Digest;
  spec: ExecutionSpec;
  priority: number;
  skipCacheLookup: boolean;
  name?: string;
  labels?: Record<string, string>;
  noRetry?: boolean;
  notifyUrl?: string;
}

export function parseExecutionRequest(body: unknown): ExecutionRequest {
  return parseWith(executionRequestSchema, body, 'execution request');
}

export async function buildExecution(req: ExecutionRequest, blobs: BlobStore, policy: ExecutionPolicy): Promise<BuiltExecution> {
  if (req.stdin !== undefined && req.stdinDigest !== undefined) throw new InvalidArgumentError('give stdin or stdinDigest, not both');
  if (req.executableName.includes('/') || req.executableName === '.' || req.executableName === '..') {
    throw new InvalidArgumentError('executableName must be a plain file name');
  }
  const timeoutMs = req.timeoutMs ?? policy.defaultTimeoutMs;
  if (timeoutMs > policy.maxTimeoutMs) throw new InvalidArgumentError(`timeoutMs ${timeoutMs} is above this server's maximum ${policy.maxTimeoutMs}`);
  const effective: ResourceLimits = { ...policy.defaultLimits, ...req.limits };
  const logs = req.logs || req.logCeilingBytes !== undefined ? { ceilingBytes: logCeilingOf(req.logCeilingBytes, policy) } : undefined;
  for (const key of Object.keys(effective) as Array<keyof ResourceLimits>) {
    if (effective[key] > policy.maxLimits[key]) {
      throw new InvalidArgumentError(`limits.${key} ${effective[key]} is above this server's maximum ${policy.maxLimits[key]}`);
    }
  }

  checkCommandLine(
    [`./${req.executableName}`, ...req.args],
    Object.entries(req.env).map(([name, value]) => ({ name, value })),
  );

  const inputs = [
    { path: req.executableName, digest: req.executable, isExecutable: true },
    ...Object.entries(req.files).map(([path, f]) => ({ path, digest: { hash: f.hash, sizeBytes: f.sizeBytes }, isExecutable: f.executable })),
  ];
  const missing = await blobs.findMissing([...inputs.map((i) => i.digest), ...(req.stdinDigest ? [req.stdinDigest] : [])]);
  if (missing.length > 0) throw new MissingBlobsError(missing);

  const platform = req.platform !== undefined ? canonicalPlatform(req.platform) : await platformOf(req.executable, blobs);
  const inputRootDigest = await buildInputTree(inputs, blobs);

  let stdinDigest: Digest | null = req.stdinDigest ?? null;
  if (req.stdin !== undefined && req.stdin !== '') {
    const bytes = Buffer.from(req.stdin, 'utf8');
    stdinDigest = digestOf(bytes);
    await blobs.put(stdinDigest, bytes);
  }

  const spec: ExecutionSpec = {
    platform,
    command: {
      arguments: [`./${req.executableName}`, ...req.args],
      environmentVariables: Object.entries(req.env)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([name, value]) => ({ name, value })),
      outputPaths: [...req.outputPaths].sort(),
      workingDirectory: '',
    },
    inputRootDigest,
    stdinDigest,
    timeoutMs,
    limits: effective,
    doNotCache: req.doNotCache,
    ...(req.progress ? { progress: true } : {}),
    ...(req.results ? { results: true } : {}),
    ...(logs ? { logs } : {}),
    ...(req.failsafeMs !== undefined ? { failsafeMs: req.failsafeMs } : {}),
  };
  return {
    actionDigest: actionDigestOf(spec),
    spec,
    priority: req.priority,
    skipCacheLookup: req.skipCacheLookup,
    ...(req.name !== undefined ? { name: req.name } : {}),
    ...(req.labels !== undefined ? { labels: req.labels } : {}),
    ...(req.noRetry ? { noRetry: true } : {}),
    ...(req.notify !== undefined ? { notifyUrl: req.notify } : {}),
  };
}

/**
 * The cache and merge key of an HTTP-submitted action: every field that decides the result, in a
 * canonical encoding (fixed key order). doNotCache is left out: it changes what is stored, not the result.
 */
export function actionDigestOf(spec: ExecutionSpec): Digest {
  const key = {
    v: 1,
    platform: spec.platform,
    command: spec.command,
    inputRootDigest: spec.inputRootDigest,
    stdinDigest: spec.stdinDigest,
    timeoutMs: spec.timeoutMs,
    // The channel changes what the program sees (an environment variable, a file): part of the key when on.
    ...(spec.progress ? { progress: true } : {}),
    ...(spec.results ? { results: true } : {}),
    // What is kept of the output depends on it (its ceiling, not limits.outputBytes).
    ...(spec.logs ? { logs: spec.logs.ceilingBytes } : {}),
    limits: [
      spec.limits.memoryBytes,
      spec.limits.processes,
      spec.limits.cpuTimeMs,
      spec.limits.fileSizeBytes,
      spec.limits.outputBytes,
      spec.limits.tmpBytes,
      spec.limits.openFiles,
    ],
  };
  return digestOf(JSON.stringify(key));
}

function logCeilingOf(asked: number | undefined, policy: ExecutionPolicy): number {
  const max = policy.maxLogCeilingBytes ?? DEFAULT_MAX_LOG_CEILING_BYTES;
  const ceiling = asked ?? Math.min(DEFAULT_LOG_CEILING_BYTES, max);
  if (ceiling > max) throw new InvalidArgumentError(`logCeilingBytes ${ceiling} is above this server's maximum ${max}`);
  return ceiling;
}

async function platformOf(executable: Digest, blobs: BlobStore): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of await blobs.getStream(executable, { offset: 0, limit: EXECUTABLE_HEADER_BYTES })) {
    chunks.push(chunk);
    size += chunk.byteLength;
    if (size >= EXECUTABLE_HEADER_BYTES) break;
  }
  const info = detectExecutable(Buffer.concat(chunks));
  if (!info.platform) {
    throw new UnsupportedExecutableError(`cannot tell the platform of this executable (${info.kind}); give "platform" explicitly`);
  }
  return info.platform;
}
