/**
 * A comparison for people and for scripts: an aligned terminal table, CSV, and one self-contained HTML page
 * (inline SVG charts, no script, nothing fetched). Every output marks emulated platforms and says how the
 * intervals were made. Numbers come from the report as is; the HTML carries them in data-* attributes too.
 */
import type { ComparisonDocument, EntryReport, RatioView } from './comparison.js';
import type { Interval } from './statistics.js';

export function formatMs(ms: number): string {
  if (ms >= 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 100) return `${ms.toFixed(0)} ms`;
  return `${ms.toFixed(1)} ms`;
}

export function formatKb(kb: number): string {
  return kb >= 1024 ? `${(kb / 1024).toFixed(1)} MiB` : `${kb.toFixed(0)} KiB`;
}

export function formatCost(c: number): string {
  return c === 0 ? '0' : c.toPrecision(3);
}

function formatLevel(i: Interval): string {
  return `${(i.level * 100).toFixed(1)}%`;
}

export function howItRan(e: Pick<EntryReport, 'emulated'>): string {
  return e.emulated === true ? 'EMULATED' : e.emulated === 'mixed' ? 'MIXED' : e.emulated === false ? 'native' : '?';
}

/** `2.03× (1.97–2.10) slower`, `no clear difference (0.98–1.03)`. */
export function formatRatio(r: RatioView | null, words: { higher: string; lower: string }): string {
  if (!r) return '—';
  const range = r.interval ? ` (${r.interval.low.toFixed(2)}–${r.interval.high.toFixed(2)})` : '';
  if (r.verdict === 'no clear difference') return `${r.estimate.toFixed(2)}×${range} no clear difference`;
  if (r.verdict === 'unknown') return `${r.estimate.toFixed(2)}×${range}`;
  return `${r.estimate.toFixed(2)}×${range} ${r.verdict === 'higher' ? words.higher : words.lower}`;
}

const TIME_WORDS = { higher: 'slower', lower: 'faster' };

function pad(rows: string[][], rightAligned: ReadonlySet<number>): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => `${r.map((c, i) => (rightAligned.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd()}\n`).join('');
}

