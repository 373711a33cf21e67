/**
 * The fleet's workers: state (with a drain ordered but not yet acted on), generation where workers have
 * one, running jobs, heartbeat age; drain and undrain. Refreshed on worker events and every few seconds.
 */
import { useEffect, useState } from 'preact/hooks';
import { ApiError, get, post } from '../api';
import { live, watch } from '../live';
import type { JobRow, WorkerRecord } from '../model';
import { labelText, ms } from '../model';

const REFRESH_MS = 3000;

function stateOf(w: WorkerRecord): string {
  return w.state === 'active' && w.drainRequested ? 'drain-ordered' : w.state;
}

export function WorkersPage() {
  const [workers, setWorkers] = useState<WorkerRecord[]>([]);
  const [running, setRunning] = useState<Map<string, number>>(new Map());
  const [now, setNow] = useState(Date.now());
  const [error, setError] = useState<string | null>(null);
  const [tick, setTick] = useState(0);
  const refresh = () => setTick((n) => n + 1);

  useEffect(() => {
    let stopped = false;
    Promise.all([get<{ workers: WorkerRecord[] }>('/v1/workers'), get<{ executions: JobRow[] }>('/v1/executions?state=running&limit=1000')]).then(
      ([w, r]) => {
        if (stopped) return;
        const counts = new Map<string, number>();
        for (const j of r.executions) if (j.worker) counts.set(j.worker, (counts.get(j.worker) ?? 0) + 1);
        setWorkers(w.workers);
        setRunning(counts);
        setNow(Date.now());
      },
      (err: unknown) => !stopped && setError(String(err)),
    );
    return () => void (stopped = true);
  }, [tick]);

  useEffect(() => {
    const timer = window.setInterval(refresh, REFRESH_MS);
    const clock = window.setInterval(() => setNow(Date.now()), 1000);
    const stop = live.listen((f) => f.event === 'worker' && refresh());
    const unwatch = watch('workers');
    return () => {
      window.clearInterval(timer);
      window.clearInterval(clock);
      stop();
      unwatch();
    };
  }, []);

  const order = async (w: WorkerRecord, verb: 'drain' | 'undrain') => {
    try {
      await post(`/v1/workers/${encodeURIComponent(w.id)}/${verb}`);
      setError(null);
    } catch (err) {
      setError(err instanceof ApiError ? `${err.code}: ${err.message}` : String(err));
    }
    refresh();
  };

  const hasGeneration = workers.some((w) => w.generation !== undefined);
  return (
    <section>
      <h1>Workers</h1>
      {error && (
        <p class="error" id="worker-error">
          {error}
        </p>
      )}
      <table id="workers">
        <thead>
          <tr>
            <th>name</th>
            <th>id</th>
            <th>state</th>
            {hasGeneration && <th>generation</th>}
            <th>platforms</th>
            <th>running</th>
            <th>heartbeat</th>
            <th>labels</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {workers.map((w) => (
            <tr key={w.id} data-worker={w.id} data-state={stateOf(w)}>
              <td>{w.name}</td>
              <td class="id">{w.id}</td>
              <td>
                <span class={`state ${stateOf(w)}`}>{stateOf(w)}</span>
              </td>
              {hasGeneration && <td>{w.generation ?? ''}</td>}
              <td>{w.platforms.map((p) => `${p.platform}${p.emulated ? ' (emulated)' : ''}`).join(', ')}</td>
              <td>
                {running.get(w.id) ?? 0}/{w.slots}
              </td>
              <td>{w.state === 'gone' ? '—' : `${ms(Math.max(0, now - w.lastSeenAtMs))} ago`}</td>
              <td class="labels">{labelText(w.labels)}</td>
              <td>
                {w.state === 'active' && !w.drainRequested && (
                  <button class="drain" onClick={() => void order(w, 'drain')}>
                    Drain
                  </button>
                )}
                {w.state === 'active' && w.drainRequested && (
                  <button class="undrain" onClick={() => void order(w, 'undrain')}>
                    Undrain
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
