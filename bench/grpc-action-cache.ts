/**
 * Action-cache hits over gRPC against the cheapest call the same server answers: GetActionResult of a
 * stored, valid entry (a compile-like action with two output files and a stdout, the shape Bazel asks for
 * most) versus grpc.health.v1 Check, the judged no-op (GetCapabilities is measured too, for reference),
 * from this process (the server is its own `remex serve`), all with many calls in flight on one channel,
 * as a build tool issues them, through the typed grpc-js clients (requests encoded, responses decoded and
 * checked). Short rounds of each kind rotate, so drift on a shared machine hits all alike.
 *
 * Targets: p50 and p99 round trip within 1.3x of the no-op's; throughput at least 75% of the no-op's.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Action, ActionResultOut, Command } from '../src/api/grpc/messages.js';
import { digestOf, EMPTY_DIGEST } from '../src/core/digest.js';
import { call, encode, msg, reapiClients, startGrpcServe, underLoad, uploadBlobs, V2 } from './grpc-common.js';
import type { GrpcServeProcess, ReapiClients } from './grpc-common.js';
import { fmt, intEnv, percentile, verdict } from './lib.js';

const IN_FLIGHT = intEnv('BENCH_AC_IN_FLIGHT', 64);
const CALLS_PER_ROUND = intEnv('BENCH_AC_CALLS', 1_000);
const ROUNDS = intEnv('BENCH_AC_ROUNDS', 24);
const SEQUENTIAL = 500;

export async function benchGrpcActionCache(): Promise<boolean> {
  const scratch = mkdtempSync(join(tmpdir(), 'remex-bench-ac-'));
  let serve: GrpcServeProcess | undefined;
  let clients: ReapiClients | undefined;
  try {
    serve = await startGrpcServe(['--workers', '0', '--data', join(scratch, 'data')]);
    clients = reapiClients(serve.grpcAddress);
    const { ac, caps: capabilities, cas, health } = clients;
    // The entry: Action and Command in the CAS, its outputs and stdout uploaded, then UpdateActionResult.
    const object = Buffer.alloc(4096, 'o');
    const depfile = Buffer.from('hello.o: hello.c hello.h\n');
    const stdout = Buffer.from('compiled hello.c\n');
    const command: Command = {
      arguments: ['/usr/bin/gcc', '-c', 'hello.c', '-o', 'hello.o', '-MD', '-MF', 'hello.d'],
      environment_variables: [{ name: 'PATH', value: '/usr/bin:/bin' }],
      output_paths: ['hello.d', 'hello.o'],
      working_directory: '',
    };
    const commandBytes = encode(`${V2}.Command`, command);
    const action: Action = { command_digest: msg(digestOf(commandBytes)), input_root_digest: msg(EMPTY_DIGEST), do_not_cache: false };
    const actionBytes = encode(`${V2}.Action`, action);
    const actionDigest = digestOf(actionBytes);
    const [, , objectDigest, depDigest, stdoutDigest] = await uploadBlobs(cas, [actionBytes, commandBytes, object, depfile, stdout]);
    await call(ac, ac.updateActionResult, {
      instance_name: '',
      action_digest: msg(actionDigest),
      action_result: {
        output_files: [
          { path: 'hello.d', digest: msg(depDigest as typeof actionDigest) },
          { path: 'hello.o', digest: msg(objectDigest as typeof actionDigest) },
        ],
        exit_code: 0,
        stdout_digest: msg(stdoutDigest as typeof actionDigest),
      },
    });

    const hit = async (): Promise<void> => {
      const r: ActionResultOut = await call(ac, ac.getActionResult, { instance_name: '', action_digest: msg(actionDigest) });
      if (r.output_files.length !== 2) throw new Error(`unexpected action result: ${JSON.stringify(r)}`);
    };
    const noop = async (): Promise<void> => {
      const r = await call(health, health.check, { service: '' });
      if (r.status !== 'SERVING') throw new Error(`unexpected health: ${JSON.stringify(r)}`);
    };
    const caps = async (): Promise<void> => {
      const r = await call(capabilities, capabilities.getCapabilities, { instance_name: '' });
      if (!r.execution_capabilities?.exec_enabled) throw new Error(`unexpected capabilities: ${JSON.stringify(r)}`);
    };
    const kinds = [
      { name: 'no-op (health Check)', run: noop, latencies: [] as number[], ms: 0 },
      { name: 'GetCapabilities', run: caps, latencies: [] as number[], ms: 0 },
      { name: 'GetActionResult (hit)', run: hit, latencies: [] as number[], ms: 0 },
    ];
    const [floor, capsKind, hitKind] = kinds as [(typeof kinds)[0], (typeof kinds)[0], (typeof kinds)[0]];

    // Warm every path (JIT, statement caches, the channel's flow-control windows).
    for (const k of kinds) await underLoad(k.run, 3_000, IN_FLIGHT);
    // Short rounds, rotating which kind goes first, so drift and bursts of load from other tenants of a
    // shared machine fall on all kinds alike.
    for (let round = 0; round < ROUNDS; round++) {
      for (let j = 0; j < kinds.length; j++) {
        const k = kinds[(round + j) % kinds.length] as (typeof kinds)[0];
        const r = await underLoad(k.run, CALLS_PER_ROUND, IN_FLIGHT);
        k.latencies.push(...r.latencies);
        k.ms += (CALLS_PER_ROUND / r.rate) * 1000;
      }
    }
    const total = CALLS_PER_ROUND * ROUNDS;
    const rate = (k: (typeof kinds)[0]): number => total / (k.ms / 1000);
    const p50r = percentile(hitKind.latencies, 50) / percentile(floor.latencies, 50);
    const p99r = percentile(hitKind.latencies, 99) / percentile(floor.latencies, 99);
    const rateR = rate(hitKind) / rate(floor);

    // For reference only: one call at a time, the latency a lone client sees.
    const seqNoop: number[] = [];
    const seqHit: number[] = [];
    for (let i = 0; i < SEQUENTIAL; i++) {
      seqNoop.push(...(await underLoad(noop, 1, 1)).latencies);
      seqHit.push(...(await underLoad(hit, 1, 1)).latencies);
    }

    console.log(`${ROUNDS} rotating rounds of ${CALLS_PER_ROUND} calls of each kind, ${IN_FLIGHT} in flight on one channel (client: this process)`);
    for (const k of kinds) {
      console.log(`  ${k.name.padEnd(26)} p50 ${fmt(percentile(k.latencies, 50))}  p99 ${fmt(percentile(k.latencies, 99))}  ${rate(k).toFixed(0)} calls/s`);
    }
    console.log(`  hit vs no-op: p50 ratio ${p50r.toFixed(2)}x (target ≤ 1.3x) ${verdict(p50r <= 1.3)}; p99 ratio ${p99r.toFixed(2)}x (target ≤ 1.3x) ${verdict(p99r <= 1.3)}`);
    console.log(`  hit vs no-op: throughput ${(rateR * 100).toFixed(1)}% (target ≥ 75%) ${verdict(rateR >= 0.75)}`);
    console.log(
      `  (reference: hit vs GetCapabilities p50 ${(percentile(hitKind.latencies, 50) / percentile(capsKind.latencies, 50)).toFixed(2)}x, ` +
        `throughput ${((rate(hitKind) / rate(capsKind)) * 100).toFixed(1)}%; ` +
        `1 in flight, ${SEQUENTIAL} each: no-op p50 ${fmt(percentile(seqNoop, 50))}, hit p50 ${fmt(percentile(seqHit, 50))}, ratio ${(percentile(seqHit, 50) / percentile(seqNoop, 50)).toFixed(2)}x)`,
    );
    return p50r <= 1.3 && p99r <= 1.3 && rateR >= 0.75;
  } finally {
    clients?.close();
    await serve?.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}
