/**
 * Fire and forget: `remex submit` uploads and queues a job and exits at once, printing its id; `status`,
 * `wait`, `cancel` and `jobs` find it again later, from any machine that reaches the server. Nothing needs
 * to stay connected while it runs.
 */
import type { ExecutionView } from '../api/execution-view.js';
import { formatDuration, parseDuration } from '../core/duration.js';
import { parseLabels } from '../core/labels.js';
import type { ExecutionListQuery, RemexClient } from '../client/remex-client.js';
import { costSums, formatCostSums } from './cost-sums.js';
import { prepareSubmission } from './run-command.js';
import { formatLabels, formatTable } from './table.js';
import type { RunOptions } from './run-command.js';

export interface SubmitOptions extends RunOptions {
  name?: string;
  label: string[];
  /** `--max-runtime`: the execution time limit as a duration (`4h`); overrides `--timeout`. */
  maxRuntime?: string;
  /** `--cache`: a fire-and-forget job runs unless asked to use a cached result. */
  cache: boolean;
  /** `--no-retry`: run at most once. */
  retry: boolean;
  /** `--failsafe`: past max-runtime, how long before the failsafe layers end the run as emergency_stopped (`90s`). */
  failsafe?: string;
  /** `--notify URL`: the completion webhook. */
  notify?: string;
  /** `--log-ceiling-mib N`: the live logs' ceiling per stream. */
  logCeilingBytes?: number;
}

/** Uploads, queues, prints the id (or the view with --json) and returns at once. */
export async function submitCommand(executable: string, args: string[], opts: SubmitOptions): Promise<number> {
  const labels = parseLabels(opts.label, '--label');
  const timeoutSeconds = opts.maxRuntime !== undefined ? parseDuration(opts.maxRuntime, '--max-runtime') / 1000 : opts.timeoutSeconds;
  // Parsed before anything is uploaded: a bad duration costs nothing.
  const failsafeMs = opts.failsafe !== undefined ? parseDuration(opts.failsafe, '--failsafe') : undefined;
  const { client, submission } = await prepareSubmission(executable, args, { ...opts, ...(timeoutSeconds !== undefined ? { timeoutSeconds } : {}), noCache: !opts.cache }, opts.json);
  submission.progress = true;
  submission.results = true;
  submission.logs = true;
  if (opts.logCeilingBytes !== undefined) submission.logCeilingBytes = opts.logCeilingBytes;
  if (!opts.retry) submission.noRetry = true;
  if (failsafeMs !== undefined) submission.failsafeMs = failsafeMs;
  if (opts.notify !== undefined) submission.notify = opts.notify;
  if (opts.name !== undefined) submission.name = opts.name;
  if (Object.keys(labels).length > 0) submission.labels = labels;
  const v = await client.submit(submission);
  process.stdout.write(opts.json ? `${JSON.stringify(v, null, 2)}\n` : `${v.id}\n`);
  if (!opts.json && !opts.quiet) process.stderr.write(`remex: ${v.state} on ${v.platform}${v.name ? ` as ${v.name}` : ''}; follow it with: remex status ${v.id}\n`);
  return 0;
}

export async function statusCommand(client: RemexClient, id: string, json: boolean): Promise<number> {
  const v = await client.getExecution(id);
  if (json) {
    process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
    return 0;
  }
  const rows: Array<[string, string]> = [
    ['id', v.id],
    ['name', v.name ?? ''],
    ['labels', formatLabels(v.labels)],
    ['platform', `${v.platform}${v.emulated === null ? '' : v.emulated ? ' (emulated)' : ' (native)'}`],
    ['state', v.state],
    ['attempt', String(v.attempt)],
    ['worker', v.worker ?? ''],
    ['created', v.createdAt],
    ['started', v.startedAt ?? ''],
    ['completed', v.completedAt ?? ''],
    ['runtime', runtimeOf(v)],
    ['queued for', formatDuration(v.queueTimeMs)],
  ];
  if (v.host) rows.push(['host', `${v.host.cpuModel}, ${v.host.cores} cores, ${Math.round(v.host.memoryBytes / 2 ** 30)} GiB, ${v.host.kernel}`]);
  if (v.cost !== null) rows.push(['cost', formatCost(v.cost)]);
  if (v.progress) rows.push(['progress', `${progressOf(v)} (${formatDuration(Math.max(0, Date.now() - v.progress.atMs))} ago)`]);
  if (v.code !== null) rows.push(['exit', v.signal ? `signal ${v.signal}` : String(v.code)]);
  if (v.limitExceeded) rows.push(['limit', v.limitExceeded]);
  if (v.failure) rows.push(['failure', `${v.failure.code}: ${v.failure.message}`]);
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, value] of rows) if (value !== '') process.stdout.write(`${k.padEnd(width)}  ${value}\n`);
  return 0;
}

