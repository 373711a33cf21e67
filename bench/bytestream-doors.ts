/**
 * Which server can carry ByteStream at line rate (decision 0040): the same grpc-js client moves a blob up
 * (Write) and down (Read) through three servers that store and hash nothing, each its own process —
 * grpc-js as remex's door is set up (bytestream-noop-server.ts), @connectrpc/connect-node over node:http2
 * (bytestream-connect-noop-server.ts), and gRPC framed by hand over node:http2
 * (bytestream-h2-noop-server.ts, the framing of src/api/grpc/h2-framing.ts) — once as one stream of
 * BENCH_BYTESTREAM_BYTES (1 GiB) and once as 8 parallel streams of an eighth of it on one connection,
 * against raw loopback TCP moving the same bytes in the same run (best of before and after).
 *
 * Two clients: grpc-js (1 MiB window, as the tests and bench/grpc-bytestream use it) and gRPC framed by
 * hand over node:http2 (so the client limits less). The clients count what they read and hash nothing (a
 * no-op server sends a fixed pattern), so what is measured is the transport. Besides wall time, each line
 * gives the server process's CPU time, the steadier figure on a shared machine. Not judged: it chooses; bench/grpc-bytestream judges remex itself.
 * `node dist/bench/run-all.js bytestream-doors`; BENCH_DOORS=grpc-js,h2 to run some only.
 */
import { once } from 'node:events';
import { connect } from 'node:http2';
import type { ClientHttp2Session } from 'node:http2';
import { resolve } from 'node:path';
import { MessageDecoder } from '../src/api/grpc/h2-framing.js';
import { H2_CONNECTION_WINDOW_BYTES, H2_MAX_FRAME_BYTES, H2_STREAM_WINDOW_BYTES } from '../src/api/grpc/h2-door.js';
import type { ReadResponseOut } from '../src/api/grpc/messages.js';
import type { Digest } from '../src/core/digest.js';
import { mbps, reapiClients } from './grpc-common.js';
import type { ReapiClients } from './grpc-common.js';
import { patternBlock, rawTcp, startNoopServer, upload } from './grpc-bytestream.js';
import { cpuMs, intEnv } from './lib.js';

const BYTES = intEnv('BENCH_BYTESTREAM_BYTES', 1024 * 1024 * 1024);
const PARALLEL = 8;
const DOORS: Record<string, string> = {
  'grpc-js': 'bytestream-noop-server.js',
  'connect-node': 'bytestream-connect-noop-server.js',
  h2: 'bytestream-h2-noop-server.js',
};

const fakeDigest = (sizeBytes: number): Digest => ({ hash: 'ab'.repeat(32), sizeBytes });

async function readCount(clients: ReapiClients, digest: Digest): Promise<number> {
  let got = 0;
  const stream = clients.bytestream.read({ resource_name: `blobs/${digest.hash}/${digest.sizeBytes}`, read_offset: 0, read_limit: 0 });
  for await (const res of stream as AsyncIterable<ReadResponseOut>) got += res.data.byteLength;
  if (got !== digest.sizeBytes) throw new Error(`Read returned ${got} bytes, expected ${digest.sizeBytes}`);
  return got;
}

async function writeAll(clients: ReapiClients, digests: Digest[], pattern: Buffer): Promise<number> {
  const t = performance.now();
  const results = await Promise.all(digests.map((d) => upload(clients, d, pattern)));
  for (const [i, r] of results.entries()) if (r.res.committed_size !== digests[i]?.sizeBytes) throw new Error(`Write committed ${r.res.committed_size}`);
  return performance.now() - t;
}

async function readAll(clients: ReapiClients, digests: Digest[]): Promise<number> {
  const t = performance.now();
  await Promise.all(digests.map((d) => readCount(clients, d)));
  return performance.now() - t;
}

