/**
 * The simulator's HTML report: one self-contained page (inline SVG, no script) with, per configuration, the
 * figures and three charts over time (arrivals, backlog, workers), the configurations side by side.
 */
import type { SimulationResult } from './simulator.js';

export interface NamedResult {
  name: string;
  result: SimulationResult;
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function chart(title: string, result: SimulationResult, lines: { label: string; color: string; value: (p: SimulationResult['series'][number]) => number }[], yMax: number): string {
  const w = 560;
  const h = 160;
  const pad = 30;
  const pts = result.series;
  const tMax = pts.length ? (pts[pts.length - 1] as { t: number }).t : 1;
  const x = (t: number): number => pad + ((w - pad - 5) * t) / Math.max(1, tMax);
  const y = (v: number): number => h - pad + 5 - ((h - pad) * v) / Math.max(1e-9, yMax);
  const paths = lines
    .map((l) => `<polyline fill="none" stroke="${l.color}" stroke-width="1.2" points="${pts.map((p) => `${x(p.t).toFixed(1)},${y(l.value(p)).toFixed(1)}`).join(' ')}"/>`)
    .join('');
  const legend = lines.map((l, i) => `<text x="${pad + 6 + i * 110}" y="12" font-size="11" fill="${l.color}">${esc(l.label)}</text>`).join('');
  return `<figure><figcaption>${esc(title)}</figcaption><svg width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img">
<line x1="${pad}" y1="${h - pad + 5}" x2="${w}" y2="${h - pad + 5}" stroke="#999"/><line x1="${pad}" y1="0" x2="${pad}" y2="${h - pad + 5}" stroke="#999"/>
<text x="2" y="${y(yMax) + 10}" font-size="10">${Number(yMax.toFixed(1))}</text><text x="${w - 70}" y="${h - 8}" font-size="10">${Math.round(tMax / 60)} min</text>
${legend}${paths}</svg></figure>`;
}

function figures(r: SimulationResult): string {
  const rows: [string, string][] = [
    ['jobs', String(r.jobs)],
    ['queue wait p50 / p95 / p99', `${r.waitP50Seconds.toFixed(1)} / ${r.waitP95Seconds.toFixed(1)} / ${r.waitP99Seconds.toFixed(1)} s`],
    ['worker-seconds', `${Math.round(r.workerSeconds)} (${(r.workerSeconds / r.jobSeconds).toFixed(2)}× the jobs' run time)`],
    ['cost', r.cost.toFixed(2)],
    ['scaling actions (up / down)', `${r.scaleUps} / ${r.scaleDowns}`],
    ['direction changes', `${r.directionChanges} (${(r.directionChanges / Math.max(r.simulatedHours, 1e-9)).toFixed(2)} per hour)`],
    ['time to zero after the last job', r.timeToZeroSeconds === undefined ? 'never' : `${r.timeToZeroSeconds.toFixed(0)} s`],
  ];
  return `<table>${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join('')}</table>`;
}

export function simulationHtml(title: string, results: readonly NamedResult[]): string {
  const max = (f: (p: SimulationResult['series'][number]) => number): number => Math.max(1, ...results.flatMap((r) => r.result.series.map(f)));
  const arrivalsMax = max((p) => p.arrivalsPerSecond);
  const backlogMax = max((p) => p.queued);
  const workersMax = max((p) => Math.max(p.workers, p.desired, p.running));
  const columns = results
    .map(
      ({ name, result }) => `<section><h2>${esc(name)}</h2>${figures(result)}
${chart('arrivals per second', result, [{ label: 'arrivals/s', color: '#1f77b4', value: (p) => p.arrivalsPerSecond }], arrivalsMax)}
${chart('backlog (queued jobs)', result, [{ label: 'queued', color: '#d62728', value: (p) => p.queued }], backlogMax)}
${chart('workers', result, [
  { label: 'workers', color: '#2ca02c', value: (p) => p.workers },
  { label: 'desired', color: '#ff7f0e', value: (p) => p.desired },
  { label: 'running jobs', color: '#9467bd', value: (p) => p.running },
], workersMax)}</section>`,
    )
    .join('\n');
  return `<!doctype html><html><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font-family:sans-serif;margin:1em}main{display:flex;gap:2em;flex-wrap:wrap}table{border-collapse:collapse;font-size:13px}th{text-align:left;padding-right:1em;font-weight:normal;color:#555}figure{margin:.5em 0}figcaption{font-size:12px;color:#333}</style>
</head><body><h1>${esc(title)}</h1><main>
${columns}
</main></body></html>
`;
}