/** The terminal report: the table, then outputs, cost, metrics, failures, and the method. */
export function renderText(doc: ComparisonDocument): string {
  const { report, plan } = doc;
  const out: string[] = [];
  out.push(
    `comparison ${doc.id}: ${doc.state}${doc.state === 'running' ? ` (${doc.progress.done}/${doc.progress.total} runs)` : ''}; ` +
      `${plan.repeat} run${plan.repeat === 1 ? '' : 's'} per platform after ${plan.warmup} warm-up; baseline ${report.baseline}\n\n`,
  );
  const rows: string[][] = [['platform', 'how', 'rank', 'n', 'median', '95% interval', 'mean ± sd', 'cpu (median)', 'peak mem', 'vs baseline (95%)']];
  for (const e of report.entries) {
    const w = e.wallTimeMs;
    rows.push([
      e.label,
      howItRan(e),
      e.rank !== null ? String(e.rank) : e.emulated === true ? 'not ranked' : '—',
      String(e.runs.counted),
      w ? formatMs(w.median) : e.status === 'not-run' ? 'not run' : 'failed',
      w?.medianInterval ? `${formatMs(w.medianInterval.low)}–${formatMs(w.medianInterval.high)} (${formatLevel(w.medianInterval)})` : '—',
      w ? `${formatMs(w.mean)} ± ${formatMs(w.sd)}` : '—',
      e.cpuTimeMs ? formatMs(e.cpuTimeMs.median) : '—',
      e.maxRssKb ? formatKb(e.maxRssKb.median) : '—',
      e.label === report.baseline ? 'baseline' : formatRatio(e.vsBaseline, TIME_WORDS),
    ]);
  }
  out.push(pad(rows, new Set([3, 4, 7, 8])));

  const emulated = report.entries.filter((e) => e.emulated === true || e.emulated === 'mixed');
  if (emulated.length > 0) out.push(`\nEMULATED: ${emulated.map((e) => e.label).join(', ')} ran under qemu-user: times are the emulator's, not that hardware's, and are never ranked.\n`);
  for (const e of report.entries) if (e.emulationFactor) out.push(`emulation factor of ${e.label} (emulated / native runs): ${formatRatio(e.emulationFactor, { higher: 'slower emulated', lower: 'faster emulated' })}\n`);

  const failed = report.entries.filter((e) => e.failure);
  if (failed.length > 0) {
    out.push('\nfailures:\n');
    for (const e of failed) out.push(`  ${e.label}: ${e.status === 'ok' ? 'some runs failed (not counted): ' : ''}${e.failure}\n`);
  }

  if (!report.outputs.same) {
    const how = report.outputs.allowed ? 'different outputs (allowed by --allow-different-output)' : 'DIFFERENT OUTPUTS across platforms: a cross-architecture difference, not noise';
    out.push(`\n${how}:\n`);
    for (const g of report.outputs.groups) out.push(`  ${g.digest.slice(0, 16)}…  ${g.labels.join(', ')}\n`);
    for (const e of report.entries) if (e.outputsVary) out.push(`  ${e.label}: its own runs disagree with each other\n`);
  } else if (report.outputs.groups.length > 0) {
    out.push(`\nsame output on every platform (sha256 ${report.outputs.groups[0]!.digest.slice(0, 16)}…, REMEX_METRIC lines aside)\n`);
  }

  const costed = report.entries.filter((e) => e.cost);
  if (costed.length > 0) {
    out.push('\ncost (worker price × time × one slot\'s share):\n');
    const costRows: string[][] = [['platform', 'how', 'per run', 'per 1,000 runs', '95% interval (per 1,000)', 'vs cheapest (95%)']];
    for (const e of costed) {
      const c = e.cost!;
      costRows.push([
        e.label,
        howItRan(e),
        formatCost(c.perRun.median),
        formatCost(c.per1000Runs.median),
        c.per1000Runs.interval ? `${formatCost(c.per1000Runs.interval.low)}–${formatCost(c.per1000Runs.interval.high)}` : '—',
        e.label === report.cheapest?.label ? 'cheapest' : formatRatio(c.vsCheapest, { higher: 'dearer', lower: 'cheaper' }),
      ]);
    }
    out.push(pad(costRows, new Set([2, 3])));
    if (report.cheapest) out.push(`cheapest per unit of work: ${report.cheapest.label}${report.cheapest.clear ? '' : ' (not clearly: an interval overlaps)'}\n`);
  } else if (report.entries.some((e) => e.status === 'ok')) {
    out.push('\ncost: no worker has a price (remex serve --price-per-hour, remex worker --price-per-hour)\n');
  }

  const metricNames = [...new Set(report.entries.flatMap((e) => e.metrics.map((m) => m.name)))];
  if (metricNames.length > 0) {
    out.push('\nmetrics the program reported:\n');
    const mRows: string[][] = [['metric', 'platform', 'median', 'vs baseline (95%)', 'better']];
    for (const name of metricNames) {
      for (const e of report.entries) {
        const m = e.metrics.find((x) => x.name === name);
        if (!m?.summary) continue;
        const better = m.higherIsBetter === null ? 'direction unknown' : m.higherIsBetter ? 'higher is better' : 'lower is better';
        mRows.push([name, e.label, `${fmtNumber(m.summary.median)}${m.unit ? ` ${m.unit}` : ''}`, e.label === report.baseline ? 'baseline' : formatRatio(m.vsBaseline, metricWords(m.higherIsBetter)), better]);
      }
    }
    out.push(pad(mRows, new Set([2])));
  }

  out.push(`\nintervals: ${report.method.interval}\nratios: ${report.method.ratio}\ncounted: ${report.method.counted}\n`);
  if (doc.failure) out.push(`\ncomparison failed: ${doc.failure}\n`);
  return out.join('');
}

