/**
 * Runs comparisons on the server, so a client may leave (`remex compare --detach`) and any controller can
 * answer for it from the store. Runs are interleaved: round after round, each entry once per round, one run
 * at a time (so two runs never compete for the machine), each round starting one entry further on, warm-up
 * rounds first. Every run is an ordinary job (named `compare-<id>`, labelled `remex-comparison=<id>`), so
 * it is listed, followed and collected like any other. The document is saved after every run.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { BlobStore } from '../cas/blob-store.js';
import { costOf } from '../core/model.js';
import type { JobRecord, ComparisonStore } from '../store/ports.js';
import { buildReport } from './comparison.js';
import type { ComparisonDocument, ComparisonPlan, MetricValue, RunRecord } from './comparison.js';
import { readProgramOutput } from './program-output.js';

/** The label every run of a comparison carries, naming it. */
export const COMPARISON_LABEL = 'remex-comparison';

/** Above this size stdout is not read back to strip metric lines: its digest as stored stands for it. */
export const MAX_OUTPUT_READ_BYTES = 4 * 1024 * 1024;

/** How one entry's runs are started: the front door built the execution once; each call submits one run. */
export type SubmitRun = (meta: { name: string; labels: Record<string, string> }) => Promise<JobRecord>;

export interface ComparisonRunnerOptions {
  store: ComparisonStore;
  blobs: BlobStore;
  /** Resolves once the job is terminal (or with its state when `signal` aborts). */
  waitForTerminal: (jobId: string, signal: AbortSignal) => Promise<JobRecord>;
  logger: Logger;
  now?: () => number;
}

export class ComparisonRunner {
  private readonly running = new Map<string, { abort: AbortController; done: Promise<void> }>();
  private readonly now: () => number;

  constructor(private readonly opts: ComparisonRunnerOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** Saves a new comparison and starts its runs in the background; returns it as first saved. */
  async start(plan: ComparisonPlan, submitters: ReadonlyMap<string, SubmitRun>): Promise<ComparisonDocument> {
    const id = randomUUID();
    const doc: ComparisonDocument = {
      id,
      state: 'running',
      createdAt: new Date(this.now()).toISOString(),
      completedAt: null,
      plan,
      progress: { done: 0, total: plan.entries.length * (plan.repeat + plan.warmup) },
      failure: null,
      runs: [],
      report: buildReport(plan, []),
    };
    await this.save(doc);
    const abort = new AbortController();
    const done = this.run(doc, submitters, abort.signal).catch((err: unknown) => this.opts.logger.error({ err, comparison: id }, 'comparison runner failed'));
    this.running.set(id, { abort, done });
    void done.finally(() => this.running.delete(id));
    return doc;
  }

  async get(id: string): Promise<ComparisonDocument | undefined> {
    const row = await this.opts.store.get(id);
    return row ? (row.document as ComparisonDocument) : undefined;
  }

  /** The newest comparisons first, a page at a time (`afterId`: the last of the page before). */
  async list(query: { limit: number; afterId?: string }): Promise<ComparisonDocument[]> {
    return (await this.opts.store.list(query)).map((row) => row.document as ComparisonDocument);
  }

  /** Stops every comparison this process runs; they are saved as failed (stopped with the server). */
  async close(): Promise<void> {
    for (const r of this.running.values()) r.abort.abort();
    await Promise.all([...this.running.values()].map((r) => r.done));
  }

  private async run(doc: ComparisonDocument, submitters: ReadonlyMap<string, SubmitRun>, signal: AbortSignal): Promise<void> {
    const { plan } = doc;
    const rounds = plan.warmup + plan.repeat;
    try {
      for (let round = 0; round < rounds && !signal.aborted; round++) {
        const n = plan.entries.length;
        for (let i = 0; i < n && !signal.aborted; i++) {
          const entry = plan.entries[(round + i) % n]!;
          const record = await this.runOnce(doc.id, entry.label, round, round < plan.warmup, submitters.get(entry.label)!, signal);
          if (signal.aborted) break;
          doc.runs.push(record);
          doc.progress.done++;
          doc.report = buildReport(plan, doc.runs);
          await this.save(doc);
        }
      }
      if (signal.aborted) {
        doc.state = 'failed';
        doc.failure = 'stopped: the server running it shut down';
      } else {
        doc.state = 'completed';
      }
    } catch (err) {
      doc.state = 'failed';
      doc.failure = err instanceof Error ? err.message : String(err);
    }
    doc.completedAt = new Date(this.now()).toISOString();
    doc.report = buildReport(plan, doc.runs);
    await this.save(doc);
  }

  private async runOnce(id: string, label: string, round: number, warmup: boolean, submit: SubmitRun, signal: AbortSignal): Promise<RunRecord> {
    const base = { label, round, warmup };
    let job: JobRecord;
    try {
      job = await submit({ name: `compare-${id}`, labels: { [COMPARISON_LABEL]: id } });
      job = await this.opts.waitForTerminal(job.id, signal);
    } catch (err) {
      // A run remex could not start is that run's failure; the comparison goes on.
      return { ...base, ...emptyRun(), jobId: '', state: 'failed', failure: err instanceof Error ? err.message : String(err) };
    }
    const r = job.result;
    const state = job.state === 'queued' || job.state === 'running' ? 'cancelled' : job.state;
    if (!r) return { ...base, ...emptyRun(), jobId: job.id, state, failure: job.failure ? `${job.failure.code}: ${job.failure.message}` : null };
    const { digest, metrics } = await this.readOutput(r.stdout.digest, r.stdout.inlineBase64);
    for (const [name, value] of Object.entries(job.progress?.metrics ?? {})) {
      if (!(name in metrics)) metrics[name] = { value, unit: '', higherIsBetter: null };
    }
    return {
      ...base,
      jobId: job.id,
      state,
      exitCode: r.exitCode,
      signal: r.signal,
      failure: job.failure ? `${job.failure.code}: ${job.failure.message}` : null,
      wallTimeMs: r.wallTimeMs,
      cpuTimeMs: r.cpuTimeMs,
      maxRssKb: r.maxRssKb,
      cost: costOf(r),
      emulated: r.emulated,
      worker: r.worker,
      host: r.host ?? null,
      outputDigest: digest,
      metrics,
    };
  }

  private async readOutput(d: { hash: string; sizeBytes: number }, inline: string | null): Promise<{ digest: string; metrics: Record<string, MetricValue> }> {
    if (inline !== null) return readProgramOutput(Buffer.from(inline, 'base64'));
    if (d.sizeBytes > MAX_OUTPUT_READ_BYTES) return { digest: d.hash, metrics: {} };
    const chunks: Buffer[] = [];
    for await (const chunk of await this.opts.blobs.getStream(d)) chunks.push(Buffer.from(chunk));
    return readProgramOutput(Buffer.concat(chunks));
  }

  private async save(doc: ComparisonDocument): Promise<void> {
    await this.opts.store.save({ id: doc.id, state: doc.state, createdAtMs: Date.parse(doc.createdAt), updatedAtMs: this.now(), document: doc });
  }
}

function emptyRun(): Omit<RunRecord, 'label' | 'round' | 'warmup' | 'jobId' | 'state' | 'failure'> {
  return { exitCode: null, signal: null, wallTimeMs: null, cpuTimeMs: null, maxRssKb: null, cost: null, emulated: null, worker: null, host: null, outputDigest: null, metrics: {} };
}
