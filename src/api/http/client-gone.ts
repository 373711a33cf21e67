/**
 * A long-poll's way to hear that its caller hung up: a signal that aborts when the client goes away before
 * its answer is sent. Used by `?wait=1` executions and the worker protocol's lease calls.
 */
import type { FastifyReply } from 'fastify';

/**
 * Aborts when the client goes away before its answer is sent (a long-poll's caller hung up). Not the
 * request's own 'close': that fires as soon as its body has been read, which would end every wait at once.
 */
export function whenClientGone(reply: FastifyReply): AbortSignal {
  const abort = new AbortController();
  const res = reply.raw;
  res.once('close', () => {
    if (!res.writableFinished) abort.abort();
  });
  return abort.signal;
}
