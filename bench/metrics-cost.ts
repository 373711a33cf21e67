/**
 * What scraping costs: the rate of trivial native executions over HTTP while /metrics is scraped every
 * second, against the rate of the same server unscraped, measured in alternating rounds of the same run
 * (drift on a shared machine hits both alike). The counting itself (observers, request counters) is always
 * on; what a scrape adds is reading the fleet from the store and rendering the text.
 *
 * Target: executions/s while scraped ≥ 97% of the rate without.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RemexClient } from '../src/client/remex-client.js';
import { digestOf } from '../src/core/digest.js';
import { compileC } from '../test/helpers/tools.js';
import { intEnv, keepAliveRunner, startServe, verdict } from './lib.js';

const ROUNDS = intEnv('BENCH_METRICS_ROUNDS', 6);
const RUNS_PER_ROUND = intEnv('BENCH_METRICS_RUNS', 200);
const SCRAPE_EVERY_MS = 1000;

export async function benchMetricsCost(): Promise<boolean> {
  const bytes = readFileSync(compileC({ code: 'int main(void) { return 0; }\n', name: 'trivial' }, 'x86_64'));
  const scratch = mkdtempSync(join(tmpdir(), 'remex-bench-metrics-'));
  const serve = await startServe(['--workers', '2', '--platform', 'x86_64-linux-cpu', '--data', join(scratch, 'data')]);
  try {
    const client = new RemexClient(serve.url);
    const exe = digestOf(bytes);
    await client.putBlob(exe, bytes);
    const { run, get } = keepAliveRunner(serve.url, exe);
    /** Runs RUNS_PER_ROUND executions, 6 in flight; their wall time, ms. */
    const round = async (): Promise<number> => {
      let left = RUNS_PER_ROUND;
      const start = performance.now();
      await Promise.all(
        Array.from({ length: 6 }, async () => {
          while (left-- > 0) await run();
        }),
      );
      return performance.now() - start;
    };

    for (let i = 0; i < 30; i++) await run();
    const first = await get('/metrics');
    if (first.status !== 200 || !first.text.includes('remex_jobs_queued')) throw new Error(`/metrics answered ${first.status}`);
    let scrapes = 0;
    let scrapeBytes = 0;
    let scrapeMs = 0;
    const totals = { plain: 0, scraped: 0 };
    for (let r = 0; r < ROUNDS; r++) {
      // Alternate which goes first, so neither always follows the other.
      const order: Array<keyof typeof totals> = r % 2 === 0 ? ['plain', 'scraped'] : ['scraped', 'plain'];
      for (const mode of order) {
        let timer: NodeJS.Timeout | undefined;
        if (mode === 'scraped') {
          const scrape = (): void => {
            const t = performance.now();
            void get('/metrics').then((res) => {
              scrapes++;
              scrapeMs += performance.now() - t;
              scrapeBytes = res.text.length;
            });
          };
          scrape();
          timer = setInterval(scrape, SCRAPE_EVERY_MS);
        }
        totals[mode] += await round();
        clearInterval(timer);
      }
    }
    const n = ROUNDS * RUNS_PER_ROUND;
    const plainRate = n / (totals.plain / 1000);
    const scrapedRate = n / (totals.scraped / 1000);
    const ratio = scrapedRate / plainRate;
    console.log(`${ROUNDS} alternating rounds of ${RUNS_PER_ROUND} trivial executions each way, 2 slots, 6 in flight`);
    console.log(`  unscraped ${plainRate.toFixed(1)}/s   scraped every ${SCRAPE_EVERY_MS} ms ${scrapedRate.toFixed(1)}/s (${scrapes} scrapes of ${scrapeBytes} bytes, ${(scrapeMs / Math.max(1, scrapes)).toFixed(1)} ms each as the client saw it)`);
    console.log(`  ratio ${(ratio * 100).toFixed(1)}% (target ≥ 97%) ${verdict(ratio >= 0.97)}`);
    return ratio >= 0.97;
  } finally {
    await serve.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}