export async function cancelCommand(client: RemexClient, id: string): Promise<number> {
  const v = await client.cancel(id);
  process.stdout.write(`${v.id} ${v.state === 'running' ? 'cancelling (its worker stops it)' : v.state}\n`);
  return 0;
}

export interface JobsOptions {
  state?: string;
  label: string[];
  name?: string;
  since?: string;
  limit: number;
  json: boolean;
}

/** A table (or JSON) of the newest jobs that match, every page up to `limit`. */
export async function jobsCommand(client: RemexClient, opts: JobsOptions): Promise<number> {
  const labels = parseLabels(opts.label, '--label');
  if (opts.since !== undefined) parseDuration(opts.since, '--since');
  const query: ExecutionListQuery = {
    ...(opts.state !== undefined ? { states: opts.state.split(',') } : {}),
    ...(Object.keys(labels).length > 0 ? { labels } : {}),
    ...(opts.name !== undefined ? { name: opts.name } : {}),
    ...(opts.since !== undefined ? { since: opts.since } : {}),
  };
  const jobs: ExecutionView[] = [];
  for (let after: string | undefined; jobs.length < opts.limit; ) {
    const page = await client.listExecutions({ ...query, limit: Math.min(1000, opts.limit - jobs.length), ...(after !== undefined ? { after } : {}) });
    jobs.push(...page.executions);
    if (page.next === null) break;
    after = page.next;
  }
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(jobs, null, 2)}\n`);
    return 0;
  }
  const rows = jobs.map((v) => [v.id, v.name ?? '', v.platform + (v.emulated ? '*' : ''), v.state, progressOf(v, 24), v.startedAt ?? '', runtimeOf(v), v.cost === null ? '' : formatCost(v.cost), formatLabels(v.labels)]);
  process.stdout.write(formatTable(['ID', 'NAME', 'PLATFORM', 'STATE', 'PROGRESS', 'STARTED', 'RUNTIME', 'COST', 'LABELS'], rows));
  if (jobs.some((v) => v.emulated)) process.stdout.write('* emulated (qemu-user)\n');
  process.stdout.write(formatCostSums(costSums(jobs), formatCost));
  return 0;
}

/** Four significant digits: a cent of an hour's run and a millionth of a second's both show. */
export function formatCost(cost: number): string {
  return cost === 0 ? '0' : cost.toPrecision(4).replace(/\.?0+$/, '').replace(/\.?0+e/, 'e');
}

/** `42% compiling stage 3 (triad_mbps=48532.5)`, cut to `width` characters when given. */
function progressOf(v: ExecutionView, width?: number): string {
  const p = v.progress;
  if (!p) return '';
  const parts = [p.percent !== undefined ? `${Math.round(p.percent * 10) / 10}%` : '', p.message ?? ''];
  const metrics = Object.entries(p.metrics ?? {}).map(([k, n]) => `${k}=${n}`);
  if (metrics.length > 0) parts.push(`(${metrics.join(', ')})`);
  const text = parts.filter((x) => x !== '').join(' ');
  return width !== undefined && text.length > width ? `${text.slice(0, width - 1)}…` : text;
}

/** The run's own time once it ended; while it runs, the time since it started. */
function runtimeOf(v: ExecutionView): string {
  if (v.execTime !== null) return formatDuration(v.execTime);
  if (v.state === 'running' && v.startedAt !== null) return `${formatDuration(Date.now() - Date.parse(v.startedAt))}…`;
  return '';
}

