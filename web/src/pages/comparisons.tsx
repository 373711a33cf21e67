/**
 * Comparisons (`remex compare`, docs/compare.md): the list, newest first, and one comparison's page — per
 * platform the counted runs, the median wall time with its interval, the ratio to the baseline, emulated
 * marked, cost, whether outputs differ, and a bar chart of the medians with their intervals. A running
 * comparison is read again every few seconds.
 */
import { useEffect, useState } from 'preact/hooks';
import { get } from '../api';
import type { ComparisonEntry, ComparisonSummary, ComparisonView } from '../model';
import { msFixed, time } from '../model';

const REFRESH_MS = 3000;

export function ComparisonsPage() {
  const [list, setList] = useState<ComparisonSummary[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  const load = (after: string | null) =>
    get<{ comparisons: ComparisonSummary[]; next: string | null }>(`/v1/comparisons?limit=50${after ? `&after=${encodeURIComponent(after)}` : ''}`).then(
      (page) => (setList((old) => (after ? [...old, ...page.comparisons] : page.comparisons)), setNext(page.next), setError(null)),
      (err: unknown) => setError(String(err)),
    );

  useEffect(() => {
    void load(null);
    const timer = window.setInterval(() => void load(null), REFRESH_MS);
    return () => window.clearInterval(timer);
  }, []);

  return (
    <section>
      <h1>Comparisons</h1>
      {error && <p class="error">{error}</p>}
      {list.length === 0 && !error && <p class="muted">No comparison yet: run one with remex compare.</p>}
      <table id="comparisons">
        <thead>
          <tr>
            <th>id</th>
            <th>state</th>
            <th>platforms</th>
            <th>baseline</th>
            <th>runs</th>
            <th>started</th>
          </tr>
        </thead>
        <tbody>
          {list.map((c) => (
            <tr key={c.id} data-id={c.id} data-state={c.state}>
              <td class="id">
                <a href={`#/comparisons/${encodeURIComponent(c.id)}`}>{c.id}</a>
              </td>
              <td>
                <span class={`state ${c.state}`}>{c.state}</span>
              </td>
              <td>{c.entries.map((e) => e.label).join(', ')}</td>
              <td>{c.baseline}</td>
              <td>
                {c.progress.done}/{c.progress.total}
              </td>
              <td>{time(c.createdAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {next && <button onClick={() => void load(next)}>More</button>}
    </section>
  );
}

function emulatedText(e: ComparisonEntry): string {
  return e.emulated === true ? 'emulated' : e.emulated === 'mixed' ? 'mixed' : e.emulated === false ? 'native' : '—';
}

function interval(i: { low: number; high: number } | null | undefined, fmt: (n: number) => string): string {
  return i ? `[${fmt(i.low)}, ${fmt(i.high)}]` : '';
}

const ratio = (n: number) => n.toFixed(3);
/** Three significant digits: a run's cost is a small fraction of the operator's unit. */
const money = (n: number) => n.toPrecision(3);

export function ComparisonPage({ id }: { id: string }) {
  const [doc, setDoc] = useState<ComparisonView | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let stopped = false;
    let timer: number | undefined;
    const load = () =>
      get<ComparisonView>(`/v1/comparisons/${encodeURIComponent(id)}`).then(
        (d) => {
          if (stopped) return;
          setDoc(d);
          setError(null);
          if (d.state === 'running') timer = window.setTimeout(load, REFRESH_MS);
        },
        (err: unknown) => !stopped && setError(String(err)),
      );
    void load();
    return () => ((stopped = true), window.clearTimeout(timer));
  }, [id]);

  if (error) return <p class="error">{error}</p>;
  if (!doc) return <p class="muted">loading…</p>;
  const { report } = doc;
  const differ = !report.outputs.same;
  return (
    <section id="comparison" data-state={doc.state}>
      <h1>
        Comparison <span class="id">{doc.id}</span> <span class={`state ${doc.state}`}>{doc.state}</span>
      </h1>
      <p class="muted">
        {doc.progress.done}/{doc.progress.total} runs · started {time(doc.createdAt)} · baseline {report.baseline}
        {report.cheapest && ` · cheapest ${report.cheapest.label}${report.cheapest.clear ? '' : ' (not clearly)'}`}
      </p>
      {doc.failure && <p class="error">{doc.failure}</p>}
      {differ && (
        <p id="outputs-differ" class={report.outputs.allowed ? 'muted' : 'error'}>
          Outputs differ across platforms{report.outputs.allowed ? ' (allowed)' : ''}: {report.outputs.groups.map((g) => `${g.labels.join(', ')} → ${g.digest.slice(0, 12)}`).join('; ')}
        </p>
      )}
      <table id="entries">
        <thead>
          <tr>
            <th>platform</th>
            <th title="native entries only, fastest first">rank</th>
            <th>how</th>
            <th>n</th>
            <th>median wall time</th>
            <th>95% interval</th>
            <th>vs baseline</th>
            <th>cost per 1,000 runs</th>
            <th>output</th>
          </tr>
        </thead>
        <tbody>
          {report.entries.map((e) => (
            <tr key={e.label} data-label={e.label} data-status={e.status}>
              <td>{e.label}</td>
              <td class="rank">{e.rank ?? '—'}</td>
              <td class={e.emulated === true ? 'emulated' : ''}>{emulatedText(e)}</td>
              <td class="n">{e.runs.counted}</td>
              <td class="median">{e.wallTimeMs ? msFixed(e.wallTimeMs.median) : e.status === 'ok' ? '—' : e.status}</td>
              <td class="interval">{interval(e.wallTimeMs?.medianInterval, msFixed)}</td>
              <td class="ratio">
                {e.label === report.baseline ? 'baseline' : e.vsBaseline ? `${ratio(e.vsBaseline.estimate)} ${interval(e.vsBaseline.interval, ratio)} ${e.vsBaseline.verdict}` : '—'}
              </td>
              <td class="cost">{e.cost ? money(e.cost.per1000Runs.median) : '—'}</td>
              <td class={differ || e.outputsVary ? 'output differs' : 'output'}>{e.outputsVary ? 'varies between runs' : e.outputDigest ? e.outputDigest.slice(0, 12) : '—'}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {report.entries.some((e) => e.failure) && (
        <ul class="failures">
          {report.entries
            .filter((e) => e.failure)
            .map((e) => (
              <li key={e.label}>
                {e.label}: {e.failure}
              </li>
            ))}
        </ul>
      )}
      <Bars entries={report.entries} />
      <p class="muted method">
        {report.method.interval}. {report.method.ratio}. Counted: {report.method.counted}.
      </p>
    </section>
  );
}

/** Median wall time per platform as horizontal bars, the median's interval as a whisker (inline SVG). */
function Bars({ entries }: { entries: ComparisonEntry[] }) {
  const shown = entries.filter((e) => e.wallTimeMs);
  if (shown.length === 0) return null;
  const top = Math.max(...shown.map((e) => e.wallTimeMs!.medianInterval?.high ?? e.wallTimeMs!.median)) || 1;
  const labelW = 180;
  const barW = 480;
  const rowH = 26;
  const x = (v: number) => labelW + (v / top) * barW;
  return (
    <svg id="comparison-chart" class="bars" width={labelW + barW + 90} height={shown.length * rowH + 8} role="img" aria-label="median wall time per platform">
      {shown.map((e, i) => {
        const s = e.wallTimeMs!;
        const y = 4 + i * rowH;
        return (
          <g key={e.label} data-label={e.label}>
            <text x={0} y={y + 16}>
              {e.label}
            </text>
            <rect x={labelW} y={y + 3} width={Math.max(1, x(s.median) - labelW)} height={rowH - 8} class={e.emulated === true ? 'bar emulated' : 'bar'} />
            {s.medianInterval && <line x1={x(s.medianInterval.low)} x2={x(s.medianInterval.high)} y1={y + rowH / 2} y2={y + rowH / 2} class="whisker" />}
            <text x={x(s.medianInterval?.high ?? s.median) + 6} y={y + 16}>
              {msFixed(s.median)}
            </text>
          </g>
        );
      })}
    </svg>
  );
}
