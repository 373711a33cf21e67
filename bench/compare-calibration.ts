/**
 * Calibration of `remex compare` (issue 14): are its intervals honest on this machine?
 *
 * 1. The program against itself: BENCH_COMPARE_SELF (40) comparisons of one binary with itself on one
 *    platform (two entries, same triple). Target: the ratio's 95% interval holds 1.00 in ≥ 95% of them.
 * 2. Twice the work: BENCH_COMPARE_DOUBLE (3) comparisons of a binary doing exactly twice the work of
 *    another (same answer). Target: reported as ~2× with the interval holding 2.0 in every one.
 *
 * Each comparison runs BENCH_COMPARE_REPEAT (10) counted runs per entry after one warm-up, interleaved, through
 * the HTTP API of a spawned `remex serve` with one native x86_64 slot. The floor (the same-run reference)
 * is the self comparison: its median spread says how noisy the machine was.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RemexClient } from '../src/client/remex-client.js';
import type { ComparisonDocument } from '../src/compare/comparison.js';
import { digestOf } from '../src/core/digest.js';
import { compileC } from '../test/helpers/tools.js';
import { intEnv, startServe, verdict } from './lib.js';

const SELF = intEnv('BENCH_COMPARE_SELF', 40);
const DOUBLE = intEnv('BENCH_COMPARE_DOUBLE', 3);
const REPEAT = intEnv('BENCH_COMPARE_REPEAT', 10);
const X86 = 'x86_64-linux-cpu';

export async function benchCompareCalibration(): Promise<boolean> {
  const source = { file: 'programs/compare-work.c' };
  const single = readFileSync(compileC(source, 'x86_64', { static: true, extraFlags: ['-O2'] }));
  const double = readFileSync(compileC(source, 'x86_64', { static: true, extraFlags: ['-O2', '-DWORK_FACTOR=2'] }));
  const scratch = mkdtempSync(join(tmpdir(), 'remex-bench-compare-'));
  const serve = await startServe(['--workers', '1', '--platform', X86, '--no-grpc', '--data', join(scratch, 'data')]);
  const client = new RemexClient(serve.url);
  try {
    const one = digestOf(single);
    const two = digestOf(double);
    await client.putBlob(one, single);
    await client.putBlob(two, double);
    const compare = async (a: typeof one, b: typeof one, iterations: string): Promise<ComparisonDocument> => {
      const entry = (executable: typeof one) => ({ execution: { platform: X86, executable, args: [iterations] } });
      let doc = await client.request<ComparisonDocument>('POST', '/v1/comparisons', { entries: [entry(a), entry(b)], repeat: REPEAT, warmup: 1 });
      while (doc.state === 'running') {
        await new Promise((r) => setTimeout(r, 100));
        doc = await client.request<ComparisonDocument>('GET', `/v1/comparisons/${doc.id}`);
      }
      if (doc.state !== 'completed') throw new Error(`comparison ${doc.id} ${doc.state}: ${doc.failure}`);
      return doc;
    };
    const ratioOf = (doc: ComparisonDocument) => doc.report.entries[1]!.vsBaseline!;

    let holds1 = 0;
    const selfRatios: number[] = [];
    const widths: number[] = [];
    for (let i = 0; i < SELF; i++) {
      const r = ratioOf(await compare(one, one, '40000000'));
      selfRatios.push(r.estimate);
      widths.push(r.interval!.high / r.interval!.low);
      if (r.interval!.low <= 1 && r.interval!.high >= 1) holds1++;
      else console.log(`  self #${i + 1}: ${r.estimate.toFixed(3)} (${r.interval!.low.toFixed(3)}–${r.interval!.high.toFixed(3)}) misses 1.00`);
    }
    const coverage = holds1 / SELF;
    const selfOk = coverage >= 0.95;
    const sortedWidths = [...widths].sort((a, b) => a - b);
    console.log(`self vs self (${SELF} comparisons × ${REPEAT} runs each side): interval holds 1.00 in ${holds1}/${SELF} = ${(coverage * 100).toFixed(1)}% (target ≥ 95%) ${verdict(selfOk)}`);
    console.log(`  ratios ${Math.min(...selfRatios).toFixed(3)}–${Math.max(...selfRatios).toFixed(3)}; median interval width ×${sortedWidths[sortedWidths.length >> 1]!.toFixed(3)} (the floor: this machine's noise)`);

    let holds2 = 0;
    for (let i = 0; i < DOUBLE; i++) {
      const r = ratioOf(await compare(one, two, '300000000'));
      const ok = r.interval!.low <= 2 && r.interval!.high >= 2;
      if (ok) holds2++;
      console.log(`  double #${i + 1}: ${r.estimate.toFixed(3)}× (${r.interval!.low.toFixed(3)}–${r.interval!.high.toFixed(3)}) ${ok ? 'holds' : 'misses'} 2.00`);
    }
    const doubleOk = holds2 === DOUBLE;
    console.log(`twice the work (${DOUBLE} comparisons): interval holds 2.00 in ${holds2}/${DOUBLE} (target: all) ${verdict(doubleOk)}`);
    return selfOk && doubleOk;
  } finally {
    client.close();
    await serve.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}
