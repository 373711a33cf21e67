/**
 * FindMissingBlobs of 10,000 digests, half of them present (uploaded first through BatchUpdateBlobs) and
 * half absent, interleaved: what a build tool asks before uploading the inputs of a large action graph.
 * The floor, measured in the same run, is an empty FindMissingBlobs call (the gRPC round trip alone).
 *
 * Target: p50 of the 10,000-digest call under 100 ms.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Digest } from '../src/core/digest.js';
import { digestOf } from '../src/core/digest.js';
import { call, msg, reapiClients, startGrpcServe, uploadBlobs } from './grpc-common.js';
import type { GrpcServeProcess, ReapiClients } from './grpc-common.js';
import { fmt, intEnv, percentile, verdict } from './lib.js';

const DIGESTS = intEnv('BENCH_FIND_MISSING_DIGESTS', 10_000);
const CALLS = intEnv('BENCH_FIND_MISSING_CALLS', 21);
const TARGET_MS = 100;

export async function benchGrpcFindMissing(): Promise<boolean> {
  const scratch = mkdtempSync(join(tmpdir(), 'remex-bench-fm-'));
  let serve: GrpcServeProcess | undefined;
  let clients: ReapiClients | undefined;
  try {
    serve = await startGrpcServe(['--workers', '0', '--data', join(scratch, 'data')]);
    clients = reapiClients(serve.grpcAddress);
    const { cas } = clients;
    // Small distinct blobs (a few dozen bytes, like headers and Directory messages), deterministic.
    const present = Math.floor(DIGESTS / 2);
    const blobs = Array.from({ length: present }, (_, i) => Buffer.from(`present blob ${i} `.padEnd(48 + (i % 64), '.')));
    const presentDigests = await uploadBlobs(cas, blobs);
    const absentDigests = Array.from({ length: DIGESTS - present }, (_, i) => digestOf(`absent blob ${i} `.padEnd(48 + (i % 64), '.')));
    const all: Digest[] = [];
    for (let i = 0; i < Math.max(present, absentDigests.length); i++) {
      if (i < presentDigests.length) all.push(presentDigests[i] as Digest);
      if (i < absentDigests.length) all.push(absentDigests[i] as Digest);
    }
    const request = { instance_name: '', blob_digests: all.map(msg) };
    const expectedMissing = new Set(absentDigests.map((d) => d.hash));

    const findAll = async (): Promise<number> => {
      const t = performance.now();
      const res = await call(cas, cas.findMissingBlobs, request);
      const ms = performance.now() - t;
      if (res.missing_blob_digests.length !== expectedMissing.size || !res.missing_blob_digests.every((d) => expectedMissing.has(d.hash))) {
        throw new Error(`FindMissingBlobs answered ${res.missing_blob_digests.length} missing, expected exactly the ${expectedMissing.size} absent ones`);
      }
      return ms;
    };
    const findNone = async (): Promise<number> => {
      const t = performance.now();
      const res = await call(cas, cas.findMissingBlobs, { instance_name: '', blob_digests: [] });
      if (res.missing_blob_digests.length !== 0) throw new Error('empty FindMissingBlobs reported missing blobs');
      return performance.now() - t;
    };

    const first = await findAll();
    for (let i = 0; i < 5; i++) {
      await findAll();
      await findNone();
    }
    const full: number[] = [];
    const empty: number[] = [];
    for (let i = 0; i < CALLS; i++) {
      full.push(await findAll());
      empty.push(await findNone());
    }
    const p50 = percentile(full, 50);
    console.log(`FindMissingBlobs of ${all.length} digests (${presentDigests.length} present, ${absentDigests.length} absent), ${CALLS} calls, one at a time`);
    console.log(`  floor (empty request)  p50 ${fmt(percentile(empty, 50))}  max ${fmt(Math.max(...empty))}`);
    console.log(`  ${all.length} digests        p50 ${fmt(p50)}  min ${fmt(Math.min(...full))}  max ${fmt(Math.max(...full))}  (first call ${fmt(first)})`);
    console.log(`  p50 ${fmt(p50)} (target < ${TARGET_MS} ms) ${verdict(p50 < TARGET_MS)}; ${((p50 - percentile(empty, 50)) * 1000 / all.length).toFixed(2)} µs per digest over the floor`);
    return p50 < TARGET_MS;
  } finally {
    clients?.close();
    await serve?.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}
