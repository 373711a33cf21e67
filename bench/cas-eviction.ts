/**
 * A capped filesystem CAS (`remex serve --cas-max-bytes`) written 10x its cap through ByteStream, 1 MiB
 * blobs one after another, while another client keeps using one blob (FindMissingBlobs says present, then
 * a whole Read, over and over: the "upload or check, then execute" pattern the grace period protects).
 * The store's size on disk (`du -sb` of the CAS directory: files, the small-blob database and its WAL)
 * is sampled every few writes. Then FindMissingBlobs of 10,000 digests on the same, capped, server.
 *
 * Targets: peak size ≤ cap + 5%; not one failed read or presence check of the blob in use; the
 * 10,000-digest FindMissingBlobs p50 < 100 ms (floor: an empty FindMissingBlobs, same run).
 *
 * The grace period (`--cas-grace`, BENCH_EVICTION_GRACE, 100ms here) also protects what was just written,
 * so the store can exceed its cap by what is written within one grace period: the bench's defaults
 * (256 MiB cap, 100 ms) keep that within the 5%.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ReadResponseOut, WriteResponseOut } from '../src/api/grpc/messages.js';
import type { Digest } from '../src/core/digest.js';
import { digestOf } from '../src/core/digest.js';
import { call, mb, msg, reapiClients, startGrpcServe, uploadBlobs } from './grpc-common.js';
import type { GrpcServeProcess, ReapiClients } from './grpc-common.js';
import { fmt, intEnv, percentile, verdict } from './lib.js';

const MiB = 1024 * 1024;
const CAP_MIB = intEnv('BENCH_EVICTION_CAP_MIB', 256);
const GRACE = process.env.BENCH_EVICTION_GRACE ?? '100ms';
const BLOB = MiB;

function sizeOnDisk(dir: string): number {
  return Number(execFileSync('du', ['-sb', dir]).toString().split(/\s/)[0]);
}

function write(clients: ReapiClients, data: Buffer): Promise<void> {
  const d = digestOf(data);
  return new Promise((resolve, reject) => {
    const stream = clients.bytestream.write((err: Error | null, res?: WriteResponseOut) => (err ? reject(err) : res ? resolve() : reject(new Error('no response'))));
    stream.write({ resource_name: `uploads/${randomUUID()}/blobs/${d.hash}/${d.sizeBytes}`, write_offset: 0, data, finish_write: true });
    stream.end();
  });
}

async function readAll(clients: ReapiClients, d: Digest): Promise<number> {
  let got = 0;
  const stream = clients.bytestream.read({ resource_name: `blobs/${d.hash}/${d.sizeBytes}`, read_offset: 0, read_limit: 0 });
  for await (const res of stream as AsyncIterable<ReadResponseOut>) got += res.data.byteLength;
  return got;
}

export async function benchCasEviction(): Promise<boolean> {
  const scratch = mkdtempSync(join(tmpdir(), 'remex-bench-evict-'));
  const data = join(scratch, 'data');
  const casDir = join(data, 'cas');
  let serve: GrpcServeProcess | undefined;
  let clients: ReapiClients | undefined;
  let user: ReapiClients | undefined;
  try {
    serve = await startGrpcServe(['--workers', '0', '--data', data, '--cas-max-bytes', `${CAP_MIB}M`, '--cas-grace', GRACE]);
    clients = reapiClients(serve.grpcAddress);
    user = reapiClients(serve.grpcAddress);
    const cap = CAP_MIB * MiB;
    const inUse = Buffer.alloc(BLOB, 7);
    inUse.write('the blob a client keeps using');
    const inUseDigest = digestOf(inUse);
    await write(clients, inUse);

    let reads = 0;
    let failures = 0;
    let stop = false;
    const userLoop = (async () => {
      while (!stop) {
        try {
          const res = await call(user.cas, user.cas.findMissingBlobs, { instance_name: '', blob_digests: [msg(inUseDigest)] });
          if (res.missing_blob_digests.length !== 0 || (await readAll(user, inUseDigest)) !== BLOB) failures++;
        } catch {
          failures++;
        }
        reads++;
      }
    })();

    const total = 10 * cap;
    let peak = 0;
    const t = performance.now();
    for (let i = 0; i * BLOB < total; i++) {
      const blob = Buffer.alloc(BLOB, i % 251);
      blob.writeUInt32BE(i, 0);
      await write(clients, blob);
      if (i % 8 === 0) peak = Math.max(peak, sizeOnDisk(casDir));
    }
    const writeMs = performance.now() - t;
    peak = Math.max(peak, sizeOnDisk(casDir));
    stop = true;
    await userLoop;

    // Presence checks on the capped server: 5,000 small blobs present, 5,000 absent.
    const present = await uploadBlobs(clients.cas, Array.from({ length: 5000 }, (_, i) => Buffer.from(`present blob ${i} `.padEnd(48 + (i % 64), '.'))));
    const absent = Array.from({ length: 5000 }, (_, i) => digestOf(`absent blob ${i}`));
    const request = { instance_name: '', blob_digests: [...present, ...absent].map(msg) };
    const full: number[] = [];
    const empty: number[] = [];
    for (let i = 0; i < 21; i++) {
      let s = performance.now();
      const res = await call(clients.cas, clients.cas.findMissingBlobs, request);
      full.push(performance.now() - s);
      if (res.missing_blob_digests.length !== 5000) throw new Error(`FindMissingBlobs reported ${res.missing_blob_digests.length} missing, expected 5000`);
      s = performance.now();
      await call(clients.cas, clients.cas.findMissingBlobs, { instance_name: '', blob_digests: [] });
      empty.push(performance.now() - s);
    }
    const p50 = percentile(full, 50);
    const over = peak / cap;
    console.log(`cap ${mb(cap)}, grace ${GRACE}: wrote ${mb(total)} in 1 MiB blobs in ${(writeMs / 1000).toFixed(1)} s while one blob was checked and read ${reads} times`);
    console.log(`  peak store size ${mb(peak)} = ${(over * 100).toFixed(1)}% of the cap (target ≤ 105%) ${verdict(over <= 1.05)}`);
    console.log(`  failed presence checks or reads of the blob in use: ${failures} (target 0) ${verdict(failures === 0)}`);
    console.log(`  FindMissingBlobs of 10,000 digests on the capped store: p50 ${fmt(p50)} (floor: empty call p50 ${fmt(percentile(empty, 50))}; target < 100 ms) ${verdict(p50 < 100)}`);
    return over <= 1.05 && failures === 0 && p50 < 100;
  } finally {
    clients?.close();
    user?.close();
    await serve?.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}
