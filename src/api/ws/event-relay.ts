/**
 * Execution results over WebSocket at /v1/events, in Compiler Explorer's relay protocol: the client sends
 * `subscribe: <id>`, `unsubscribe: <id>` or `ping` (answered `pong`); each result arrives as one JSON
 * text frame (execution-view.ts). A result that was ready before the subscription is sent at once.
 *
 * remex adds `follow: <id>`: every change of the execution as it happens, each a frame with an `event`
 * field — `{"event":"state","id","state","attempt","atMs"}` and `{"event":"progress","id","attempt",
 * "percent","message"?,"metrics"?,"atMs"}` and its output `{"event":"log","id","attempt","stream":"stdout"|"stderr",
 * "offset","data"}` (data: UTF-8 text, offset: of its first byte in the stream; what was logged before the
 * follow comes first, then the output as it comes, no byte twice, none missing) — then the result as
 * `subscribe` sends it, which ends the follow.
 * Compiler Explorer's clients never send it, so their protocol is unchanged.
 *
 * The dashboard watches the fleet on the same socket: `watch: jobs|workers|stats` (dashboard-feed.ts).
 *
 * When the server has tokens, the upgrade request must carry `Authorization: Bearer <client token>`, as
 * every HTTP call does; a token in the URL is never accepted (URLs end up in logs and proxies). A browser
 * cannot set that header on a WebSocket: it offers the subprotocols `remex.v1` and `bearer.<the token in
 * base64url>` instead, and the server answers with `remex.v1` (decision 0028).
 */
import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer } from 'ws';
import type { WebSocket } from 'ws';
import { peerAddress, refusalLogLevel } from '../../auth/failed-attempts.js';
import { Authenticator } from '../../auth/tokens.js';
import type { ErrorCode } from '../../core/errors.js';
import { isTerminal } from '../../core/model.js';
import type { Scheduler } from '../../scheduler/scheduler.js';
import type { JobRecord } from '../../store/ports.js';
import { executionView } from '../execution-view.js';
import { followLogs } from '../../logs/log-follower.js';
import type { LogSources } from '../../logs/log-follower.js';
import { LOG_STREAMS } from '../../logs/log-store.js';
import { LogFrames } from '../http/log-routes.js';
import { BEARER_CHALLENGE } from '../http/auth.js';
import { toProblem } from '../http/problem.js';
import type { Problem } from '../http/problem.js';
import type { LiveStats } from '../live-stats.js';
import { DashboardFeed } from './dashboard-feed.js';

const MAX_SUBSCRIPTIONS_PER_SOCKET = 10_000;
const MAX_FRAME_BYTES = 4096;
/** Stored log a follower's socket may hold unsent before the relay waits for it to drain. */
const MAX_BUFFERED_LOG_BYTES = 1024 * 1024;

/** Resolves once the socket's unsent bytes are under the bound, or it closed. */
async function drained(ws: WebSocket): Promise<void> {
  while (ws.readyState === ws.OPEN && ws.bufferedAmount > MAX_BUFFERED_LOG_BYTES) await new Promise((r) => setTimeout(r, 20));
}

/** `server` is the HTTP or HTTPS server of the front door (both emit 'upgrade' alike). */
export function attachEventRelay(
  server: Server,
  scheduler: Scheduler,
  logger: Logger,
  auth: Authenticator,
  logs: Pick<LogSources, 'logs' | 'blobs'>,
  stats?: LiveStats,
): WebSocketServer {
  const sources: LogSources = { ...logs, events: scheduler.events, getJob: (id) => scheduler.get(id) };
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, handleProtocols: chooseProtocol });
  server.on('upgrade', (req, socket, head) => {
    if (new URL(req.url ?? '/', 'http://x').pathname !== '/v1/events') {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      return;
    }
    try {
      auth.authorize(req.headers.authorization ?? authorizationFromProtocols(req.headers['sec-websocket-protocol']), ['client'], peerAddress(req.socket.remoteAddress));
    } catch (err) {
      const problem = toProblem(err, randomUUID());
      if (problem.status >= 500) logger.error({ err, route: '/v1/events', requestId: problem.body.requestId }, 'event relay upgrade failed');
      else logger[refusalLogLevel(err)]({ route: '/v1/events', remote: req.socket.remoteAddress, code: problem.body.code }, 'event relay upgrade refused');
      refuse(socket, problem);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => serve(ws, scheduler, sources, logger, stats));
  });
  server.on('close', () => wss.close());
  return wss;
}

/** The subprotocol a browser offers (and the server picks) beside its token's. */
export const BROWSER_PROTOCOL = 'remex.v1';
const TOKEN_PROTOCOL_PREFIX = 'bearer.';

/** `remex.v1` for browsers; otherwise the first offered, as ws does by default, but never a token's echo. */
function chooseProtocol(offered: Set<string>): string | false {
  if (offered.has(BROWSER_PROTOCOL)) return BROWSER_PROTOCOL;
  return [...offered].find((p) => !p.startsWith(TOKEN_PROTOCOL_PREFIX)) ?? false;
}

/** A browser's token, offered as the subprotocol `bearer.<base64url>`, as the Authorization header it stands for. */
function authorizationFromProtocols(header: string | undefined): string | undefined {
  const offered = header?.split(',').map((p) => p.trim()).find((p) => p.startsWith(TOKEN_PROTOCOL_PREFIX));
  if (offered === undefined) return undefined;
  return `Bearer ${Buffer.from(offered.slice(TOKEN_PROTOCOL_PREFIX.length), 'base64url').toString('utf8')}`;
}

