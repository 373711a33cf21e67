/**
 * Adapters between grpc-js calls and the door's handlers, so every method gets the same treatment:
 * requests are decoded here (a malformed message is INVALID_ARGUMENT, where grpc-js itself would answer
 * INTERNAL), every error goes through the one converter in status.ts, and a cancelled call aborts the
 * handler's signal.
 *
 * For that, services are registered with requests left as raw bytes ({@link rawRequests}) and decoded by
 * the adapter with the method's own deserializer.
 */
import type {
  deserialize as Deserialize,
  handleClientStreamingCall,
  handleServerStreamingCall,
  handleUnaryCall,
  Metadata,
  MethodDefinition,
  ServerWritableStream,
  ServiceDefinition,
} from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { InternalError, InvalidArgumentError, RemexError } from '../../core/errors.js';
import { toServiceError } from './status.js';

/** What a handler knows of its call besides the request. */
export interface CallContext {
  /** Aborted when the client cancels or disconnects. */
  readonly signal: AbortSignal;
  readonly metadata: Metadata;
}

/** The writing end of a server-streaming call. */
export interface ResponseSink<Res> {
  /** Sends one message, waiting while the transport's buffer is full; throws once the call is cancelled. */
  send(message: Res): Promise<void>;
}

type AnyMethod = MethodDefinition<unknown, unknown>;

/** A service definition whose methods hand requests over undecoded, and each method's own decoder. */
export interface RawService {
  definition: ServiceDefinition;
  /** The decoder of one method; throws at start-up for a method the service does not have. */
  decoder(method: string): Deserialize<unknown>;
}

/**
 * A response a handler encoded already (say, one it answers often and keeps encoded): sent as these bytes.
 * They must be the method's response message type.
 */
export class EncodedResponse {
  constructor(readonly bytes: Buffer) {}
}

/**
 * A copy of `def` whose methods hand requests over undecoded, with each method's own decoder beside it,
 * and that send an {@link EncodedResponse} as it is.
 */
export function rawRequests(def: ServiceDefinition, serviceName: string): RawService {
  const definition: Record<string, AnyMethod> = {};
  const decoders = new Map<string, Deserialize<unknown>>();
  for (const [name, method] of Object.entries(def as Record<string, AnyMethod>)) {
    decoders.set(name, method.requestDeserialize);
    const serialize = method.responseSerialize;
    definition[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => bytes,
      responseSerialize: (value: unknown) => (value instanceof EncodedResponse ? value.bytes : serialize(value)),
    };
  }
  return {
    definition: definition as ServiceDefinition,
    decoder(method) {
      const decode = decoders.get(method);
      if (!decode) throw new InternalError(`${serviceName} has no method ${method}`);
      return decode;
    },
  };
}

/** Decodes one request; a message that does not parse is the client's error. */
export function decodeRequest<Req>(decode: Deserialize<unknown>, bytes: Buffer, what: string): Req {
  try {
    return decode(bytes) as Req;
  } catch (err) {
    throw new InvalidArgumentError(`malformed ${what} message: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** A unary method: `run` answers the decoded request or throws. */
export function unary<Req, Res>(
  decode: Deserialize<unknown>,
  what: string,
  logger: Logger,
  run: (req: Req, ctx: CallContext) => Promise<Res>,
): handleUnaryCall<Buffer, Res> {
  return (call, callback) => {
    const ctx = callContext(call);
    void (async () => {
      try {
        const res = await run(decodeRequest<Req>(decode, call.request, what), ctx);
        ctx.settle();
        callback(null, res);
      } catch (err) {
        ctx.settle();
        callback(toServiceError(err, logger));
      }
    })();
  };
}

/** A server-streaming method: `run` sends through the sink; the call ends OK when it resolves. */
export function serverStreaming<Req, Res>(
  decode: Deserialize<unknown>,
  what: string,
  logger: Logger,
  run: (req: Req, sink: ResponseSink<Res>, ctx: CallContext) => Promise<void>,
): handleServerStreamingCall<Buffer, Res> {
  return (call) => {
    const ctx = callContext(call);
    const sink: ResponseSink<Res> = { send: (message) => writeMessage(call, message, ctx.signal) };
    void (async () => {
      try {
        await run(decodeRequest<Req>(decode, call.request, what), sink, ctx);
        ctx.settle();
        if (!call.cancelled) call.end();
      } catch (err) {
        ctx.settle();
        if (!call.cancelled) call.emit('error', toServiceError(err, logger));
      }
    })();
  };
}

/** A client-streaming method: `run` reads the decoded requests and answers once. */
export function clientStreaming<Req, Res>(
  decode: Deserialize<unknown>,
  what: string,
  logger: Logger,
  run: (requests: AsyncIterable<Req>, ctx: CallContext) => Promise<Res>,
): handleClientStreamingCall<Buffer, Res> {
  return (call, callback) => {
    const ctx = callContext(call);
    // A handler may answer before the client half-closes (ByteStream Write answers at finish_write, or at
    // once for a blob the store has): leaving the loop then must not destroy the call, which would make
    // Node build an AbortError, stack trace and all, for every such Write. grpc-js drains what is left
    // once the status is sent.
    async function* requests(): AsyncGenerator<Req> {
      for await (const bytes of call.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) yield decodeRequest<Req>(decode, bytes, what);
    }
    void (async () => {
      try {
        const res = await run(requests(), ctx);
        ctx.settle();
        callback(null, res);
      } catch (err) {
        ctx.settle();
        callback(toServiceError(err, logger));
      }
    })();
  };
}

/** A call's context, and what the adapter tells it: the handler has answered. */
interface AdapterContext extends CallContext {
  /**
   * The handler is done: a 'cancelled' from now on is not passed on. grpc-js emits 'cancelled' at the end
   * of every call, answered or not, and aborting an AbortController then costs a DOMException with its
   * stack trace (for every Execute and Read) that nothing is left to hear.
   */
  settle(): void;
}

/**
 * The context of a call. Its AbortSignal is made on first use: most unary handlers never look at it, and
 * an AbortController per call is measurable on the action-cache hot path.
 */
function callContext(call: { cancelled: boolean; metadata: Metadata; on(event: 'cancelled', listener: () => void): unknown }): AdapterContext {
  let abort: AbortController | undefined;
  let settled = false;
  call.on('cancelled', () => {
    if (!settled) abort?.abort();
  });
  return {
    metadata: call.metadata,
    settle: () => (settled = true),
    get signal() {
      if (!abort) {
        abort = new AbortController();
        if (call.cancelled && !settled) abort.abort();
      }
      return abort.signal;
    },
  };
}

function writeMessage<Res>(call: ServerWritableStream<Buffer, Res>, message: Res, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(new RemexError('CANCELLED', 'the client cancelled the call'));
  if (call.write(message)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    };
    const onAbort = () => {
      call.off('drain', onDrain);
      reject(new RemexError('CANCELLED', 'the client cancelled the call'));
    };
    call.once('drain', onDrain);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
