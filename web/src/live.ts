/**
 * One WebSocket to the server's event relay (/v1/events) for the whole page: topics watched (`watch: jobs`,
 * `workers`, `stats`) and executions followed (`follow: <id>`) are counted, sent again after a reconnect,
 * and every frame goes to every listener. With a token, the browser offers it as the subprotocol
 * `bearer.<base64url>` beside `remex.v1`: a browser cannot set an Authorization header on a WebSocket.
 */
import { currentToken } from './api';

export type Frame = Record<string, unknown> & { event?: string };
type Listener = (frame: Frame) => void;

const RECONNECT_MS = 1000;

function base64url(text: string): string {
  let binary = '';
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

class LiveFeed {
  private ws: WebSocket | undefined;
  private readonly listeners = new Set<Listener>();
  private readonly wanted = new Map<string, number>();
  private retry: number | undefined;
  /** Listeners of the connection's state (shown in the header). */
  readonly stateListeners = new Set<(open: boolean) => void>();

  connect(): void {
    if (this.ws) return;
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/events`;
    const token = currentToken();
    const ws = new WebSocket(url, token ? ['remex.v1', `bearer.${base64url(token)}`] : ['remex.v1']);
    this.ws = ws;
    ws.onopen = () => {
      for (const message of this.wanted.keys()) ws.send(message);
      for (const l of this.stateListeners) l(true);
    };
    ws.onmessage = (e) => {
      if (typeof e.data !== 'string' || e.data === 'pong') return;
      const frame = JSON.parse(e.data) as Frame;
      for (const listener of this.listeners) listener(frame);
    };
    ws.onclose = () => {
      this.ws = undefined;
      for (const l of this.stateListeners) l(false);
      this.retry = window.setTimeout(() => this.connect(), RECONNECT_MS);
    };
  }

  /** Closes and opens again (a new token). */
  reconnect(): void {
    window.clearTimeout(this.retry);
    const ws = this.ws;
    this.ws = undefined;
    if (ws) {
      ws.onclose = null;
      ws.close();
    }
    this.connect();
  }

  listen(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Sends `message` (`watch: jobs`, `follow: <id>`) while someone wants it; returns the function that stops wanting it. */
  want(message: string, undo: string): () => void {
    const n = this.wanted.get(message) ?? 0;
    this.wanted.set(message, n + 1);
    if (n === 0 && this.ws?.readyState === WebSocket.OPEN) this.ws.send(message);
    return () => {
      const left = (this.wanted.get(message) ?? 1) - 1;
      if (left > 0) return void this.wanted.set(message, left);
      this.wanted.delete(message);
      if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(undo);
    };
  }
}

export const live = new LiveFeed();

export const watch = (topic: 'jobs' | 'workers' | 'stats'): (() => void) => live.want(`watch: ${topic}`, `unwatch: ${topic}`);
export const follow = (id: string): (() => void) => live.want(`follow: ${id}`, `unsubscribe: ${id}`);
