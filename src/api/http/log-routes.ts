/**
 * `GET /v1/executions/<id>/logs`: a job's stdout and stderr as newline-delimited JSON, the frames the
 * WebSocket's `follow` sends — `{"event":"log","id","attempt","stream","offset","data"}` (data: UTF-8 text,
 * offset: of its first byte in the stream) — then `{"event":"end",…}` with the job's state and, once it has
 * ended, each stream's total and whether it was truncated. What is stored comes first (the live log while the
 * job runs, its result once it ended), then, with `follow=1`, the output as it comes until the job ends.
 * `stream=stdout|stderr` picks one; `offset=N` starts there (in the run current when the call starts).
 */
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { NotFoundError, TooLargeError } from '../../core/errors.js';
import type { LogStream } from '../../events/bus-events.js';
import { followLogs, Utf8Chunks } from '../../logs/log-follower.js';
import type { LogSources } from '../../logs/log-follower.js';
import { LOG_STREAMS } from '../../logs/log-store.js';
import type { JobRecord } from '../../store/ports.js';
import { parseWith } from '../schemas.js';
import { whenClientGone } from './client-gone.js';

/** Live output a reader may leave unread before it is cut off (it can ask again from its offset). */
export const MAX_UNREAD_LOG_BYTES = 16 * 1024 * 1024;

const logQuery = z.strictObject({
  stream: z.enum(['stdout', 'stderr']).optional(),
  offset: z.coerce.number().int().min(0).optional(),
  follow: z.enum(['0', '1', 'true', 'false']).optional(),
});

/** A follower's frames of one job's output: bytes to text frames, a character never split between two. */
export class LogFrames {
  private readonly decoders = new Map<string, Utf8Chunks>();

  constructor(private readonly jobId: string) {}

  /** The frame for these bytes, or null when they only complete a character still to come. */
  frame(attempt: number, stream: LogStream, offset: number, data: Buffer): object | null {
    const key = `${attempt}:${stream}`;
    let decoder = this.decoders.get(key);
    if (!decoder) this.decoders.set(key, (decoder = new Utf8Chunks()));
    const text = decoder.push(offset, data);
    return text && { event: 'log', id: this.jobId, attempt, stream, offset: text.offset, data: text.text };
  }
}

/** The end frame: where the job stands, and for an ended one what each stream held. */
export function endFrame(job: JobRecord): object {
  const result = job.result;
  const streams = result
    ? Object.fromEntries(LOG_STREAMS.map((s) => [s, { totalBytes: result[s].totalBytes, keptBytes: result[s].digest.sizeBytes, truncated: result[s].truncated }]))
    : {};
  return { event: 'end', id: job.id, state: job.state, attempt: job.attempt, ...streams };
}

export function registerLogRoutes(app: FastifyInstance, sources: LogSources): void {
  app.get<{ Params: { id: string } }>('/v1/executions/:id/logs', async (req, reply) => {
    const query = parseWith(logQuery, req.query, 'log query');
    const id = req.params.id;
    if (!(await sources.getJob(id))) throw new NotFoundError(`no execution ${id}`);
    const streams = query.stream ? [query.stream] : LOG_STREAMS;
    const body = new PassThrough();
    const frames = new LogFrames(id);
    const write = (frame: object | null): void => {
      if (!frame || body.destroyed) return;
      body.write(`${JSON.stringify(frame)}\n`);
      if (body.writableLength > MAX_UNREAD_LOG_BYTES) {
        stop();
        body.destroy(new TooLargeError(`log reader of ${id} too slow: over ${MAX_UNREAD_LOG_BYTES} bytes unread`));
      }
    };
    const stop = followLogs(sources, id, {
      streams,
      ...(query.offset !== undefined ? { from: Object.fromEntries(streams.map((s) => [s, query.offset])) } : {}),
      follow: query.follow === '1' || query.follow === 'true',
      onBytes: ({ attempt, stream, offset, data }) => write(frames.frame(attempt, stream, offset, data)),
      ready: () => (body.writableNeedDrain ? once(body, 'drain').then(() => undefined) : undefined),
      onEnd: (job) => {
        write(job ? endFrame(job) : { event: 'end', id, state: null });
        body.end();
      },
      onError: (err) => {
        req.log.error({ err, id }, 'following a log failed');
        body.destroy(err instanceof Error ? err : new Error(String(err)));
      },
    });
    whenClientGone(reply).addEventListener('abort', stop, { once: true });
    return reply.status(200).type('application/x-ndjson; charset=utf-8').header('cache-control', 'no-store').send(body);
  });
}
