/** Builders for the values store and scheduler tests pass around: specs, run reports, action digests. */
import type { Digest } from '../../src/core/digest.js';
import { digestOf, EMPTY_DIGEST } from '../../src/core/digest.js';
import { DEFAULT_LIMITS } from '../../src/core/limits.js';
import type { ExecutionSpec, RunReport } from '../../src/core/model.js';

export const X86 = 'x86_64-linux-cpu';
export const ARM = 'aarch64-linux-cpu';
export const RISCV = 'riscv64-linux-cpu';

export interface SpecOptions {
  platform?: string;
  /** Distinguishes otherwise identical specs (and so their action digests). */
  label?: string;
  doNotCache?: boolean;
  stdin?: string | null;
}

export function makeSpec(o: SpecOptions = {}): ExecutionSpec {
  const label = o.label ?? 'job';
  return {
    platform: o.platform ?? X86,
    command: {
      arguments: ['./prog', label, 'ünïcødé ✓', 'quote " and \\ backslash'],
      environmentVariables: [
        { name: 'PATH', value: '/usr/bin:/bin' },
        { name: 'EMPTY', value: '' },
      ],
      outputPaths: ['out/result.txt'],
      workingDirectory: 'work',
    },
    inputRootDigest: digestOf(`input root of ${label}`),
    stdinDigest: o.stdin === undefined || o.stdin === null ? null : digestOf(o.stdin),
    timeoutMs: 5_000,
    limits: { ...DEFAULT_LIMITS },
    doNotCache: o.doNotCache ?? false,
  };
}

/** What a front door would compute: a digest over the spec. */
export function actionDigestOf(spec: ExecutionSpec): Digest {
  return digestOf(JSON.stringify(spec));
}

export function makeReport(o: Partial<RunReport> & { stdoutText?: string } = {}): RunReport {
  const { stdoutText = 'hello from the run\n', ...overrides } = o;
  return {
    exitCode: 0,
    signal: null,
    timedOut: false,
    limitExceeded: null,
    stdout: {
      digest: digestOf(stdoutText),
      inlineBase64: Buffer.from(stdoutText).toString('base64'),
      totalBytes: Buffer.byteLength(stdoutText),
      truncated: false,
    },
    stderr: { digest: EMPTY_DIGEST, inlineBase64: '', totalBytes: 0, truncated: false },
    outputFiles: [{ path: 'out/result.txt', digest: digestOf(`output of ${stdoutText}`), isExecutable: false }],
    wallTimeMs: 12,
    cpuTimeMs: 3,
    maxRssKb: 2048,
    emulated: false,
    worker: 'test-worker',
    ...overrides,
  };
}
