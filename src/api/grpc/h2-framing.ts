/**
 * gRPC's wire framing over node:http2, by hand (the gRPC-over-HTTP/2 protocol): each message is a 1-byte
 * compressed flag, a 4-byte big-endian length and the message; a call ends with `grpc-status` and
 * `grpc-message` trailers; `grpc-timeout` sets its deadline. What decision 0040 measured against grpc-js
 * for ByteStream: no per-message objects, events or copies beyond reassembling a message that spans HTTP/2
 * DATA frames, and a message that fits inside one frame is handed on as a view of it.
 */
import type { ServerHttp2Stream } from 'node:http2';
import { RemexError } from '../../core/errors.js';

/** Splits a request body into gRPC messages, refusing one larger than `maxBytes` before buffering it. */
export class MessageDecoder {
  /** The message being reassembled, once its header is known. */
  private body: Buffer | undefined;
  private filled = 0;
  /** Bytes of a header split across chunks (fewer than 5). */
  private head: Buffer | undefined;

  constructor(private readonly maxBytes: number) {}

  /** Whether a message has begun and not ended: a body that stops here was cut short. */
  get partial(): boolean {
    return this.body !== undefined || this.head !== undefined;
  }

  /** The whole messages `chunk` completes, in order. Throws RESOURCE_EXHAUSTED or INTERNAL on a bad frame. */
  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let at = 0;
    if (this.head) {
      chunk = Buffer.concat([this.head, chunk]);
      this.head = undefined;
    }
    while (at < chunk.byteLength) {
      if (this.body) {
        const n = Math.min(this.body.byteLength - this.filled, chunk.byteLength - at);
        chunk.copy(this.body, this.filled, at, at + n);
        this.filled += n;
        at += n;
        if (this.filled === this.body.byteLength) {
          out.push(this.body);
          this.body = undefined;
        }
        continue;
      }
      if (chunk.byteLength - at < 5) {
        this.head = Buffer.from(chunk.subarray(at));
        break;
      }
      const flag = chunk[at] as number;
      const length = chunk.readUInt32BE(at + 1);
      if (flag !== 0) throw new RemexError(flag === 1 ? 'UNIMPLEMENTED' : 'INTERNAL', flag === 1 ? 'compressed gRPC messages are not accepted (send grpc-encoding identity)' : `malformed gRPC frame: flag byte ${flag}`);
      if (length > this.maxBytes) throw new RemexError('RESOURCE_EXHAUSTED', `gRPC message of ${length} bytes is larger than the ${this.maxBytes} allowed`);
      at += 5;
      if (chunk.byteLength - at >= length) {
        out.push(chunk.subarray(at, at + length));
        at += length;
      } else {
        this.body = Buffer.allocUnsafe(length);
        this.filled = 0;
      }
    }
    return out;
  }
}

const HEADERS = new Map<number, Buffer>();

/** The 5-byte prefix of an uncompressed message of `length` bytes. */
export function messagePrefix(length: number): Buffer {
  const cached = length <= 1024 * 1024 ? HEADERS.get(length) : undefined;
  if (cached) return cached;
  const prefix = Buffer.allocUnsafe(5);
  prefix[0] = 0;
  prefix.writeUInt32BE(length, 1);
  if (length === 256 * 1024 || length === 1024 * 1024) HEADERS.set(length, prefix);
  return prefix;
}

/** Below this, a message is copied behind its prefix (one small write); above, written as it is. */
const COPY_BELOW_BYTES = 16 * 1024;

/** Writes one message (prefix and bytes in one write); false when the stream's buffer is full. */
export function writeMessage(stream: ServerHttp2Stream, bytes: Uint8Array): boolean {
  if (bytes.byteLength < COPY_BELOW_BYTES) {
    const framed = Buffer.allocUnsafe(5 + bytes.byteLength);
    framed[0] = 0;
    framed.writeUInt32BE(bytes.byteLength, 1);
    framed.set(bytes, 5);
    return stream.write(framed);
  }
  stream.cork();
  stream.write(messagePrefix(bytes.byteLength));
  const more = stream.write(bytes);
  stream.uncork();
  return more;
}

const TIMEOUT_UNITS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 1e-3, n: 1e-6 };

/** A `grpc-timeout` header (up to 8 digits and a unit) in milliseconds; undefined when absent or malformed. */
export function parseTimeout(header: string | string[] | undefined): number | undefined {
  if (typeof header !== 'string') return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(header);
  if (!m) return undefined;
  return Number(m[1]) * (TIMEOUT_UNITS[m[2] as string] as number);
}

/** `grpc-message` is percent-encoded: anything outside printable ASCII, and '%' itself. */
export function encodeGrpcMessage(message: string): string {
  return message.replace(/[^\x20-\x24\x26-\x7e]+/g, (s) => encodeURIComponent(s));
}