function metricWords(higherIsBetter: boolean | null): { higher: string; lower: string } {
  if (higherIsBetter === null) return { higher: 'higher', lower: 'lower' };
  return higherIsBetter ? { higher: 'higher (better)', lower: 'lower (worse)' } : { higher: 'higher (worse)', lower: 'lower (better)' };
}

function fmtNumber(x: number): string {
  return Math.abs(x) >= 1000 || Number.isInteger(x) ? String(Math.round(x * 100) / 100) : x.toPrecision(4);
}

function csvCell(v: string | number | boolean | null | undefined): string {
  if (v === null || v === undefined) return '';
  const s = String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** One row per platform, numbers unformatted (ms, KiB, the operator's price unit). */
export function renderCsv(doc: ComparisonDocument): string {
  const header = [
    'label', 'platform', 'emulated', 'status', 'rank', 'n', 'failed_runs', 'warmup_runs',
    'wall_ms_min', 'wall_ms_median', 'wall_ms_mean', 'wall_ms_sd', 'wall_ms_max', 'wall_ms_median_ci_low', 'wall_ms_median_ci_high', 'wall_ms_median_ci_level',
    'cpu_ms_median', 'max_rss_kb_median',
    'ratio_vs_baseline', 'ratio_ci_low', 'ratio_ci_high', 'ratio_verdict',
    'emulation_factor', 'cost_per_run_median', 'cost_per_1000_runs_median', 'cost_per_1000_ci_low', 'cost_per_1000_ci_high',
    'output_sha256', 'failure',
  ];
  const lines = [header.join(',')];
  for (const e of doc.report.entries) {
    const w = e.wallTimeMs;
    const row = [
      e.label, e.platform, e.emulated, e.status, e.rank, e.runs.counted, e.runs.failed, e.runs.warmup,
      w?.min, w?.median, w?.mean, w?.sd, w?.max, w?.medianInterval?.low, w?.medianInterval?.high, w?.medianInterval?.level,
      e.cpuTimeMs?.median, e.maxRssKb?.median,
      e.vsBaseline?.estimate, e.vsBaseline?.interval?.low, e.vsBaseline?.interval?.high, e.vsBaseline?.verdict,
      e.emulationFactor?.estimate, e.cost?.perRun.median, e.cost?.per1000Runs.median, e.cost?.per1000Runs.interval?.low, e.cost?.per1000Runs.interval?.high,
      e.outputDigest, e.failure,
    ];
    lines.push(row.map(csvCell).join(','));
  }
  return `${lines.join('\n')}\n`;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A horizontal bar chart: one bar per entry (its median) with its interval as a whisker. */
function barChart(cls: string, title: string, bars: Array<{ label: string; emulated: boolean; value: number; interval: Interval | null; text: string }>): string {
  const rowH = 34;
  const left = 230;
  const width = 760;
  const plotW = width - left - 150;
  const max = Math.max(...bars.map((b) => Math.max(b.value, b.interval?.high ?? 0)), Number.MIN_VALUE);
  const x = (v: number) => left + (v / max) * plotW;
  const height = bars.length * rowH + 40;
  const parts = bars.map((b, i) => {
    const y = 30 + i * rowH;
    const whisker = b.interval
      ? `<line class="whisker" x1="${x(b.interval.low).toFixed(1)}" x2="${x(b.interval.high).toFixed(1)}" y1="${y + 11}" y2="${y + 11}" stroke="#222" stroke-width="2"/>` +
        `<line x1="${x(b.interval.low).toFixed(1)}" x2="${x(b.interval.low).toFixed(1)}" y1="${y + 5}" y2="${y + 17}" stroke="#222" stroke-width="2"/>` +
        `<line x1="${x(b.interval.high).toFixed(1)}" x2="${x(b.interval.high).toFixed(1)}" y1="${y + 5}" y2="${y + 17}" stroke="#222" stroke-width="2"/>`
      : '';
    return (
      `<text x="${left - 8}" y="${y + 15}" text-anchor="end">${esc(b.label)}${b.emulated ? ' (emulated)' : ''}</text>` +
      `<rect class="${cls}" data-label="${esc(b.label)}" data-value="${b.value}" data-emulated="${b.emulated}" x="${left}" y="${y}" width="${Math.max(1, x(b.value) - left).toFixed(1)}" height="22" fill="${b.emulated ? `url(#hatch-${cls})` : '#3b7dd8'}" stroke="#1d4f91"/>` +
      whisker +
      `<text x="${(Math.max(x(b.value), x(b.interval?.high ?? 0)) + 6).toFixed(1)}" y="${y + 15}">${esc(b.text)}</text>`
    );
  });
  return (
    `<svg class="chart ${cls}-chart" xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="13">` +
    `<defs><pattern id="hatch-${cls}" patternUnits="userSpaceOnUse" width="8" height="8" patternTransform="rotate(45)"><rect width="8" height="8" fill="#f3c98b"/><line x1="0" y1="0" x2="0" y2="8" stroke="#b26b00" stroke-width="4"/></pattern></defs>` +
    `<text x="10" y="18" font-weight="bold">${esc(title)}</text>${parts.join('')}</svg>`
  );
}

/** One self-contained page: the time chart, the cost chart, the table, each worker's system information. */
export function renderHtml(doc: ComparisonDocument): string {
  const { report } = doc;
  const ok = report.entries.filter((e) => e.wallTimeMs);
  const timeChart = barChart(
    'bar',
    'Median wall time per platform, with its 95% interval (hatched: emulated)',
    ok.map((e) => ({ label: e.label, emulated: e.emulated !== false, value: e.wallTimeMs!.median, interval: e.wallTimeMs!.medianInterval, text: formatMs(e.wallTimeMs!.median) })),
  );
  const costed = report.entries.filter((e) => e.cost);
  const costChart =
    costed.length > 0
      ? barChart(
          'cost-bar',
          'Cost per 1,000 runs, with its 95% interval',
          costed.map((e) => ({ label: e.label, emulated: e.emulated !== false, value: e.cost!.per1000Runs.median, interval: e.cost!.per1000Runs.interval, text: formatCost(e.cost!.per1000Runs.median) })),
        )
      : '<p class="no-cost">No cost: no worker has a price (<code>--price-per-hour</code>).</p>';
  const rows = report.entries
    .map((e) => {
      const w = e.wallTimeMs;
      const cells: Array<[string, string, string]> = [
        ['label', e.label, e.label],
        ['how', howItRan(e), String(e.emulated)],
        ['rank', e.rank !== null ? String(e.rank) : e.emulated === true ? 'not ranked (emulated)' : '—', String(e.rank)],
        ['n', String(e.runs.counted), String(e.runs.counted)],
        ['median', w ? formatMs(w.median) : e.status, String(w?.median ?? '')],
        ['interval', w?.medianInterval ? `${formatMs(w.medianInterval.low)}–${formatMs(w.medianInterval.high)} (${formatLevel(w.medianInterval)})` : '—', w?.medianInterval ? `${w.medianInterval.low},${w.medianInterval.high}` : ''],
        ['mean', w ? `${formatMs(w.mean)} ± ${formatMs(w.sd)}` : '—', String(w?.mean ?? '')],
        ['cpu', e.cpuTimeMs ? formatMs(e.cpuTimeMs.median) : '—', String(e.cpuTimeMs?.median ?? '')],
        ['memory', e.maxRssKb ? formatKb(e.maxRssKb.median) : '—', String(e.maxRssKb?.median ?? '')],
        ['ratio', e.label === report.baseline ? 'baseline' : formatRatio(e.vsBaseline, TIME_WORDS), String(e.vsBaseline?.estimate ?? '')],
        ['cost', e.cost ? formatCost(e.cost.per1000Runs.median) : '—', String(e.cost?.per1000Runs.median ?? '')],
        ['failure', e.failure ?? '', e.failure ?? ''],
      ];
      return `<tr class="${e.emulated === false ? 'native' : 'emulated'}" data-label="${esc(e.label)}">${cells.map(([field, text, value]) => `<td data-field="${field}" data-value="${esc(value)}">${esc(text)}</td>`).join('')}</tr>`;
    })
    .join('\n');
  const hosts = report.entries
    .flatMap((e) =>
      e.hosts.map(
        (h) =>
          `<tr><td>${esc(e.label)}</td><td>${esc(h.worker)}</td><td>${h.emulated ? 'emulated (qemu-user)' : 'native'}</td><td>${esc(h.host?.cpuModel ?? '?')}</td><td>${h.host?.cores ?? '?'}</td>` +
          `<td>${h.host ? `${(h.host.memoryBytes / 2 ** 30).toFixed(1)} GiB` : '?'}</td><td>${esc(h.host?.kernel ?? '?')}</td><td>${h.host?.slots ?? '?'}</td><td>${h.host?.pricePerHour ?? '—'}</td></tr>`,
      ),
    )
    .join('\n');
  const outputs = report.outputs.same
    ? `<p class="outputs same">Same output on every platform${report.outputs.groups[0] ? ` (sha256 <code>${report.outputs.groups[0].digest.slice(0, 16)}…</code>)` : ''}.</p>`
    : `<p class="outputs different"><strong>${report.outputs.allowed ? 'Different outputs (allowed)' : 'Different outputs across platforms: a finding, not noise'}</strong>: ${report.outputs.groups.map((g) => `${esc(g.labels.join(', '))} → <code>${g.digest.slice(0, 16)}…</code>`).join('; ')}</p>`;
  const emulatedNote = report.entries.some((e) => e.emulated === true || e.emulated === 'mixed')
    ? '<p class="emulated-note"><strong>Emulated</strong> platforms ran under qemu-user on a worker of another ISA: their times are the emulator\'s, not that hardware\'s, and they are never ranked.</p>'
    : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>remex compare ${esc(doc.id)}</title>
<style>
body{font-family:sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
tr.emulated td{background:#fff4e0}th{background:#eef}code{font-size:90%}.different{color:#a00}
</style></head>
<body>
<h1>remex compare</h1>
<p>Comparison <code>${esc(doc.id)}</code>, ${esc(doc.state)}, started ${esc(doc.createdAt)}: ${doc.plan.repeat} counted runs per platform after ${doc.plan.warmup} warm-up round(s); baseline <strong>${esc(report.baseline)}</strong>.</p>
${emulatedNote}
<h2>Time</h2>
${timeChart}
<h2>Cost</h2>
${costChart}
<h2>Table</h2>
<table id="results"><thead><tr><th>platform</th><th>how</th><th>rank</th><th>n</th><th>median</th><th>95% interval</th><th>mean ± sd</th><th>cpu (median)</th><th>peak memory</th><th>vs baseline (95%)</th><th>cost / 1,000 runs</th><th>failure</th></tr></thead>
<tbody>
${rows}
</tbody></table>
${outputs}
<h2>Workers</h2>
<table id="hosts"><thead><tr><th>platform</th><th>worker</th><th>how</th><th>CPU</th><th>cores</th><th>memory</th><th>kernel</th><th>slots</th><th>price / hour</th></tr></thead>
<tbody>
${hosts}
</tbody></table>
<h2>Method</h2>
<ul><li>Intervals: ${esc(report.method.interval)}</li><li>Ratios: ${esc(report.method.ratio)}</li><li>Counted: ${esc(report.method.counted)}</li></ul>
</body></html>
`;
}