/**
 * Answers a refused upgrade with the problem JSON, status and challenge the HTTP routes send (problem.ts
 * makes both): the socket is still raw HTTP/1.1 here, outside Fastify, so the response is written by hand.
 */
function refuse(socket: Duplex, problem: Problem): void {
  const body = JSON.stringify(problem.body);
  socket.end(
    `HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status] ?? 'Error'}\r\n` +
      (problem.status === 401 ? `WWW-Authenticate: ${BEARER_CHALLENGE}\r\n` : '') +
      (typeof problem.body.details?.retryAfterMs === 'number' ? `Retry-After: ${Math.ceil(problem.body.details.retryAfterMs / 1000)}\r\n` : '') +
      `Content-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** A follower's frame for a job's state: when it entered it (queued, or started running). */
function stateFrame(job: JobRecord): object {
  const atMs = job.state === 'running' ? (job.startedAtMs ?? job.queuedAtMs) : job.queuedAtMs;
  return { event: 'state', id: job.id, state: job.state, attempt: job.attempt, atMs };
}

/** A refused message on an open socket: the relay protocol's error frame, with remex's error code. */
function errorFrame(code: ErrorCode, detail: string): string {
  return JSON.stringify({ error: { code, detail } });
}

function serve(ws: WebSocket, scheduler: Scheduler, sources: LogSources, logger: Logger, stats: LiveStats | undefined): void {
  const subscriptions = new Map<string, () => void>();
  const feed = new DashboardFeed(ws, scheduler, stats, (detail) => ws.send(errorFrame('INVALID_ARGUMENT', detail)));
  const sendFrame = (frame: object): void => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(frame));
  };
  const send = (job: JobRecord): void => sendFrame(executionView(job));
  const deliverOnce = (id: string, job: JobRecord): void => {
    const stop = subscriptions.get(id);
    if (!stop) return;
    stop();
    subscriptions.delete(id);
    send(job);
  };

  ws.on('message', (data, isBinary) => {
    const text = isBinary ? '' : data.toString().trim();
    if (text === 'ping') return ws.send('pong');
    if (feed.handle(text)) return;
    const m = /^(subscribe|follow|unsubscribe|ack):\s*(\S+)$/.exec(text);
    if (!m) return ws.send(errorFrame('INVALID_ARGUMENT', 'expected "subscribe: <id>", "follow: <id>", "unsubscribe: <id>", "watch: <topic>", "unwatch: <topic>" or "ping"'));
    const [, verb, id] = m as unknown as [string, string, string];
    if (verb === 'ack') return;
    if (verb === 'unsubscribe') {
      subscriptions.get(id)?.();
      subscriptions.delete(id);
      return;
    }
    if (subscriptions.has(id)) return;
    if (subscriptions.size >= MAX_SUBSCRIPTIONS_PER_SOCKET) {
      return ws.send(errorFrame('RESOURCE_EXHAUSTED', 'too many subscriptions on one socket'));
    }
    if (verb === 'follow') {
      // The follower reads what is stored and listens for what comes, in order (logs/log-follower.ts).
      const frames = new LogFrames(id);
      subscriptions.set(
        id,
        followLogs(sources, id, {
          streams: LOG_STREAMS,
          follow: true,
          onStart: (job) => sendFrame(stateFrame(job)),
          onJob: (job) => sendFrame(stateFrame(job)),
          onProgress: ({ jobId, attempt, percent, message, metrics, atMs }) =>
            sendFrame({ event: 'progress', id: jobId, attempt, percent, ...(message !== undefined ? { message } : {}), ...(metrics ? { metrics } : {}), atMs }),
          onBytes: ({ attempt, stream, offset, data }) => {
            const frame = frames.frame(attempt, stream, offset, data);
            if (frame) sendFrame(frame);
          },
          // Catching up on a long stored log waits for the socket to drain rather than queueing all of it.
          ready: () => (ws.bufferedAmount > MAX_BUFFERED_LOG_BYTES ? drained(ws) : undefined),
          onEnd: (job) => {
            if (job) return deliverOnce(id, job);
            subscriptions.delete(id);
            if (ws.readyState === ws.OPEN) ws.send(errorFrame('NOT_FOUND', `no execution ${id}`));
          },
          onError: (err) => {
            subscriptions.delete(id);
            logger.warn({ err, id }, 'event relay follow failed');
            if (ws.readyState === ws.OPEN) ws.send(errorFrame('INTERNAL', `following ${id} failed`));
          },
        }),
      );
      return;
    }
    // Subscribe first, then look: a result that lands in between is caught by one or the other.
    subscriptions.set(id, scheduler.events.subscribe(id, (job) => isTerminal(job.state) && deliverOnce(id, job)));
    scheduler
      .get(id)
      .then((job) => {
        if (job && isTerminal(job.state)) deliverOnce(id, job);
      })
      .catch((err: unknown) => logger.warn({ err, id }, 'event relay lookup failed'));
  });
  // A frame over maxPayload or a protocol violation: ws closes the socket (1009, 1002) and emits 'error',
  // which without a listener would be thrown and end the whole server (found by fuzzing).
  ws.on('error', (err) => logger.debug({ err }, 'event relay socket closed on a protocol error'));
  ws.on('close', () => {
    feed.close();
    for (const stop of subscriptions.values()) stop();
    subscriptions.clear();
  });
}
