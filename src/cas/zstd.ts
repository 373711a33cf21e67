/**
 * zstd for compressed blobs (REAPI's `compressed-blobs/zstd/…` and batch `compressor`), on zstd-napi's
 * bindings to the reference C library (decision 0033). Both directions stream in bounded steps:
 * decompression writes into one output buffer at a time and stops as soon as the output passes the size
 * the caller expects, so a small stream that would inflate to gigabytes (a zip bomb) costs at most one
 * buffer past that size.
 */
import { createRequire } from 'node:module';
import type * as ZstdBinding from 'zstd-napi/binding.js';
import { InvalidArgumentError } from '../core/errors.js';
import { asBytes } from './blob-support.js';

const zstd = createRequire(import.meta.url)('zstd-napi/binding') as typeof ZstdBinding;

/** The compression level used for blobs sent out: fast (hundreds of MB/s), most of the ratio on source text. */
export const ZSTD_LEVEL = 1;
const COMPRESSION_LEVEL = 100; // ZSTD_c_compressionLevel
const END_CONTINUE = 0;
const END_FRAME = 2;
const EMPTY = new Uint8Array(0);

/** The most compressed bytes a blob of `size` bytes can need (zstd's bound), with room for a frame header and a checksum. */
export function maxCompressedBytes(size: number): number {
  return zstd.compressBound(size) + 64;
}

/** One zstd frame of `source`, compressed as it is read. */
export async function* compressZstd(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, level = ZSTD_LEVEL): AsyncGenerator<Buffer> {
  const cctx = new zstd.CCtx();
  cctx.setParameter(COMPRESSION_LEVEL, level);
  const outSize = zstd.cStreamOutSize();
  for await (const raw of source) {
    let input = asBytes(raw);
    while (input.byteLength > 0) {
      const out = Buffer.allocUnsafe(outSize);
      const [, produced, consumed] = cctx.compressStream2(out, input, END_CONTINUE);
      input = input.subarray(consumed);
      if (produced > 0) yield out.subarray(0, produced);
    }
  }
  for (;;) {
    const out = Buffer.allocUnsafe(outSize);
    const [remaining, produced] = cctx.compressStream2(out, EMPTY, END_FRAME);
    if (produced > 0) yield out.subarray(0, produced);
    if (remaining === 0) return;
  }
}

/** `data` as one zstd frame (for batch replies: small blobs). */
export function compressZstdBytes(data: Uint8Array, level = ZSTD_LEVEL): Buffer {
  const out = Buffer.allocUnsafe(zstd.compressBound(data.byteLength));
  return out.subarray(0, new zstd.CCtx().compress(out, data, level));
}

/**
 * The bytes a zstd stream decompresses to, in chunks. InvalidArgumentError when the stream is not zstd,
 * ends mid-frame, or decompresses to more than `maxBytes` (reported as soon as it does).
 */
export async function* decompressZstd(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, maxBytes: number, what = 'compressed data'): AsyncGenerator<Buffer> {
  const dctx = new zstd.DCtx();
  const outSize = zstd.dStreamOutSize();
  let total = 0;
  // 0 once a frame is complete; a hint of bytes still expected otherwise.
  let pending = 0;
  let sawInput = false;
  for await (const raw of source) {
    let input = asBytes(raw);
    if (input.byteLength > 0) sawInput = true;
    let full = false;
    // Past the input, a full output buffer may leave decompressed bytes waiting inside: call again until not.
    while (input.byteLength > 0 || full) {
      const out = Buffer.allocUnsafe(Math.min(outSize, maxBytes - total + 1));
      let produced: number;
      let consumed: number;
      try {
        [pending, produced, consumed] = dctx.decompressStream(out, input);
      } catch (err) {
        throw new InvalidArgumentError(`${what} is not a valid zstd stream: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
      input = input.subarray(consumed);
      full = produced === out.byteLength;
      if (produced === 0 && consumed === 0) break;
      total += produced;
      if (total > maxBytes) throw new InvalidArgumentError(`${what} decompresses to more than the ${maxBytes} bytes its digest declares`);
      if (produced > 0) yield out.subarray(0, produced);
    }
  }
  if (pending !== 0 || (!sawInput && maxBytes > 0)) throw new InvalidArgumentError(`${what} ends in the middle of a zstd frame`);
}

/** What `data` (one or more zstd frames) decompresses to, at most `maxBytes`; errors as {@link decompressZstd}. */
export async function decompressZstdBytes(data: Uint8Array, maxBytes: number, what?: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of decompressZstd([data], maxBytes, what)) chunks.push(chunk);
  return Buffer.concat(chunks);
}
