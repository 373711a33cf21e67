/**
 * The autoscaler's configuration (`remex serve --autoscale FILE`, `remex autoscale simulate --config FILE`):
 * JSON or YAML, validated once at start by zod, with every default named here. An invalid file is refused
 * before anything starts, and the error says where (`pools[1].maxWorkers: …`). Units are in the names.
 */
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { InvalidArgumentError } from '../core/errors.js';
import { checkLabels } from '../core/labels.js';
import { canonicalPlatform } from '../core/platform.js';

export const DEFAULT_DECISION_INTERVAL_SECONDS = 10;
export const DEFAULT_LEADER_LEASE_SECONDS = 30;
export const DEFAULT_STARTUP_SECONDS = 20;
export const DEFAULT_REGISTER_TIMEOUT_SECONDS = 120;
export const DEFAULT_COMMAND_TIMEOUT_SECONDS = 60;
export const DEFAULT_COMMAND_ATTEMPTS = 4;

/**
 * The policy's knobs. The utilisation thresholds default tighter than the issue's example (75 % / 25 %):
 * a steady pool sits between them, and billing at most 1.2× the jobs' run time needs it above 83 % busy
 * (decision 0031).
 */
export const DEFAULT_POLICY_KNOBS = Object.freeze({
  /** `backlog`: target tracking only; `predictive`: also exponential smoothing, trend and Little's law. */
  mode: 'predictive' as 'backlog' | 'predictive',
  /** Target tracking: queued jobs each worker may have waiting. */
  targetBacklogPerWorker: 3,
  /** The predicted load fills this share of the slots (Little's law sizing). */
  targetUtilization: 0.9,
  /** Hysteresis: scale up only when busy (now or predicted) above this share of the slots, or a backlog waits… */
  scaleUpUtilization: 0.95,
  /** …and down only when busy (now and predicted) below this one, with nothing queued. */
  scaleDownUtilization: 0.85,
  scaleUpCooldownSeconds: 20,
  /** Counted from the last change either way: a pool that just grew does not shrink at once. */
  scaleDownCooldownSeconds: 60,
  /** A shrink goes no lower than the highest sizing of this many seconds: a shorter dip is not followed. */
  scaleDownStabilizationSeconds: 600,
  maxStepUp: 10,
  maxStepDown: 10,
  /** No job queued or running for this long: the pool goes to minWorkers at once (0: scale to zero). */
  idleToZeroSeconds: 120,
  /** Exponential smoothing of the arrival rate (0 < α ≤ 1; higher follows faster). */
  smoothingAlpha: 0.1,
  /** Samples the trend's least-squares slope and the busy average look back over. */
  windowSeconds: 300,
  /** The service time assumed until jobs have completed (seconds). */
  defaultServiceSeconds: 10,
});

export type PolicyKnobs = { -readonly [K in keyof typeof DEFAULT_POLICY_KNOBS]: (typeof DEFAULT_POLICY_KNOBS)[K] };

const nonNegative = (what: string) => z.number({ error: `${what} must be a number` }).finite().nonnegative({ error: `${what} must be ≥ 0` });
const positive = (what: string) => z.number({ error: `${what} must be a number` }).finite().positive({ error: `${what} must be > 0` });
const share = (what: string) => z.number().gt(0, { error: `${what} must be in (0, 1]` }).lte(1, { error: `${what} must be in (0, 1]` });

const policySchema = z
  .strictObject({
    mode: z.enum(['backlog', 'predictive']),
    targetBacklogPerWorker: positive('targetBacklogPerWorker'),
    targetUtilization: share('targetUtilization'),
    scaleUpUtilization: share('scaleUpUtilization'),
    scaleDownUtilization: z.number().min(0).lt(1),
    scaleUpCooldownSeconds: nonNegative('scaleUpCooldownSeconds'),
    scaleDownCooldownSeconds: nonNegative('scaleDownCooldownSeconds'),
    scaleDownStabilizationSeconds: nonNegative('scaleDownStabilizationSeconds'),
    maxStepUp: z.number().int().positive(),
    maxStepDown: z.number().int().positive(),
    idleToZeroSeconds: nonNegative('idleToZeroSeconds'),
    smoothingAlpha: share('smoothingAlpha'),
    windowSeconds: positive('windowSeconds'),
    defaultServiceSeconds: positive('defaultServiceSeconds'),
  })
  .partial()
  .transform((p) => ({ ...DEFAULT_POLICY_KNOBS, ...p }) as PolicyKnobs)
  .refine((p) => p.scaleDownUtilization < p.scaleUpUtilization, { error: 'scaleDownUtilization must be below scaleUpUtilization (the hysteresis band)' });

const argv = z.array(z.string().min(1)).min(1, { error: 'a command is a non-empty argument list, e.g. ["/usr/local/bin/scale-out"]' });

const providerSchema = z.discriminatedUnion(
  'type',
  [
    z.strictObject({
      type: z.literal('local-process'),
      /** Extra arguments for each `remex worker` (after the ones remex sets). */
      args: z.array(z.string()).default([]),
      /** Where each worker's run directories and cache go (default: under the server's data directory). */
      workDir: z.string().optional(),
    }),
    z.strictObject({
      type: z.literal('command'),
      scaleOut: argv,
      scaleIn: argv,
      timeoutSeconds: positive('timeoutSeconds').default(DEFAULT_COMMAND_TIMEOUT_SECONDS),
      attempts: z.number().int().positive().default(DEFAULT_COMMAND_ATTEMPTS),
    }),
  ],
  { error: (issue) => (issue.code === 'invalid_union' ? 'unknown provider type (expected local-process or command)' : undefined) },
);