/** A WriteRequest or ReadRequest by hand: string field 1, then int64 fields, bool 3, bytes 10. */
function varint(n: number): number[] {
  const out: number[] = [];
  for (; n >= 128; n = Math.floor(n / 128)) out.push((n % 128) | 0x80);
  out.push(n);
  return out;
}
function grpcFrame(parts: (number[] | Uint8Array)[]): Buffer {
  const body = Buffer.concat(parts.map((p) => (p instanceof Uint8Array ? p : Buffer.from(p))));
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(body.byteLength, 1);
  return Buffer.concat([prefix, body]);
}

/**
 * The other client: gRPC framed by hand over node:http2, with the door's windows and frame size on its
 * side too, so what limits a run is the server (grpc-js's client is slower than Bazel's grpc-java).
 */
class H2Client {
  private constructor(private readonly session: ClientHttp2Session) {}

  static async connect(address: string): Promise<H2Client> {
    const session = connect(`http://${address}`, { settings: { initialWindowSize: H2_STREAM_WINDOW_BYTES, maxFrameSize: H2_MAX_FRAME_BYTES } });
    await once(session, 'connect');
    session.setLocalWindowSize(H2_CONNECTION_WINDOW_BYTES);
    return new H2Client(session);
  }

  private request(method: string) {
    return this.session.request({ ':method': 'POST', ':path': `/google.bytestream.ByteStream/${method}`, 'content-type': 'application/grpc', te: 'trailers' });
  }

  async write(digest: Digest, pattern: Buffer): Promise<void> {
    const req = this.request('Write');
    const name = Buffer.from(`uploads/00000000-0000-4000-8000-000000000000/blobs/${digest.hash}/${digest.sizeBytes}`);
    const status = new Promise<string>((res) => req.once('trailers', (t) => res(String(t['grpc-status']))));
    req.resume();
    for (let offset = 0; offset < digest.sizeBytes; offset += CHUNK) {
      const data = pattern.subarray(0, Math.min(CHUNK, digest.sizeBytes - offset));
      const last = offset + data.byteLength === digest.sizeBytes;
      const msg = grpcFrame([...(offset === 0 ? [[0x0a, ...varint(name.byteLength)], name] : []), [0x10, ...varint(offset)], last ? [0x18, 1] : [], [0x52, ...varint(data.byteLength)], data]);
      if (!req.write(msg)) await once(req, 'drain');
    }
    req.end();
    if ((await status) !== '0') throw new Error('h2 client Write failed');
  }

  async read(digest: Digest): Promise<void> {
    const req = this.request('Read');
    const name = Buffer.from(`blobs/${digest.hash}/${digest.sizeBytes}`);
    req.end(grpcFrame([[0x0a, ...varint(name.byteLength)], name]));
    const decoder = new MessageDecoder(16 * 1024 * 1024);
    let got = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) for (const m of decoder.push(chunk)) got += m.byteLength;
    if (got < digest.sizeBytes) throw new Error(`h2 client Read got ${got} bytes`);
  }

  close(): void {
    this.session.close();
  }
}

const CHUNK = 1024 * 1024;

interface Leg {
  /** Wall time, ms. */
  write: number;
  read: number;
  /** The server process's CPU time over the same, ms: what the server costs, whatever else loads the machine. */
  writeCpu: number;
  readCpu: number;
}
interface DoorRun {
  one: Leg;
  many: Leg;
}

async function leg(pid: number, write: () => Promise<unknown>, read: () => Promise<unknown>): Promise<Leg> {
  let [cpu, t] = [cpuMs(pid), performance.now()];
  await write();
  const [writeCpu, writeMs] = [cpuMs(pid) - cpu, performance.now() - t];
  [cpu, t] = [cpuMs(pid), performance.now()];
  await read();
  return { write: writeMs, writeCpu, read: performance.now() - t, readCpu: cpuMs(pid) - cpu };
}

