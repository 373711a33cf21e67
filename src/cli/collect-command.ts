/**
 * `remex collect --out DIR`: downloads every finished job that matches (by label, state, name, age) into a
 * folder of its own — `job.json` (the execution object), `stdout`, `stderr`, and `results/` (what the
 * program wrote under `$REMEX_RESULTS`) — then writes `summary.json` and `summary.txt` over all of them,
 * with each job's metrics: its last progress report's and its own `results/results.json`'s numbers.
 * Names inside a results tree are checked before anything is written: nothing lands outside DIR.
 */
import { createWriteStream } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { join } from 'node:path';
import type { ExecutionView } from '../api/execution-view.js';
import { decodeTree } from '../cas/directory-codec.js';
import { validateName } from '../cas/tree.js';
import type { Digest } from '../core/digest.js';
import { DigestBuilder, formatDigest } from '../core/digest.js';
import { formatDuration } from '../core/duration.js';
import { InternalError, InvalidArgumentError } from '../core/errors.js';
import { parseLabels } from '../core/labels.js';
import { RESULTS_DIRECTORY, TERMINAL_STATES } from '../core/model.js';
import type { Directory } from '../core/model.js';
import type { ExecutionListQuery, RemexClient } from '../client/remex-client.js';
import { costSums, formatCostSums } from './cost-sums.js';
import { formatCost } from './job-commands.js';
import { formatTable } from './table.js';

const FINISHED: readonly string[] = TERMINAL_STATES;

export interface CollectOptions {
  out: string;
  force: boolean;
  label: string[];
  state?: string;
  name?: string;
  since?: string;
}

export interface CollectedJob {
  id: string;
  name: string | null;
  labels: Record<string, string>;
  platform: string;
  emulated: boolean | null;
  worker: string | null;
  state: string;
  exitCode: number | null;
  signal: string | null;
  wallTimeMs: number | null;
  cpuTimeMs: number | null;
  maxRssKb: number | null;
  /** price per hour × run time × share of the worker's slots; null without a price. */
  cost: number | null;
  /** The progress report's metrics, then results/results.json's numbers over them. */
  metrics: Record<string, number>;
  /** Entries of results/ not written: symlinks (a results tree keeps only those pointing inside it). */
  skipped: string[];
  folder: string;
}

export async function collectCommand(client: RemexClient, opts: CollectOptions): Promise<number> {
  const labels = parseLabels(opts.label, '--label');
  await prepareOut(opts.out, opts.force);
  const states = opts.state !== undefined ? opts.state.split(',') : FINISHED;
  const unfinished = states.filter((s) => !FINISHED.includes(s));
  if (unfinished.length > 0) throw new InvalidArgumentError(`--state ${unfinished.join(',')}: only finished jobs are collected (${FINISHED.join(', ')})`);
  const query: ExecutionListQuery = {
    states,
    ...(Object.keys(labels).length > 0 ? { labels } : {}),
    ...(opts.name !== undefined ? { name: opts.name } : {}),
    ...(opts.since !== undefined ? { since: opts.since } : {}),
    limit: 1000,
  };
  const summary: CollectedJob[] = [];
  for (let after: string | undefined; ; ) {
    const page = await client.listExecutions({ ...query, ...(after !== undefined ? { after } : {}) });
    for (const v of page.executions) summary.push(await collectJob(client, v, opts.out));
    if (page.next === null) break;
    after = page.next;
  }
  await writeFile(join(opts.out, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  const table = summaryTable(summary);
  await writeFile(join(opts.out, 'summary.txt'), table);
  process.stdout.write(table);
  process.stdout.write(`collected ${summary.length} job${summary.length === 1 ? '' : 's'} into ${opts.out}\n`);
  return 0;
}

/** The output folder must be new or empty, unless --force. */
async function prepareOut(out: string, force: boolean): Promise<void> {
  const present = await readdir(out).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw new InvalidArgumentError(`--out ${out}: ${err.code ?? err.message}`);
  });
  if (present.length > 0 && !force) throw new InvalidArgumentError(`--out ${out} is not empty (give --force to write into it)`);
  await mkdir(out, { recursive: true });
}

