/**
 * The autoscaler (decisions 0031, 0032): per pool the workers it wants against those it has (active, starting,
 * draining), and its recent decisions with their reasons. A server without one answers 404: said plainly.
 */
import { useEffect, useState } from 'preact/hooks';
import { ApiError, get } from '../api';
import type { AutoscalerView } from '../model';

const REFRESH_MS = 3000;

export function AutoscalerPage() {
  const [state, setState] = useState<AutoscalerView | 'none' | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let stopped = false;
    const load = () =>
      get<AutoscalerView>('/v1/autoscaler').then(
        (s) => !stopped && (setState(s), setError(null)),
        (err: unknown) => !stopped && (err instanceof ApiError && err.status === 404 ? setState('none') : setError(String(err))),
      );
    void load();
    const timer = window.setInterval(() => void load(), REFRESH_MS);
    return () => ((stopped = true), window.clearInterval(timer));
  }, []);

  if (error) return <p class="error">{error}</p>;
  if (state === null) return <p class="muted">loading…</p>;
  if (state === 'none')
    return (
      <section>
        <h1>Autoscaler</h1>
        <p id="no-autoscaler">No autoscaler configured on this server (start it with remex serve --autoscale).</p>
      </section>
    );
  return (
    <section id="autoscaler">
      <h1>Autoscaler</h1>
      <p class="muted">
        {state.leader ? 'this controller decides' : 'another controller decides'} ({state.holder})
      </p>
      {state.pools.map((p) => (
        <div key={p.name} class="pool" data-pool={p.name} data-desired={p.desired} data-active={p.active}>
          <h2>{p.name}</h2>
          <p class="counts">
            desired <strong class="desired">{p.desired}</strong> · active <strong class="active">{p.active}</strong> · starting <strong>{p.starting}</strong> · draining{' '}
            <strong>{p.draining}</strong>
            {p.joinedUnasked > 0 && ` · ${p.joinedUnasked} joined unasked`}
            {p.neverRegistered > 0 && ` · ${p.neverRegistered} never registered`}
          </p>
          {p.lastDecision && (
            <p class="last">
              last decision {new Date(p.lastDecision.atMs).toLocaleTimeString()}: {p.lastDecision.reason}
            </p>
          )}
          <table class="decisions">
            <thead>
              <tr>
                <th>when</th>
                <th>change</th>
                <th>reason</th>
              </tr>
            </thead>
            <tbody>
              {p.changes.length === 0 && (
                <tr>
                  <td colSpan={3} class="muted">
                    no change yet
                  </td>
                </tr>
              )}
              {[...p.changes].reverse().map((d) => (
                <tr key={d.atMs} data-direction={d.direction}>
                  <td>{new Date(d.atMs).toLocaleTimeString()}</td>
                  <td>
                    {d.direction} {d.current} → {d.desired}
                  </td>
                  <td>{d.reason}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ))}
    </section>
  );
}
