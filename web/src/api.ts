/**
 * Calls to the remex HTTP API. The token lives in this tab's sessionStorage only: it travels in the
 * Authorization header (and as a WebSocket subprotocol, live.ts), never in a URL, so no log or history
 * keeps it (decision 0028).
 */
const TOKEN_KEY = 'remex.token';

export function currentToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token: string | null): void {
  if (token === null) sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token);
}

/** A refused call, with the problem JSON's code and detail. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    detail: string,
  ) {
    super(detail);
  }
}

const authListeners = new Set<() => void>();

/** Called when the server refuses the token (or asks for one). */
export function onAuthNeeded(listener: () => void): () => void {
  authListeners.add(listener);
  return () => authListeners.delete(listener);
}

function headers(json: boolean): Headers {
  const h = new Headers();
  const token = currentToken();
  if (token) h.set('authorization', `Bearer ${token}`);
  if (json) h.set('content-type', 'application/json');
  return h;
}

async function checked(res: Response): Promise<Response> {
  if (res.ok) return res;
  const body = (await res.json().catch(() => ({}))) as { code?: string; detail?: string };
  if (res.status === 401) for (const listener of authListeners) listener();
  throw new ApiError(res.status, body.code ?? 'UNKNOWN', body.detail ?? res.statusText);
}

export async function get<T>(path: string): Promise<T> {
  return (await (await checked(await fetch(path, { headers: headers(false) }))).json()) as T;
}

export async function post<T>(path: string, body: unknown = {}): Promise<T> {
  return (await (await checked(await fetch(path, { method: 'POST', headers: headers(true), body: JSON.stringify(body) }))).json()) as T;
}

/** Saves a blob under `filename`: fetched with the token, handed to the browser as an object URL. */
export async function download(hash: string, filename: string): Promise<void> {
  const res = await checked(await fetch(`/v1/blobs/sha256/${hash}`, { headers: headers(false) }));
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