async function collectJob(client: RemexClient, v: ExecutionView, out: string): Promise<CollectedJob> {
  const folder = v.id;
  const dir = join(out, folder);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'job.json'), `${JSON.stringify(v, null, 2)}\n`);
  if (v.output) {
    for (const stream of ['stdout', 'stderr'] as const) {
      const o = v.output[stream];
      if (o.base64 !== null) await writeFile(join(dir, stream), Buffer.from(o.base64, 'base64'));
      else await download(client, o.digest, join(dir, stream));
    }
  }
  const metrics: Record<string, number> = { ...(v.progress?.metrics ?? {}) };
  const skipped: string[] = [];
  const results = v.outputDirectories.find((d) => d.path === RESULTS_DIRECTORY);
  if (results) {
    await writeTree(client, results.treeDigest, join(dir, 'results'), skipped);
    Object.assign(metrics, await resultsMetrics(join(dir, 'results', 'results.json')));
  }
  return {
    id: v.id,
    name: v.name,
    labels: v.labels,
    platform: v.platform,
    emulated: v.emulated,
    worker: v.worker,
    state: v.state,
    exitCode: v.signal ? null : v.code,
    signal: v.signal,
    wallTimeMs: v.execTime,
    cpuTimeMs: v.cpuTimeMs,
    maxRssKb: v.maxRssKb,
    cost: v.cost,
    metrics,
    skipped,
    folder,
  };
}

/** Writes a REAPI Tree's files under `dir`; every name is checked first (no `..`, no `/`). */
async function writeTree(client: RemexClient, treeDigest: Digest, dir: string, skipped: string[]): Promise<void> {
  const tree = decodeTree(await client.getBlob(treeDigest));
  const byDigest = new Map(tree.children.map((c) => [formatDigest(c.digest), c.directory]));
  const write = async (d: Directory, at: string, path: string, depth: number): Promise<void> => {
    if (depth > 256) throw new InvalidArgumentError('results tree is deeper than 256 levels');
    await mkdir(at, { recursive: true });
    for (const f of d.files) {
      validateName(f.name, `${path}${f.name}`);
      const target = join(at, f.name);
      await download(client, f.digest, target);
      await chmod(target, f.isExecutable ? 0o755 : 0o644);
    }
    for (const s of d.symlinks) skipped.push(`${path}${s.name} -> ${s.target}`);
    for (const sub of d.directories) {
      validateName(sub.name, `${path}${sub.name}`);
      const child = byDigest.get(formatDigest(sub.digest));
      if (!child) throw new InvalidArgumentError(`results tree lacks the directory ${path}${sub.name}`);
      await write(child, join(at, sub.name), `${path}${sub.name}/`, depth + 1);
    }
  };
  await write(tree.root, dir, '', 0);
}

/** A blob streamed to a file (a result file of gigabytes never sits in memory), checked against its digest. */
async function download(client: RemexClient, digest: Digest, path: string): Promise<void> {
  const seen = new DigestBuilder();
  const body = await client.blobStream(digest);
  await pipeline(
    Readable.from(body),
    async function* (chunks: AsyncIterable<Uint8Array>) {
      for await (const chunk of chunks) yield seen.update(chunk) && chunk;
    },
    createWriteStream(path),
  );
  const got = seen.digest();
  if (got.hash !== digest.hash || got.sizeBytes !== digest.sizeBytes) {
    await rm(path, { force: true });
    throw new InternalError(`blob ${formatDigest(digest)} arrived as ${formatDigest(got)}; ${path} not written`);
  }
}

/** The numbers of a results.json object: its top-level numeric fields and those of its `metrics`. */
async function resultsMetrics(path: string): Promise<Record<string, number>> {
  let doc: unknown;
  try {
    doc = JSON.parse(await readFile(path, 'utf8'));
  } catch {
    return {};
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) return {};
  const numbers: Record<string, number> = {};
  const take = (o: object): void => {
    for (const [k, n] of Object.entries(o)) if (typeof n === 'number' && Number.isFinite(n) && k !== '__proto__') numbers[k] = n;
  };
  take(doc);
  const nested = (doc as { metrics?: unknown }).metrics;
  if (nested && typeof nested === 'object' && !Array.isArray(nested)) take(nested);
  return numbers;
}

function summaryTable(jobs: readonly CollectedJob[]): string {
  const metricNames = [...new Set(jobs.flatMap((j) => Object.keys(j.metrics)))].sort().slice(0, 6);
  const header = ['ID', 'NAME', 'PLATFORM', 'STATE', 'EXIT', 'RUNTIME', 'COST', ...metricNames.map((m) => m.toUpperCase())];
  const rows = jobs.map((j) => [
    j.id,
    j.name ?? '',
    j.platform + (j.emulated ? '*' : ''),
    j.state,
    j.signal ?? (j.exitCode === null ? '' : String(j.exitCode)),
    j.wallTimeMs === null ? '' : formatDuration(j.wallTimeMs),
    j.cost === null ? '' : formatCost(j.cost),
    ...metricNames.map((m) => (j.metrics[m] === undefined ? '' : String(j.metrics[m]))),
  ]);
  let text = formatTable(header, rows);
  if (jobs.some((j) => j.emulated)) text += '* emulated (qemu-user): not a hardware figure\n';
  text += formatCostSums(costSums(jobs), formatCost);
  return text;
}