async function runDoor(script: string, pattern: Buffer): Promise<{ grpcJs: DoorRun; h2: DoorRun }> {
  const server = await startNoopServer(resolve(import.meta.dirname, script));
  const clients = reapiClients(server.address, { 'grpc-node.flow_control_window': 1024 * 1024 });
  const h2 = await H2Client.connect(server.address);
  try {
    const warm = [fakeDigest(8 * 1024 * 1024)];
    await writeAll(clients, warm, pattern);
    await readAll(clients, warm);
    const one = [fakeDigest(BYTES)];
    const many = Array.from({ length: PARALLEL }, () => fakeDigest(Math.floor(BYTES / PARALLEL)));
    const { pid } = server;
    const grpcJs = {
      one: await leg(pid, () => writeAll(clients, one, pattern), () => readAll(clients, one)),
      many: await leg(pid, () => writeAll(clients, many, pattern), () => readAll(clients, many)),
    };
    await h2.write(warm[0] as Digest, pattern);
    await h2.read(warm[0] as Digest);
    const h2Run = {
      one: await leg(pid, () => h2.write(one[0] as Digest, pattern), () => h2.read(one[0] as Digest)),
      many: await leg(pid, () => Promise.all(many.map((d) => h2.write(d, pattern))), () => Promise.all(many.map((d) => h2.read(d)))),
    };
    return { grpcJs, h2: h2Run };
  } finally {
    h2.close();
    clients.close();
    await server.stop();
  }
}

export async function benchByteStreamDoors(): Promise<boolean> {
  const pattern = patternBlock();
  const chosen = (process.env.BENCH_DOORS ?? Object.keys(DOORS).join(',')).split(',');
  const up = [await rawTcp('up', BYTES)];
  const down = [await rawTcp('down', BYTES)];
  const runs = new Map<string, { grpcJs: DoorRun; h2: DoorRun }>();
  for (const door of chosen) {
    const script = DOORS[door];
    if (!script) throw new Error(`unknown door ${door} (one of ${Object.keys(DOORS).join(', ')})`);
    runs.set(door, await runDoor(script, pattern));
  }
  up.push(await rawTcp('up', BYTES));
  down.push(await rawTcp('down', BYTES));
  const [tcpUp, tcpDown] = [Math.min(...up), Math.min(...down)];
  const pct = (floor: number, ms: number): string => `${((floor / ms) * 100).toFixed(1)}%`;
  console.log(`no-op ByteStream servers; grpc-js client (1 MiB window) and a hand-framed node:http2 client; 1 MiB WriteRequests, 256 KiB ReadResponses; ${BYTES / 1024 / 1024} MiB`);
  console.log(`  raw loopback TCP  up ${mbps(BYTES, tcpUp)}  down ${mbps(BYTES, tcpDown)}  (before/after: up ${up.map((ms) => mbps(BYTES, ms)).join(' / ')}, down ${down.map((ms) => mbps(BYTES, ms)).join(' / ')})`);
  for (const [door, runsOf] of runs) {
    for (const [client, run] of [['grpc-js client', runsOf.grpcJs], ['h2 client', runsOf.h2]] as const)
    for (const [label, r] of [['1 stream   ', run.one], [`${PARALLEL} streams  `, run.many]] as const) {
      console.log(
        `  ${door.padEnd(13)} ${client.padEnd(15)} ${label} Write ${mbps(BYTES, r.write)} (${pct(tcpUp, r.write)} of TCP up)  Read ${mbps(BYTES, r.read)} (${pct(tcpDown, r.read)} of TCP down)  ` +
          `Write + Read ${pct(tcpUp + tcpDown, r.write + r.read)} of TCP; server CPU ${(r.writeCpu / 1000).toFixed(1)} + ${(r.readCpu / 1000).toFixed(1)} s ` +
          `(${mbps(BYTES, r.writeCpu)} + ${mbps(BYTES, r.readCpu)} per CPU-second)`,
      );
    }
  }
  return true;
}
