/**
 * Resource limits for one run. Every field carries its unit. Defaults are deliberately modest (a
 * code-execution front end's needs); long jobs raise them per request up to the server's maxima.
 */
export interface ResourceLimits {
  /** Peak memory of the whole process tree. */
  memoryBytes: number;
  /** Processes and threads alive at once. */
  processes: number;
  /** CPU time of the whole process tree. */
  cpuTimeMs: number;
  /** Largest file any process may write. */
  fileSizeBytes: number;
  /** Per stream (stdout, stderr): bytes kept; the rest is dropped and the stream marked truncated. */
  outputBytes: number;
  /** Size of the private /tmp. */
  tmpBytes: number;
  /** Open file descriptors per process. */
  openFiles: number;
}

export const DEFAULT_TIMEOUT_MS = 20_000;
export const DEFAULT_GRACE_MS = 1_000;

export const DEFAULT_LIMITS: Readonly<ResourceLimits> = Object.freeze({
  memoryBytes: 512 * 1024 * 1024,
  processes: 64,
  cpuTimeMs: 60_000,
  fileSizeBytes: 64 * 1024 * 1024,
  outputBytes: 1024 * 1024,
  tmpBytes: 64 * 1024 * 1024,
  openFiles: 256,
});

/** What one limit being hit is called in results. */
export const LIMIT_KINDS = ['wall_time', 'cpu_time', 'memory', 'processes', 'file_size', 'output'] as const;

export type LimitKind = (typeof LIMIT_KINDS)[number];
