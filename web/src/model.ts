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
