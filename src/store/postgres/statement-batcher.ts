/**
 * Group commit for one kind of statement: callers submit one item each and get their own answer, while
 * the batcher runs one statement for many items. A batch goes out at once when fewer than `maxInFlight`
 * are running, so a lone caller waits for nothing; under load, items that arrive while the statements are
 * in flight gather into the next one. Batches grow with the load and the per-statement cost (a round
 * trip, parsing, planning, a commit) is paid once per batch instead of once per item.
 */
export interface StatementBatcherOptions<I, O> {
  /** Runs one batch: one answer per item, in the items' order. */
  run: (items: readonly I[]) => Promise<O[]>;
  /**
   * Whether a failed batch of several items is run again item by item, so that one item the database
   * refuses fails alone instead of failing its neighbours (default: never). Say no for errors that would
   * fail every item anyway (the database unreachable).
   */
  retryAlone?: (err: unknown) => boolean;
  /** Items that may not share one batch (say, two changes of one row) go in separate ones, in order. */
  keyOf?: (item: I) => string;
  /** Largest batch. Default 256. */
  maxBatch?: number;
  /** Statements of this kind running at once. Default 1: under load, everything that arrives meanwhile goes in the next. */
  maxInFlight?: number;
}

interface Pending<I, O> {
  item: I;
  resolve: (out: O) => void;
  reject: (err: unknown) => void;
}

export class StatementBatcher<I, O> {
  private queue: Array<Pending<I, O>> = [];
  private inFlight = 0;
  private readonly maxBatch: number;
  private readonly maxInFlight: number;

  constructor(private readonly opts: StatementBatcherOptions<I, O>) {
    this.maxBatch = opts.maxBatch ?? 256;
    this.maxInFlight = opts.maxInFlight ?? 1;
    if (!Number.isInteger(this.maxBatch) || this.maxBatch < 1) throw new RangeError(`maxBatch must be a positive integer, got ${this.maxBatch}`);
    if (!Number.isInteger(this.maxInFlight) || this.maxInFlight < 1) throw new RangeError(`maxInFlight must be a positive integer, got ${this.maxInFlight}`);
  }

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
      const batch = this.take();
      this.inFlight++;
      void this.runBatch(batch)
        .catch(async (err: unknown) => {
          if (batch.length > 1 && this.opts.retryAlone?.(err)) {
            // One at a time, in order: each item gets its own answer or its own error.
            for (const p of batch) await this.runBatch([p]).catch((alone: unknown) => p.reject(alone));
          } else {
            for (const p of batch) p.reject(err);
          }
        })
        .finally(() => {
          this.inFlight--;
          this.pump();
        });
    }
  }

  private async runBatch(batch: Array<Pending<I, O>>): Promise<void> {
    const outs = await this.opts.run(batch.map((p) => p.item));
    if (outs.length !== batch.length) throw new Error(`a batch of ${batch.length} got ${outs.length} answers`);
    batch.forEach((p, i) => p.resolve(outs[i] as O));
  }

  /** The oldest items, up to maxBatch, at most one per key; those left keep their order for the next batch. */
  private take(): Array<Pending<I, O>> {
    const keyOf = this.opts.keyOf;
    if (!keyOf) return this.queue.splice(0, this.maxBatch);
    const batch: Array<Pending<I, O>> = [];
    const rest: Array<Pending<I, O>> = [];
    const keys = new Set<string>();
    for (const p of this.queue) {
      const key = keyOf(p.item);
      if (batch.length < this.maxBatch && !keys.has(key)) {
        keys.add(key);
        batch.push(p);
      } else {
        rest.push(p);
      }
    }
    this.queue = rest;
    return batch;
  }
}
