/**
 * The jobs list: filters (state, platform, label, name, age), pages by the API's cursor, and live rows: the
 * `jobs` feed's batches update the rows shown and, on the first page, add new jobs that match the filters.
 * Batches are applied once per animation frame, however many arrive.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { get } from '../api';
import { live, watch } from '../live';
import type { JobRow, PlatformStatus } from '../model';
import { labelText, ms, STATES, time } from '../model';

const PAGE_SIZE = 50;

interface Filters {
  state: string;
  platform: string;
  label: string;
  name: string;
  since: string;
}

const NO_FILTERS: Filters = { state: '', platform: '', label: '', name: '', since: '' };

function queryOf(f: Filters, after: string | undefined): string {
  const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (f.state) q.set('state', f.state);
  if (f.platform) q.set('platform', f.platform);
  for (const l of f.label.split(/\s+/).filter(Boolean)) q.append('label', l);
  if (f.name) q.set('name', f.name);
  if (f.since) q.set('since', f.since);
  if (after) q.set('after', after);
  return q.toString();
}

function matches(f: Filters, job: JobRow): boolean {
  if (f.state && !f.state.split(',').includes(job.state)) return false;
  if (f.platform && job.platform !== f.platform) return false;
  if (f.name && job.name !== f.name) return false;
  for (const l of f.label.split(/\s+/).filter(Boolean)) {
    const [k, ...v] = l.split('=');
    if (job.labels[k as string] !== v.join('=')) return false;
  }
  return true;
}

export function JobsPage() {
  const [filters, setFilters] = useState<Filters>(NO_FILTERS);
  const [cursors, setCursors] = useState<string[]>([]);
  const [rows, setRows] = useState<JobRow[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [platforms, setPlatforms] = useState<string[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [reload, setReload] = useState(0);
  const incoming = useRef(new Map<string, JobRow>());
  const frame = useRef<number | undefined>(undefined);
  const view = useRef({ filters, firstPage: true });
  view.current = { filters, firstPage: cursors.length === 0 };

  useEffect(() => {
    get<{ platforms: PlatformStatus[] }>('/v1/platforms').then((s) => setPlatforms(s.platforms.map((p) => p.platform)), () => undefined);
  }, []);

  useEffect(() => {
    let stopped = false;
    get<{ executions: JobRow[]; next: string | null }>(`/v1/executions?${queryOf(filters, cursors[cursors.length - 1])}`).then(
      (page) => !stopped && (setRows(page.executions), setNext(page.next), setError(null)),
      (err: unknown) => !stopped && setError(String(err)),
    );
    return () => void (stopped = true);
  }, [filters, cursors, reload]);

  useEffect(() => {
    const apply = () => {
      frame.current = undefined;
      const batch = incoming.current;
      incoming.current = new Map();
      setRows((old) => {
        const { filters: f, firstPage } = view.current;
        const updated = old.map((r) => {
          const n = batch.get(r.id);
          if (!n) return r;
          batch.delete(r.id);
          return { ...r, ...n };
        });
        if (!firstPage) return updated;
        // What is left is new to this page: the newest first, as the list is.
        const fresh = [...batch.values()].filter((j) => matches(f, j)).sort((a, b) => b.createdAt.localeCompare(a.createdAt));
        return fresh.length ? [...fresh, ...updated].slice(0, PAGE_SIZE) : updated;
      });
    };
    const stop = live.listen((f) => {
      if (f.event !== 'jobs') return;
      if (f.overflow) return setReload((n) => n + 1);
      for (const j of f.jobs as JobRow[]) incoming.current.set(j.id, j);
      frame.current ??= requestAnimationFrame(apply);
    });
    const unwatch = watch('jobs');
    // Changes made while the feed was down (or before it was up) are read with the list again.
    const onLive = (open: boolean) => open && setReload((n) => n + 1);
    live.stateListeners.add(onLive);
    return () => {
      live.stateListeners.delete(onLive);
      stop();
      unwatch();
      if (frame.current !== undefined) cancelAnimationFrame(frame.current);
    };
  }, []);

  const onFilter = (e: Event) => {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    const value = (name: string) => ((form.elements.namedItem(name) as HTMLInputElement | HTMLSelectElement).value ?? '').trim();
    setCursors([]);
    setFilters({ state: value('state'), platform: value('platform'), label: value('label'), name: value('name'), since: value('since') });
  };

  return (
    <section>
      <h1>Jobs</h1>
      <form id="job-filters" class="filters" onSubmit={onFilter}>
        <select name="state" aria-label="state">
          <option value="">any state</option>
          {STATES.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </select>
        <select name="platform" aria-label="platform">
          <option value="">any platform</option>
          {platforms.map((p) => (
            <option key={p} value={p}>
              {p}
            </option>
          ))}
        </select>
        <input name="label" placeholder="label=value …" />
        <input name="name" placeholder="name" />
        <input name="since" placeholder="since (4h, ISO time)" />
        <button type="submit">Filter</button>
      </form>
      {error && <p class="error">{error}</p>}
      <table id="jobs">
        <thead>
          <tr>
            <th>id</th>
            <th>name</th>
            <th>state</th>
            <th>platform</th>
            <th>labels</th>
            <th>created</th>
            <th>run time</th>
            <th>exit</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((j) => (
            <tr key={j.id} data-id={j.id} data-state={j.state}>
              <td>
                <a href={`#/jobs/${encodeURIComponent(j.id)}`}>{j.id.slice(0, 8)}</a>
              </td>
              <td>{j.name ?? ''}</td>
              <td>
                <span class={`state ${j.state}`}>{j.state}</span>
              </td>
              <td>{j.platform}</td>
              <td class="labels">{labelText(j.labels)}</td>
              <td>{time(j.createdAt)}</td>
              <td>{ms(j.execTime)}</td>
              <td>{j.code ?? ''}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <p class="pager">
        <button disabled={cursors.length === 0} onClick={() => setCursors(cursors.slice(0, -1))}>
          ← newer
        </button>
        <span>page {cursors.length + 1}</span>
        <button id="next-page" disabled={next === null} onClick={() => next && setCursors([...cursors, next])}>
          older →
        </button>
      </p>
    </section>
  );
}
