/**
 * The dashboard's shell: the token prompt, the navigation and the page of the location's hash
 * (`#/jobs/<id>`: no server route per page, and nothing of a job in a URL the server logs).
 */
import { useEffect, useState } from 'preact/hooks';
import type { JSX } from 'preact';
import { ApiError, get, onAuthNeeded, setToken } from './api';
import { live } from './live';
import { AutoscalerPage } from './pages/autoscaler';
import { ComparisonPage, ComparisonsPage } from './pages/comparisons';
import { JobPage } from './pages/job';
import { JobsPage } from './pages/jobs';
import { OverviewPage } from './pages/overview';
import { WorkersPage } from './pages/workers';

interface PageDef {
  id: string;
  title: string;
  render: (arg: string | undefined) => JSX.Element;
}

/** The pages, in the navigation's order; each a component in pages/. */
const PAGES: PageDef[] = [
  { id: 'overview', title: 'Overview', render: () => <OverviewPage /> },
  { id: 'jobs', title: 'Jobs', render: (id) => (id ? <JobPage id={id} /> : <JobsPage />) },
  { id: 'workers', title: 'Workers', render: () => <WorkersPage /> },
  { id: 'comparisons', title: 'Comparisons', render: (id) => (id ? <ComparisonPage id={id} /> : <ComparisonsPage />) },
  { id: 'autoscaler', title: 'Autoscaler', render: () => <AutoscalerPage /> },
];

function route(): { page: PageDef; arg: string | undefined } {
  const [, id, arg] = location.hash.split('/');
  const page = PAGES.find((p) => p.id === id) ?? (PAGES[0] as PageDef);
  return { page, arg: arg ? decodeURIComponent(arg) : undefined };
}

export function App() {
  const [where, setWhere] = useState(route);
  const [auth, setAuth] = useState<'checking' | 'needed' | 'ok'>('checking');
  const [connected, setConnected] = useState(false);

  useEffect(() => {
    const onHash = () => setWhere(route());
    window.addEventListener('hashchange', onHash);
    const stopAuth = onAuthNeeded(() => setAuth('needed'));
    live.stateListeners.add(setConnected);
    get('/v1/platforms').then(
      () => setAuth('ok'),
      (err: unknown) => setAuth(err instanceof ApiError && err.status === 401 ? 'needed' : 'ok'),
    );
    return () => {
      window.removeEventListener('hashchange', onHash);
      stopAuth();
      live.stateListeners.delete(setConnected);
    };
  }, []);

  useEffect(() => {
    if (auth === 'ok') live.connect();
  }, [auth]);

  if (auth === 'checking') return <p class="muted">connecting…</p>;
  if (auth === 'needed') return <TokenPrompt onAccepted={() => (live.reconnect(), setAuth('ok'))} />;
  return (
    <>
      <header>
        <strong>remex</strong>
        <nav>
          {PAGES.map((p) => (
            <a key={p.id} href={`#/${p.id}`} class={p === where.page ? 'current' : ''}>
              {p.title}
            </a>
          ))}
        </nav>
        <span id="live-state" class={connected ? 'ok' : 'muted'}>
          {connected ? '● live' : '○ reconnecting'}
        </span>
      </header>
      <main>{where.page.render(where.arg)}</main>
    </>
  );
}

function TokenPrompt({ onAccepted }: { onAccepted: () => void }) {
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    const input = (e.currentTarget as HTMLFormElement).elements.namedItem('token') as HTMLInputElement;
    setToken(input.value.trim());
    try {
      await get('/v1/platforms');
      onAccepted();
    } catch (err) {
      setToken(null);
      setError(err instanceof ApiError ? `${err.code}: ${err.message}` : String(err));
    }
  };
  return (
    <form id="token-form" class="token" onSubmit={(e) => void submit(e)}>
      <h1>remex</h1>
      <p>This server requires a token. It is kept in this tab only, never in a URL.</p>
      <input name="token" type="password" autocomplete="off" placeholder="client token" required />
      <button type="submit">Sign in</button>
      {error && <p class="error" id="token-error">{error}</p>}
    </form>
  );
}