const platformSchema = z.string().transform((text, ctx) => {
  try {
    return canonicalPlatform(text);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: `unknown platform ${JSON.stringify(text)}: ${(err as Error).message}` });
    return z.NEVER;
  }
});

const poolSchema = z
  .strictObject({
    name: z.string().regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/i, { error: 'a pool name is letters, digits, _ . - (at most 63)' }),
    platforms: z.array(platformSchema).min(1, { error: 'a pool serves at least one platform' }),
    /** The pool's workers run these platforms under qemu-user, not natively. */
    emulated: z.boolean().default(false),
    provider: providerSchema,
    minWorkers: z.number().int().nonnegative().default(0),
    maxWorkers: z.number().int().positive(),
    slotsPerWorker: z.number().int().positive().default(1),
    pricePerHour: nonNegative('pricePerHour').default(0),
    labels: z.record(z.string(), z.string()).default({}),
    /** How long a worker takes from the provider's start to its registration, as the policy plans with. */
    startupSeconds: nonNegative('startupSeconds').default(DEFAULT_STARTUP_SECONDS),
    /** A worker asked for and not registered by then is given up (counted, no longer awaited). */
    registerTimeoutSeconds: positive('registerTimeoutSeconds').default(DEFAULT_REGISTER_TIMEOUT_SECONDS),
    policy: policySchema.prefault({}),
  })
  .refine((p) => p.minWorkers <= p.maxWorkers, { error: 'minWorkers must not exceed maxWorkers', path: ['minWorkers'] });

const nativeFirstSchema = z.strictObject({
  platform: platformSchema,
  /** While native workers start: `wait` for them, or `emulate` once the expected wait passes the threshold. */
  whileNativeStarts: z.enum(['wait', 'emulate']),
  emulateAfterWaitSeconds: nonNegative('emulateAfterWaitSeconds').default(30),
});

const configSchema = z
  .strictObject({
    decisionIntervalSeconds: positive('decisionIntervalSeconds').default(DEFAULT_DECISION_INTERVAL_SECONDS),
    leaderLeaseSeconds: positive('leaderLeaseSeconds').default(DEFAULT_LEADER_LEASE_SECONDS),
    pools: z.array(poolSchema).min(1, { error: 'at least one pool' }),
    nativeFirst: z.array(nativeFirstSchema).default([]),
  })
  .superRefine((c, ctx) => {
    const seen = new Set<string>();
    c.pools.forEach((p, i) => {
      if (seen.has(p.name)) ctx.addIssue({ code: 'custom', message: `pool name ${p.name} is used twice`, path: ['pools', i, 'name'] });
      seen.add(p.name);
      try {
        checkLabels(p.labels, `pools[${i}].labels`);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message, path: ['pools', i, 'labels'] });
      }
    });
    c.nativeFirst.forEach((n, i) => {
      const serving = c.pools.filter((p) => p.platforms.includes(n.platform));
      if (!serving.some((p) => !p.emulated) || !serving.some((p) => p.emulated)) {
        ctx.addIssue({ code: 'custom', message: `nativeFirst for ${n.platform} needs one pool serving it natively and one by emulation`, path: ['nativeFirst', i, 'platform'] });
      }
    });
  });

export type AutoscaleConfig = z.output<typeof configSchema>;
export type PoolConfig = AutoscaleConfig['pools'][number];
export type ProviderConfig = PoolConfig['provider'];
export type NativeFirstRule = AutoscaleConfig['nativeFirst'][number];

function where(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`)).join('') || '(top level)';
}

/** A parsed document (JSON or YAML) to a validated configuration; `source` names it in errors. */
export function parseAutoscaleConfig(doc: unknown, source: string): AutoscaleConfig {
  const result = configSchema.safeParse(doc);
  if (result.success) return result.data;
  const problems = result.error.issues.map((i) => `${where(i.path)}: ${i.message}`);
  throw new InvalidArgumentError(`invalid autoscale config ${source}: ${problems.join('; ')}`, { details: { source, problems } });
}

/** Reads and validates `path` (`.json`, else YAML — a superset of JSON). */
export function loadAutoscaleConfig(path: string): AutoscaleConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new InvalidArgumentError(`cannot read autoscale config ${path}: ${(err as Error).message}`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = extname(path) === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new InvalidArgumentError(`autoscale config ${path} is not valid ${extname(path) === '.json' ? 'JSON' : 'YAML'}: ${(err as Error).message}`, { cause: err });
  }
  return parseAutoscaleConfig(doc, path);
}

/** What the policy needs of a pool (and the simulator, its price). */
export function poolShape(config: AutoscaleConfig, pool: PoolConfig): { minWorkers: number; maxWorkers: number; slotsPerWorker: number; startupSeconds: number; decisionIntervalSeconds: number; pricePerHour: number; policy: PolicyKnobs } {
  return {
    minWorkers: pool.minWorkers,
    maxWorkers: pool.maxWorkers,
    slotsPerWorker: pool.slotsPerWorker,
    startupSeconds: pool.startupSeconds,
    decisionIntervalSeconds: config.decisionIntervalSeconds,
    pricePerHour: pool.pricePerHour,
    policy: pool.policy,
  };
}
