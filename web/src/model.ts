/** The parts of the API's JSON the dashboard reads (docs/http-api.md), and how it shows them. */
export interface Digest {
  hash: string;
  sizeBytes: number;
}

export interface PlatformStatus {
  platform: string;
  emulated: boolean;
  workers: number;
  slots: number;
  freeSlots: number;
  sharedSlots: number;
  queued: number;
  running: number;
}

export interface FleetStatus {
  workers: number;
  drainingWorkers: number;
  slots: number;
  freeSlots: number;
  queued: number;
  running: number;
}

export interface WorkerRecord {
  id: string;
  name: string;
  platforms: Array<{ platform: string; emulated: boolean }>;
  slots: number;
  state: 'active' | 'draining' | 'gone';
  registeredAtMs: number;
  lastSeenAtMs: number;
  labels: Record<string, string>;
  instanceId: string | null;
  drainRequested: boolean;
  /** Present once workers carry generations. */
  generation?: number | string;
}

/** A row of the jobs list: what `GET /v1/executions` and the `jobs` feed both give. */
export interface JobRow {
  id: string;
  state: string;
  platform: string;
  name: string | null;
  labels: Record<string, string>;
  createdAt: string;
  attempt: number;
  worker: string | null;
  code: number | null;
  execTime: number | null;
}

export interface Progress {
  percent: number;
  message?: string;
  metrics?: Record<string, number>;
  history?: Array<{ percent: number }>;
}

export interface TimelineEntry {
  phase: string;
  atMs: number;
  durationMs?: number;
}

export interface OutputView {
  digest: Digest;
  base64: string | null;
  totalBytes: number;
  truncated: boolean;
}

export interface ExecutionView extends JobRow {
  cached: boolean;
  queueTimeMs: number;
  emulated: boolean | null;
  stdout: Array<{ text: string }>;
  stderr: Array<{ text: string }>;
  signal: string | null;
  cpuTimeMs: number | null;
  maxRssKb: number | null;
  limitExceeded: string | null;
  output: { stdout: OutputView; stderr: OutputView } | null;
  outputFiles: Array<{ path: string; digest: Digest; isExecutable: boolean }>;
  outputDirectories: Array<{ path: string; treeDigest: Digest }>;
  host: { cpuModel: string; cores: number; memoryBytes: number; kernel: string; slots: number; pricePerHour: number | null } | null;
  cost: number | null;
  failure: { code: string; message: string } | null;
  noRetry: boolean;
  progress: Progress | null;
  startedAt: string | null;
  completedAt: string | null;
  /** Present where the server sends them. */
  arguments?: string[];
  timeline?: TimelineEntry[];
}

export interface StatsPoint {
  atMs: number;
  finished: number;
  throughputPerS: number;
  queued: number;
  running: number;
  p50Ms: number | null;
  p95Ms: number | null;
  p99Ms: number | null;
}

export const TERMINAL = new Set(['completed', 'timed_out', 'cancelled', 'failed', 'emergency_stopped']);
export const STATES = ['queued', 'running', 'completed', 'timed_out', 'cancelled', 'failed', 'emergency_stopped'];

export function ms(value: number | null | undefined): string {
  if (value === null || value === undefined) return '—';
  if (value < 1000) return `${Math.round(value)} ms`;
  if (value < 60_000) return `${(value / 1000).toFixed(1)} s`;
  const minutes = Math.floor(value / 60_000);
  return minutes < 60 ? `${minutes} min ${Math.round((value % 60_000) / 1000)} s` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

export function time(iso: string | null): string {
  return iso ? new Date(iso).toLocaleString() : '—';
}

export function labelText(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
}

/** A comparison as `GET /v1/comparisons` lists it (docs/compare.md). */
export interface ComparisonSummary {
  id: string;
  state: 'running' | 'completed' | 'failed';
  createdAt: string;
  completedAt: string | null;
  progress: { done: number; total: number };
  failure: string | null;
  baseline: string;
  repeat: number;
  entries: Array<{ label: string; platform: string }>;
}

export interface Interval {
  low: number;
  high: number;
  level: number;
}

export interface Summary {
  n: number;
  median: number;
  medianInterval: Interval | null;
}

export interface RatioView {
  estimate: number;
  interval: Interval | null;
  verdict: string;
}

export interface ComparisonEntry {
  label: string;
  platform: string;
  emulated: boolean | 'mixed' | null;
  status: 'ok' | 'failed' | 'not-run';
  failure: string | null;
  runs: { counted: number; failed: number; warmup: number };
  wallTimeMs: Summary | null;
  vsBaseline: RatioView | null;
  rank: number | null;
  cost: { perRun: Summary; per1000Runs: { median: number; interval: Interval | null }; vsCheapest: RatioView | null } | null;
  outputDigest: string | null;
  outputsVary: boolean;
}

/** `GET /v1/comparisons/<id>`, the parts the dashboard shows. */
export interface ComparisonView {
  id: string;
  state: 'running' | 'completed' | 'failed';
  createdAt: string;
  completedAt: string | null;
  progress: { done: number; total: number };
  failure: string | null;
  report: {
    entries: ComparisonEntry[];
    baseline: string;
    outputs: { same: boolean; allowed: boolean; groups: Array<{ digest: string; labels: string[] }> };
    cheapest: { label: string; clear: boolean } | null;
    method: { interval: string; ratio: string; counted: string };
  };
}

/** `GET /v1/autoscaler` (decisions 0031, 0032). */
export interface AutoscalerDecision {
  atMs: number;
  desired: number;
  current: number;
  direction: 'up' | 'down' | 'hold';
  reason: string;
}

export interface AutoscalerView {
  leader: boolean;
  holder: string;
  pools: Array<{
    name: string;
    desired: number;
    active: number;
    starting: number;
    draining: number;
    joinedUnasked: number;
    neverRegistered: number;
    lastDecision?: AutoscalerDecision;
    changes: AutoscalerDecision[];
  }>;
}

/** Wall times in a comparison: milliseconds with one decimal, as the JSON has them. */
export function msFixed(value: number): string {
  return `${value.toFixed(1)} ms`;
}
