/**
 * ByteStream Write of a compressible 256 MiB input (source files: the .js, .ts and .md files under
 * node_modules, concatenated) to `remex serve` over loopback, plain and as `compressed-blobs/zstd/…`,
 * each as a fresh blob (a distinct header makes the digests differ), alternated, best of BENCH_COMPRESSION_ROUNDS.
 * The zstd upload's time includes the client compressing as it sends (zstd-napi, level 1, streamed: what
 * a client library does) and the server decompressing and verifying. Read back the same way, for context.
 *
 * Targets: the zstd upload moves at least 3x fewer bytes; its end-to-end time is no worse than the plain
 * upload's (ratio ≤ 1.0, floor = the plain upload in the same run).
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { ReadResponseOut, WriteRequest, WriteResponseOut } from '../src/api/grpc/messages.js';
import { compressZstd } from '../src/cas/zstd.js';
import type { Digest } from '../src/core/digest.js';
import { digestOf } from '../src/core/digest.js';
import { mb, reapiClients, startGrpcServe } from './grpc-common.js';
import type { GrpcServeProcess, ReapiClients } from './grpc-common.js';
import { intEnv, verdict } from './lib.js';

const BYTES = intEnv('BENCH_COMPRESSION_BYTES', 256 * 1024 * 1024);
const ROUNDS = intEnv('BENCH_COMPRESSION_ROUNDS', 3);
const CHUNK = 1024 * 1024;

/** Source text: files of node_modules read in a fixed order until `bytes`, repeated if there are fewer. */
function sourceInput(bytes: number): Buffer {
  const parts: Buffer[] = [];
  let total = 0;
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      if (total >= bytes) return;
      const path = join(dir, name);
      const st = statSync(path, { throwIfNoEntry: false });
      if (!st) continue;
      if (st.isDirectory()) walk(path);
      else if (/\.(js|ts|md|c|h)$/.test(name) && st.size < 4 * 1024 * 1024) {
        const data = readFileSync(path);
        parts.push(data);
        total += data.byteLength;
      }
    }
  };
  const root = resolve(import.meta.dirname, '..', '..', 'node_modules');
  while (total < bytes) {
    const before = total;
    walk(root);
    if (total === before) throw new Error(`no source files under ${root}`);
  }
  return Buffer.concat(parts).subarray(0, bytes);
}

async function* chunks(data: Buffer): AsyncGenerator<Buffer> {
  for (let at = 0; at < data.byteLength; at += CHUNK) yield data.subarray(at, at + CHUNK);
}

/** One Write of `source`'s chunks under `resource`; resolves to the bytes sent. */
async function write(clients: ReapiClients, resource: string, source: AsyncIterable<Buffer>): Promise<number> {
  let sent = 0;
  await new Promise<void>((resolveWrite, reject) => {
    const stream = clients.bytestream.write((err: Error | null, res?: WriteResponseOut) => (err ? reject(err) : res ? resolveWrite() : reject(new Error('no response'))));
    void (async () => {
      let pending: Buffer | undefined;
      for await (const chunk of source) {
        if (pending) {
          const req: WriteRequest = { resource_name: sent === 0 ? resource : '', write_offset: sent, data: pending, finish_write: false };
          sent += pending.byteLength;
          if (!stream.write(req)) await new Promise((r) => stream.once('drain', r));
        }
        pending = chunk;
      }
      stream.write({ resource_name: sent === 0 ? resource : '', write_offset: sent, data: pending ?? Buffer.alloc(0), finish_write: true });
      sent += pending?.byteLength ?? 0;
      stream.end();
    })().catch(reject);
  });
  return sent;
}

async function read(clients: ReapiClients, resource: string): Promise<number> {
  let got = 0;
  const stream = clients.bytestream.read({ resource_name: resource, read_offset: 0, read_limit: 0 });
  for await (const res of stream as AsyncIterable<ReadResponseOut>) got += res.data.byteLength;
  return got;
}

export async function benchGrpcCompression(): Promise<boolean> {
  const scratch = mkdtempSync(join(tmpdir(), 'remex-bench-zstd-'));
  let serve: GrpcServeProcess | undefined;
  let clients: ReapiClients | undefined;
  try {
    const base = sourceInput(BYTES);
    serve = await startGrpcServe(['--workers', '0', '--data', join(scratch, 'data')]);
    clients = reapiClients(serve.grpcAddress, { 'grpc.http2.lookahead_bytes': 1024 * 1024 });
    const plain: number[] = [];
    const zstd: number[] = [];
    const plainRead: number[] = [];
    const zstdRead: number[] = [];
    let sentPlain = 0;
    let sentZstd = 0;
    for (let round = 0; round < ROUNDS; round++) {
      for (const mode of ['plain', 'zstd'] as const) {
        // A fresh blob each time: the header line differs.
        const data = Buffer.concat([Buffer.from(`// ${mode} round ${round} ${randomUUID()}\n`), base.subarray(0, BYTES - 64)]);
        const d: Digest = digestOf(data);
        const name = mode === 'plain' ? `blobs/${d.hash}/${d.sizeBytes}` : `compressed-blobs/zstd/${d.hash}/${d.sizeBytes}`;
        const t = performance.now();
        const sent = await write(clients, `uploads/${randomUUID()}/${name}`, mode === 'plain' ? chunks(data) : compressZstd(chunks(data)));
        (mode === 'plain' ? plain : zstd).push(performance.now() - t);
        if (mode === 'plain') sentPlain = sent;
        else sentZstd = sent;
        const r = performance.now();
        await read(clients, name);
        (mode === 'plain' ? plainRead : zstdRead).push(performance.now() - r);
      }
    }
    const best = (xs: number[]): number => Math.min(...xs);
    const bytesRatio = sentPlain / sentZstd;
    const timeRatio = best(zstd) / best(plain);
    console.log(`ByteStream Write of ${mb(BYTES)} of source text, plain vs zstd (level 1, streamed), best of ${ROUNDS} alternated`);
    console.log(`  plain  upload ${best(plain).toFixed(0)} ms (${mb(sentPlain)} sent)   read ${best(plainRead).toFixed(0)} ms`);
    console.log(`  zstd   upload ${best(zstd).toFixed(0)} ms (${mb(sentZstd)} sent)   read ${best(zstdRead).toFixed(0)} ms (compressed on the fly; not judged)`);
    console.log(`  bytes moved: ${bytesRatio.toFixed(2)}x fewer with zstd (target ≥ 3x) ${verdict(bytesRatio >= 3)}`);
    console.log(`  upload time zstd / plain: ${timeRatio.toFixed(2)} (target ≤ 1.00) ${verdict(timeRatio <= 1)}`);
    return bytesRatio >= 3 && timeRatio <= 1;
  } finally {
    clients?.close();
    await serve?.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}
