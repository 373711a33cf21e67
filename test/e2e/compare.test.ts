/**
 * `remex compare` as a user runs it: a real CLI process against a real server whose workers run x86_64
 * natively and aarch64 and riscv64 under qemu-user, real cross-compiled binaries, the HTTP API, and the HTML
 * report opened in a real headless chromium. Repeat counts are small: these tests check behaviour, the
 * numbers' calibration is bench/compare-calibration.ts.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ComparisonDocument } from '../../src/compare/comparison.js';
import { isRemexError } from '../../src/core/errors.js';
import { launchChromium, requireChromium } from '../helpers/browser.js';
import { remexCli } from '../helpers/remex-cli.js';
import { startTestServer } from '../helpers/server.js';
import type { TestServer } from '../helpers/server.js';
import { compileC, requireTools } from '../helpers/tools.js';

const X86 = 'x86_64-linux-cpu';
const A64 = 'aarch64-linux-cpu';
const RV = 'riscv64-linux-cpu';
const WORK = { file: 'programs/compare-work.c' };
const ITERATIONS = '200000';

let ts: TestServer;
let dir: string;
let main: ComparisonDocument | undefined;
let htmlPath: string;

function remex(args: string[]) {
  return remexCli(args, { REMEX_SERVER: ts.server.url });
}

describe('remex compare', () => {
  before(async () => {
    ts = await startTestServer({ workerSlots: 2, localPlatforms: [X86, A64, RV], localPricePerHour: 0.72 });
    dir = mkdtempSync(join(tmpdir(), 'remex-compare-'));
    htmlPath = join(dir, 'report.html');
  });
  after(async () => {
    await ts?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('x86_64 native against aarch64 and riscv64 emulated: interleaved runs, statistics, emulated marked, same output, cost, metrics; CSV and HTML written', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc', 'aarch64-linux-gnu-gcc', 'riscv64-linux-gnu-gcc', 'qemu-aarch64-static', 'qemu-riscv64-static')) return;
    const bins = { x86: compileC(WORK, 'x86_64', { static: true }), a64: compileC(WORK, 'aarch64', { static: true }), rv: compileC(WORK, 'riscv64', { static: true }) };
    const csv = join(dir, 'report.csv');
    const r = await remex(['compare', '--json', '--repeat', '3', '--warmup', '1', '--csv', csv, '--html', htmlPath, `${X86}=${bins.x86}`, `${A64}=${bins.a64}`, `${RV}=${bins.rv}`, '--', ITERATIONS]);
    assert.equal(r.code, 0, r.stderr);
    const doc = (main = JSON.parse(r.stdout) as ComparisonDocument);
    assert.equal(doc.state, 'completed');
    assert.equal(doc.runs.length, 3 * 4);
    // Interleaved: every round holds one run of each entry, and rounds rotate which entry goes first.
    for (let round = 0; round < 4; round++) assert.deepEqual(doc.runs.filter((x) => x.round === round).map((x) => x.label).sort(), [A64, RV, X86]);
    assert.notEqual(doc.runs[0]!.label, doc.runs[3]!.label);
    assert.equal(doc.runs.filter((x) => x.warmup).length, 3);

    const [x86, a64, rv] = doc.report.entries;
    assert.deepEqual([x86!.label, a64!.label, rv!.label], [X86, A64, RV]);
    assert.equal(x86!.emulated, false);
    assert.equal(x86!.rank, 1);
    for (const e of [a64!, rv!]) {
      assert.equal(e.emulated, true);
      assert.equal(e.rank, null, 'emulated platforms are never ranked as hardware');
      assert.ok(e.vsBaseline && e.vsBaseline.interval, 'a ratio against the baseline with its interval');
    }
    for (const e of doc.report.entries) {
      assert.equal(e.status, 'ok');
      assert.equal(e.runs.counted, 3);
      assert.ok(e.wallTimeMs && e.wallTimeMs.n === 3 && e.wallTimeMs.medianInterval);
      assert.ok(e.cpuTimeMs && e.maxRssKb);
      assert.ok(e.cost && e.cost.per1000Runs.median > 0, 'the local pool has a price');
      const rate = e.metrics.find((m) => m.name === 'rate');
      assert.equal(rate?.unit, 'Miter/s');
      assert.equal(rate?.higherIsBetter, true);
      assert.ok(e.hosts.length > 0 && e.hosts[0]!.host?.cpuModel);
    }
    assert.equal(doc.report.outputs.same, true, 'the same answer on every platform');
    assert.ok(doc.report.cheapest);
    assert.match(doc.report.method.interval, /order-statistic/);

    // Every run is an ordinary job, labelled with its comparison.
    const jobs = await ts.client.listExecutions({ labels: { 'remex-comparison': doc.id } });
    assert.equal(jobs.executions.length, 12);

    // The server keeps it: the HTTP API answers the same document.
    const kept = await ts.client.request<ComparisonDocument>('GET', `/v1/comparisons/${doc.id}`);
    assert.deepEqual(kept.report, doc.report);

    const rows = readFileSync(csv, 'utf8').trim().split('\n');
    assert.equal(rows.length, 4);
    assert.match(rows[2]!, /^aarch64-linux-cpu,aarch64-linux-cpu,true,ok,,3,/);

    // The terminal table of the same comparison: aligned, units, emulated marked.
    const shown = await remex(['compare', '--show', doc.id]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /^aarch64-linux-cpu\s+EMULATED\s+not ranked\s+3\s+[\d.]+ m?s/m);
    assert.match(shown.stdout, /^x86_64-linux-cpu\s+native\s+1\s+3\s/m);
    assert.match(shown.stdout, /same output on every platform/);
  });

  test('the HTML report opens in headless chromium: one bar per platform, the numbers of --json, no network', async (t) => {
    if (!main) return t.skip('the comparison above did not run');
    if (!requireChromium(t)) return;
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const requests: string[] = [];
      page.on('request', (req) => {
        if (!req.url().startsWith('file:')) requests.push(req.url());
      });
      await page.goto(`file://${htmlPath}`);
      const bars = await page.$$eval('rect.bar', (els) => els.map((e) => ({ label: e.getAttribute('data-label'), value: Number(e.getAttribute('data-value')), emulated: e.getAttribute('data-emulated'), width: Number(e.getAttribute('width')) })));
      assert.equal(bars.length, 3, 'one bar per platform');
      for (const e of main.report.entries) {
        const bar = bars.find((b) => b.label === e.label);
        assert.ok(bar && bar.width > 0, `a visible bar for ${e.label}`);
        assert.equal(bar.value, e.wallTimeMs!.median);
        assert.equal(bar.emulated, String(e.emulated !== false));
        const median = await page.$eval(`tr[data-label="${e.label}"] td[data-field="median"]`, (td) => Number(td.getAttribute('data-value')));
        assert.equal(median, e.wallTimeMs!.median);
        const cost = await page.$eval(`tr[data-label="${e.label}"] td[data-field="cost"]`, (td) => Number(td.getAttribute('data-value')));
        assert.equal(cost, e.cost!.per1000Runs.median);
      }
      assert.equal(await page.locator('rect.cost-bar').count(), 3, 'the cost chart');
      assert.ok((await page.locator('#hosts tbody tr').count()) >= 3, 'the system info of each worker');
      assert.match(await page.locator('.emulated-note').innerText(), /qemu-user/);
      assert.deepEqual(requests, [], 'a self-contained page fetches nothing');
    } finally {
      await browser.close();
    }
  });

  test('--detach returns the id at once; --show prints the comparison the server ran', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const x86 = compileC(WORK, 'x86_64', { static: true });
    const r = await remex(['compare', '--detach', '--repeat', '2', '--warmup', '0', `${X86}=${x86}`, `${X86}=${x86}`, '--', ITERATIONS]);
    assert.equal(r.code, 0, r.stderr);
    const id = r.stdout.trim();
    assert.match(id, /^[0-9a-f-]{36}$/);
    let doc: ComparisonDocument;
    do {
      doc = await ts.client.request<ComparisonDocument>('GET', `/v1/comparisons/${id}`);
      if (doc.state === 'running') await new Promise((res) => setTimeout(res, 200));
    } while (doc.state === 'running');
    assert.equal(doc.state, 'completed');
    assert.deepEqual(doc.report.entries.map((e) => e.label), [X86, `${X86}#2`], 'two entries of one triple are told apart');
    const shown = await remex(['compare', '--show', id, '--json']);
    assert.equal(shown.code, 0, shown.stderr);
    assert.equal((JSON.parse(shown.stdout) as ComparisonDocument).id, id);
  });

  test('a program that fails on one platform is reported for that platform; the comparison still ends', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc', 'aarch64-linux-gnu-gcc', 'qemu-aarch64-static')) return;
    const code = '#include <stdio.h>\nint main(void){\n#ifdef __aarch64__\nfprintf(stderr,"no\\n"); return 3;\n#endif\nputs("ok"); return 0; }\n';
    const x86 = compileC({ code, name: 'fails-on-arm' }, 'x86_64', { static: true });
    const a64 = compileC({ code, name: 'fails-on-arm' }, 'aarch64', { static: true });
    const r = await remex(['compare', '--json', '--repeat', '2', '--warmup', '0', `${X86}=${x86}`, `${A64}=${a64}`]);
    assert.equal(r.code, 1, 'a failed platform is a finding scripts see');
    const doc = JSON.parse(r.stdout) as ComparisonDocument;
    assert.equal(doc.state, 'completed');
    const a = doc.report.entries.find((e) => e.label === A64)!;
    assert.equal(a.status, 'failed');
    assert.match(a.failure!, /exit code 3 \(2 runs\)/);
    assert.equal(doc.report.entries.find((e) => e.label === X86)!.status, 'ok');
  });

  test('different outputs across platforms are flagged, unless --allow-different-output', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc', 'riscv64-linux-gnu-gcc', 'qemu-riscv64-static')) return;
    // Plain char is signed on x86_64 and unsigned on riscv64: the classic cross-architecture bug.
    const code = '#include <stdio.h>\nint main(void){ char c = (char)200; printf("%d\\n", (int)c); return 0; }\n';
    const x86 = compileC({ code, name: 'char-sign' }, 'x86_64', { static: true });
    const rv = compileC({ code, name: 'char-sign' }, 'riscv64', { static: true });
    const flagged = await remex(['compare', '--repeat', '1', '--warmup', '0', `${X86}=${x86}`, `${RV}=${rv}`]);
    assert.equal(flagged.code, 1, flagged.stderr);
    assert.match(flagged.stdout, /DIFFERENT OUTPUTS across platforms/);
    const allowed = await remex(['compare', '--allow-different-output', '--repeat', '1', '--warmup', '0', `${X86}=${x86}`, `${RV}=${rv}`]);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.match(allowed.stdout, /different outputs \(allowed by --allow-different-output\)/);
  });

  test('--source builds one binary per platform; a platform it does not compile for is reported, the others run', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc', 'riscv64-linux-gnu-gcc')) return;
    const src = join(dir, 'no-riscv.c');
    writeFileSync(src, '#include <stdio.h>\n#ifdef __riscv\n#error not for riscv\n#endif\nint main(void){ puts("hi"); return 0; }\n');
    const r = await remex(['compare', '--json', '--source', src, '--platforms', 'x86_64,riscv64', '--repeat', '2', '--warmup', '0']);
    assert.equal(r.code, 1, r.stderr);
    const doc = JSON.parse(r.stdout) as ComparisonDocument;
    const rv = doc.report.entries.find((e) => e.platform === RV)!;
    assert.equal(rv.status, 'not-run');
    assert.match(rv.failure!, /riscv64-linux-gnu-gcc failed: .*not for riscv/s);
    const x = doc.report.entries.find((e) => e.platform === X86)!;
    assert.equal(x.status, 'ok');
    assert.equal(x.runs.counted, 2);
  });

  test('--stdin, --env and the arguments after -- reach every run of every platform', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc', 'aarch64-linux-gnu-gcc', 'qemu-aarch64-static')) return;
    const x86 = compileC({ file: 'programs/echo.c' }, 'x86_64', { static: true });
    const a64 = compileC({ file: 'programs/echo.c' }, 'aarch64', { static: true });
    const input = join(dir, 'input.txt');
    writeFileSync(input, 'from stdin\n');
    const r = await remex(['compare', '--json', '--repeat', '1', '--warmup', '0', '--stdin', input, '--env', 'EXIT_CODE=4', `${X86}=${x86}`, `${A64}=${a64}`, '--', 'a']);
    const doc = JSON.parse(r.stdout) as ComparisonDocument;
    const expected = createHash('sha256').update('arg1=a\nfrom stdin\n').digest('hex');
    for (const run of doc.runs) {
      assert.equal(run.exitCode, 4, 'the environment reached the program');
      assert.equal(run.outputDigest, expected, 'the arguments and stdin reached the program');
    }
  });

  test('metrics from the progress channel are compared too (their direction unknown)', async (t) => {
    if (!requireTools(t, 'bwrap', 'gcc')) return;
    const code =
      '#include <stdio.h>\n#include <stdlib.h>\nint main(void){ const char *p = getenv("REMEX_PROGRESS"); FILE *f = p ? fopen(p, "a") : 0;\n' +
      'if (f) { fputs("{\\"metrics\\":{\\"triad_mbps\\":48532.5}}\\n", f); fclose(f); } puts("done"); return 0; }\n';
    const x86 = compileC({ code, name: 'progress-metric' }, 'x86_64', { static: true });
    const r = await remex(['compare', '--json', '--repeat', '2', '--warmup', '0', `${X86}=${x86}`]);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as ComparisonDocument;
    const metric = doc.report.entries[0]!.metrics.find((m) => m.name === 'triad_mbps');
    assert.equal(metric?.summary?.median, 48532.5);
    assert.equal(metric?.higherIsBetter, null);
  });

  describe('bad input: refused before anything runs', () => {
    test('--repeat 0 (CLI and HTTP API)', async () => {
      const r = await remex(['compare', '--repeat', '0', `${X86}=/bin/true`]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /--repeat must be a whole number of at least 1/);
      const digest = await ts.client.uploadFile('/bin/true');
      await assert.rejects(
        ts.client.request('POST', '/v1/comparisons', { repeat: 0, entries: [{ execution: { platform: X86, executable: digest } }] }),
        (err: unknown) => isRemexError(err, 'INVALID_ARGUMENT') && /repeat must be at least 1/.test((err as Error).message),
      );
    });

    test('an executable whose ELF machine is not its triple (CLI and HTTP API)', async (t) => {
      if (!requireTools(t, 'gcc')) return;
      const x86 = compileC(WORK, 'x86_64', { static: true });
      const r = await remex(['compare', `${A64}=${x86}`]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /is an ELF for x86_64-linux-cpu, not aarch64-linux-cpu; nothing was run/);

      const digest = await ts.client.uploadFile(x86);
      await assert.rejects(
        ts.client.request('POST', '/v1/comparisons', { entries: [{ execution: { platform: A64, executable: digest } }] }),
        (err: unknown) => isRemexError(err) && /ELF for x86_64-linux-cpu, not aarch64-linux-cpu/.test((err as Error).message),
      );
    });

    test('a triple no worker serves: an error naming it, and no run was started', async () => {
      const script = join(dir, 'script.sh');
      writeFileSync(script, '#!/bin/sh\necho hi\n');
      chmodSync(script, 0o755);
      const before = (await ts.client.listExecutions({ limit: 1000 })).executions.length;
      const r = await remex(['compare', `${X86}=${script}`, `arm-linux-cpu=${script}`]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /no worker serves arm-linux-cpu .*nothing was run/);
      assert.equal((await ts.client.listExecutions({ limit: 1000 })).executions.length, before);
    });

    test('a compiler that is missing is named', async () => {
      const src = join(dir, 'any.c');
      writeFileSync(src, 'int main(void){return 0;}\n');
      const r = await remex(['compare', '--source', src, '--platforms', 'x86_64,s390x', '--repeat', '1']);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /missing compiler: s390x-linux-gnu-gcc \(for s390x-linux-cpu\)/);
    });

    test('an unknown comparison id is NOT_FOUND', async () => {
      const r = await remex(['compare', '--show', 'no-such-comparison']);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /no comparison no-such-comparison/);
    });
  });
});
