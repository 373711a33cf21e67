/**
 * ByteStream Write then Read of one large blob (1 GiB unless BENCH_BYTESTREAM_BYTES says otherwise)
 * through a `remex serve` whose data directory is on disk, against the floor of raw loopback TCP measured
 * in the same run: a plain net.Server here and a socket in a child process moving the same number of
 * bytes each way, with no framing, hashing or disk — before the server starts and after it stops, the
 * faster of the two counting.
 *
 * The blob is a deterministic pattern generated chunk by chunk, never whole in memory: a first pass
 * hashes it (the upload's resource name needs the digest), the second uploads it; the download is hashed
 * as it arrives and must match. Server memory is sampled from /proc/<pid>/status during both transfers.
 *
 * Also measured, not judged: the same client, the same blob, against a ByteStream server that stores and
 * hashes nothing on grpc-js set up as remex's is (bytestream-noop-server.ts, its own process) — what
 * grpc-js itself moves here, the ceiling of any grpc-js server; remex's figures are shown as a share of it.
 * And, where Debian's python3-grpcio is installed, both servers again with a client on gRPC's C core
 * (bytestream-client.py; another blob of the same size), which is much faster than grpc-js's, as Bazel's
 * grpc-java is: what the servers move when the client is not what limits them.
 *
 * Targets: upload + download throughput at least 50% of raw TCP's (both directions); server RSS growth
 * during the transfers under 256 MiB. Shown for context, not judged: the data directory's filesystem
 * writing the same bytes durably (write + fsync). `remex serve` no longer fsyncs each blob by default
 * (decision 0009), so an upload is bounded by how fast the page cache takes writes, which on a shared VM
 * varies from a few hundred MiB/s to GiB/s.
 *
 * The client uses a 1 MiB HTTP/2 flow-control window (grpc-java's default, so Bazel's) and 1 MiB
 * WriteRequests; the server answers Read in 256 KiB messages. BENCH_SERVE_NODE_ARGS passes node flags to
 * the server only (`--cpu-prof --cpu-prof-dir=DIR` to profile it).
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { open, unlink } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { defaultDoor } from '../src/api/grpc/grpc-server.js';
import type { ReadResponseOut, WriteRequest, WriteResponseOut } from '../src/api/grpc/messages.js';
import type { Digest } from '../src/core/digest.js';
import { DigestBuilder } from '../src/core/digest.js';
import { mb, mbps, reapiClients, startGrpcServe } from './grpc-common.js';
import type { GrpcServeProcess, ReapiClients } from './grpc-common.js';
import { intEnv, rssMb, verdict } from './lib.js';

const BYTES = intEnv('BENCH_BYTESTREAM_BYTES', 1024 * 1024 * 1024);
/** WriteRequest payload: 1 MiB, well inside the server's message limit. */
const WRITE_CHUNK = intEnv('BENCH_BYTESTREAM_CHUNK', 1024 * 1024);
const PATTERN_BYTES = 1024 * 1024;
const RSS_GROWTH_LIMIT_MB = 256;

/** 1 MiB of xorshift32 output from a fixed seed: the pattern every chunk is cut from. */
export function patternBlock(): Buffer {
  const block = Buffer.allocUnsafe(PATTERN_BYTES);
  let x = 0x9e3779b9;
  for (let i = 0; i < PATTERN_BYTES; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    block.writeUInt32LE(x >>> 0, i);
  }
  return block;
}

/**
 * The blob, `chunk` bytes at a time, each a fresh buffer (gRPC may hold it until sent): the pattern,
 * with the chunk's offset stamped into its first 8 bytes so no two chunks are alike.
 */
export function* blobChunks(total: number, chunk: number, pattern: Buffer): Generator<Buffer> {
  for (let offset = 0; offset < total; offset += chunk) {
    const n = Math.min(chunk, total - offset);
    const buf = Buffer.allocUnsafe(n);
    for (let at = 0; at < n; at += PATTERN_BYTES) pattern.copy(buf, at, 0, Math.min(PATTERN_BYTES, n - at));
    if (n >= 8) buf.writeBigUInt64LE(BigInt(offset), 0);
    yield buf;
  }
}

/** Samples a process's RSS every 25 ms until stopped; `stop` returns the largest sample. */
function sampleRss(pid: number): { stop(): number } {
  let max = rssMb(pid);
  const timer = setInterval(() => (max = Math.max(max, rssMb(pid))), 25);
  return {
    stop: () => {
      clearInterval(timer);
      return Math.max(max, rssMb(pid));
    },
  };
}

const CHILD_SCRIPT = `
const net = require('node:net');
const [port, mode, total] = process.argv.slice(1).map((v, i) => (i === 1 ? v : Number(v)));
const socket = net.connect(port, '127.0.0.1', () => {
  if (mode === 'send') {
    const block = Buffer.alloc(${PATTERN_BYTES}, 7);
    let left = total;
    const pump = () => {
      while (left > 0) {
        const n = Math.min(block.length, left);
        left -= n;
        if (!socket.write(n === block.length ? block : block.subarray(0, n))) return socket.once('drain', pump);
      }
      socket.end();
    };
    pump();
  } else {
    let got = 0;
    socket.on('data', (d) => { got += d.length; if (got >= total) socket.end(); });
  }
});
`;

/** Raw loopback TCP: `total` bytes from a child process to this one (`up`) or back (`down`), in ms. */
export async function rawTcp(direction: 'up' | 'down', total: number): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const child = spawn(process.execPath, ['-e', CHILD_SCRIPT, String(port), direction === 'up' ? 'send' : 'receive', String(total)], { stdio: 'inherit' });
  try {
    const exited = once(child, 'exit').then(([code]) => {
      throw new Error(`the raw TCP peer exited early (${String(code)})`);
    });
    exited.catch(() => undefined);
    const [socket] = (await Promise.race([once(server, 'connection'), exited])) as [Socket];
    const start = performance.now();
    if (direction === 'up') {
      let got = 0;
      socket.on('data', (d: Buffer) => (got += d.byteLength));
      await once(socket, 'end');
      if (got !== total) throw new Error(`raw TCP moved ${got} bytes, expected ${total}`);
    } else {
      const block = Buffer.alloc(PATTERN_BYTES, 7);
      for (let left = total; left > 0; ) {
        const n = Math.min(block.byteLength, left);
        left -= n;
        if (!socket.write(n === block.byteLength ? block : block.subarray(0, n))) await once(socket, 'drain');
      }
      // The receiver ends its side once it has every byte.
      await once(socket, 'end');
    }
    const ms = performance.now() - start;
    socket.destroy();
    return ms;
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = once(child, 'exit');
      child.kill();
      await gone;
    }
    server.close();
  }
}

/** Writes `total` bytes of the pattern to a new file and fsyncs it; ms. The file is removed. */
async function diskWrite(path: string, total: number, pattern: Buffer): Promise<number> {
  const start = performance.now();
  const handle = await open(path, 'wx');
  try {
    for (const chunk of blobChunks(total, WRITE_CHUNK, pattern)) {
      for (let at = 0; at < chunk.byteLength; ) at += (await handle.write(chunk, at)).bytesWritten;
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
  const ms = performance.now() - start;
  await unlink(path);
  return ms;
}

/** The door `remex serve` runs (REMEX_GRPC_DOOR or the default), whose no-op twin gives the ceiling. */
const DOOR = defaultDoor();
const NOOP_SERVER = resolve(import.meta.dirname, DOOR === 'h2' ? 'bytestream-h2-noop-server.js' : 'bytestream-noop-server.js');
/** bench/bytestream-client.py, from dist/bench/. */
const C_CORE_CLIENT = resolve(import.meta.dirname, '..', '..', 'bench', 'bytestream-client.py');

/** A python3 that can `import grpc` (Debian's python3-grpcio), or undefined. */
function pythonWithGrpc(): string | undefined {
  for (const python of ['python3', '/usr/bin/python3']) {
    if (spawnSync(python, ['-c', 'import grpc'], { stdio: 'ignore' }).status === 0) return python;
  }
  return undefined;
}

interface CCoreRun {
  write_ms: number;
  read_ms: number;
  committed: number;
  read_bytes: number;
}

/** bytestream-client.py against `address`: a blob of `total` bytes from `seed`'s pattern, written then read. */
async function cCoreClient(python: string, address: string, total: number, seed: number, verify: boolean): Promise<CCoreRun> {
  const child = spawn(python, [C_CORE_CLIENT, address, String(total), String(seed), ...(verify ? [] : ['--no-verify'])], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  // 'close', not 'exit': the output is whole only once the pipe has closed.
  const [code] = (await once(child, 'close')) as [number | null];
  if (code !== 0) throw new Error(`bytestream-client.py exited with ${String(code)}`);
  const run = JSON.parse(out) as CCoreRun;
  if (run.committed !== total || run.read_bytes !== total) throw new Error(`bytestream-client.py moved ${run.committed} up and ${run.read_bytes} down, expected ${total}`);
  return run;
}

/** Starts bytestream-noop-server.js (or another no-op server script); resolves with its address and a stop function. */
export async function startNoopServer(script = NOOP_SERVER, env: NodeJS.ProcessEnv = process.env): Promise<{ address: string; pid: number; stop(): Promise<void> }> {
  const child: ChildProcess = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'], env });
  let out = '';
  const address = await new Promise<string>((res, rej) => {
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (\S+)\n/.exec(out);
      if (m) res(m[1] as string);
    });
    child.once('exit', (code) => rej(new Error(`the no-op ByteStream server exited (${String(code)}) before listening`)));
  });
  return {
    address,
    pid: child.pid as number,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = once(child, 'exit');
      child.kill('SIGKILL');
      await gone;
    },
  };
}

/** Uploads the blob; `sentAt` is when the last request was handed to the transport (performance.now()). */
export async function upload(clients: ReapiClients, digest: Digest, pattern: Buffer): Promise<{ res: WriteResponseOut; sentAt: number }> {
  const resourceName = `uploads/${randomUUID()}/blobs/${digest.hash}/${digest.sizeBytes}`;
  let done!: (res: WriteResponseOut) => void;
  let failed!: (err: Error) => void;
  const result = new Promise<WriteResponseOut>((resolve, reject) => ((done = resolve), (failed = reject)));
  // Handled here too, so a failure while no one awaits it yet is not an unhandled rejection.
  result.catch(() => undefined);
  const call = clients.bytestream.write((err, res) => (err ? failed(err) : done(res as WriteResponseOut)));
  let offset = 0;
  for (const data of blobChunks(digest.sizeBytes, WRITE_CHUNK, pattern)) {
    const req: WriteRequest = { resource_name: offset === 0 ? resourceName : '', write_offset: offset, data, finish_write: offset + data.byteLength === digest.sizeBytes };
    offset += data.byteLength;
    if (!call.write(req)) await Promise.race([once(call, 'drain'), result]);
  }
  call.end();
  const sentAt = performance.now();
  return { res: await result, sentAt };
}

export async function download(clients: ReapiClients, digest: Digest): Promise<Digest> {
  const builder = new DigestBuilder();
  const stream = clients.bytestream.read({ resource_name: `blobs/${digest.hash}/${digest.sizeBytes}`, read_offset: 0, read_limit: 0 });
  for await (const res of stream as AsyncIterable<ReadResponseOut>) builder.update(res.data);
  return builder.digest();
}

const PARALLEL = 8;

/**
 * PARALLEL blobs of BYTES / PARALLEL, each from its own variant of the pattern, uploaded at once on one
 * channel and then downloaded at once, each download hashed and checked. Times in ms, largest server RSS.
 */
async function parallelStreams(clients: ReapiClients, pid: number, pattern: Buffer): Promise<{ writeMs: number; readMs: number; rssMax: number }> {
  const size = Math.floor(BYTES / PARALLEL);
  const patterns = Array.from({ length: PARALLEL }, (_, i) => {
    const p = Buffer.from(pattern);
    p[8] = (p[8] as number) ^ (i + 1);
    return p;
  });
  const digests = patterns.map((p) => {
    const builder = new DigestBuilder();
    for (const chunk of blobChunks(size, WRITE_CHUNK, p)) builder.update(chunk);
    return builder.digest();
  });
  let sampler = sampleRss(pid);
  let t = performance.now();
  const written = await Promise.all(digests.map((d, i) => upload(clients, d, patterns[i] as Buffer)));
  const writeMs = performance.now() - t;
  let rssMax = sampler.stop();
  for (const w of written) if (w.res.committed_size !== size) throw new Error(`parallel Write committed ${w.res.committed_size} bytes, expected ${size}`);
  sampler = sampleRss(pid);
  t = performance.now();
  const read = await Promise.all(digests.map((d) => download(clients, d)));
  const readMs = performance.now() - t;
  rssMax = Math.max(rssMax, sampler.stop());
  for (const [i, r] of read.entries()) if (r.hash !== digests[i]?.hash) throw new Error(`parallel Read ${i} returned ${r.hash}, expected ${digests[i]?.hash}`);
  return { writeMs, readMs, rssMax };
}

export async function benchGrpcByteStream(): Promise<boolean> {
  const pattern = patternBlock();
  let t = performance.now();
  const builder = new DigestBuilder();
  for (const chunk of blobChunks(BYTES, WRITE_CHUNK, pattern)) builder.update(chunk);
  const digest = builder.digest();
  const hashMs = performance.now() - t;

  // The floor, measured before the server starts and again after it stops; the faster of each direction
  // counts (noise on a shared machine only ever slows a run down).
  const tcpUp = [await rawTcp('up', BYTES)];
  const tcpDown = [await rawTcp('down', BYTES)];

  const scratch = mkdtempSync(join(tmpdir(), 'remex-bench-bs-'));
  let serve: GrpcServeProcess | undefined;
  let clients: ReapiClients | undefined;
  try {
    // For context, not judged: how fast this filesystem takes the same bytes durably (written, then
    // fsync), which would bound an upload to a store that fsyncs each blob (`remex serve --cas-fsync`).
    const diskMs = await diskWrite(join(scratch, 'disk-floor'), BYTES, pattern);
    serve = await startGrpcServe(['--workers', '0', '--data', join(scratch, 'data')]);
    // A 1 MiB HTTP/2 flow-control window, grpc-java's default (Bazel's client), instead of grpc-js's 64 KiB.
    clients = reapiClients(serve.grpcAddress, { 'grpc-node.flow_control_window': 1024 * 1024 });
    const pid = serve.child.pid as number;

    // Warm the channel and both paths with a small blob of another pattern.
    const small = Math.min(BYTES, 8 * 1024 * 1024);
    const otherPattern = patternBlock().reverse();
    const smallBuilder = new DigestBuilder();
    for (const chunk of blobChunks(small, WRITE_CHUNK, otherPattern)) smallBuilder.update(chunk);
    const smallDigest = smallBuilder.digest();
    const warm = await upload(clients, smallDigest, otherPattern);
    if (warm.res.committed_size !== small) throw new Error(`warm-up Write committed ${warm.res.committed_size} bytes, expected ${small}`);
    await download(clients, smallDigest);

    const rssStart = rssMb(pid);
    let sampler = sampleRss(pid);
    t = performance.now();
    const { res: written, sentAt } = await upload(clients, digest, pattern);
    const writeMs = performance.now() - t;
    const tailMs = t + writeMs - sentAt;
    const rssWriteMax = sampler.stop();
    if (written.committed_size !== BYTES) throw new Error(`Write committed ${written.committed_size} bytes, expected ${BYTES}`);

    sampler = sampleRss(pid);
    t = performance.now();
    const read = await download(clients, digest);
    const readMs = performance.now() - t;
    const rssReadMax = sampler.stop();
    if (read.hash !== digest.hash || read.sizeBytes !== BYTES) throw new Error(`Read returned ${read.hash}/${read.sizeBytes}, expected ${digest.hash}/${BYTES}`);

    // 8 parallel streams of an eighth each on the same channel (other blobs: a pattern per stream).
    const parallel = await parallelStreams(clients, pid, pattern);

    // The C-core client, against remex (another blob: this one is stored now) and then the no-op server.
    const python = pythonWithGrpc();
    const cCoreRemex = python ? await cCoreClient(python, serve.grpcAddress as string, BYTES, 1, true) : undefined;

    await serve.stop();
    clients.close();
    clients = undefined;

    // The ceiling: the same client and blob against a server that stores and hashes nothing.
    const noop = await startNoopServer();
    let noopWriteMs: number;
    let noopReadMs: number;
    let cCore: { remex: CCoreRun; noop: CCoreRun } | undefined;
    try {
      const noopClients = reapiClients(noop.address, { 'grpc-node.flow_control_window': 1024 * 1024 });
      try {
        const warmUp = await upload(noopClients, smallDigest, otherPattern);
        if (warmUp.res.committed_size !== small) throw new Error(`no-op warm-up Write committed ${warmUp.res.committed_size} bytes`);
        await download(noopClients, smallDigest);
        t = performance.now();
        const noopWritten = await upload(noopClients, digest, pattern);
        noopWriteMs = performance.now() - t;
        if (noopWritten.res.committed_size !== BYTES) throw new Error(`no-op Write committed ${noopWritten.res.committed_size} bytes, expected ${BYTES}`);
        t = performance.now();
        // Its bytes are a fixed pattern: only the size is checked (the client hashes them all the same).
        const noopRead = await download(noopClients, digest);
        noopReadMs = performance.now() - t;
        if (noopRead.sizeBytes !== BYTES) throw new Error(`no-op Read returned ${noopRead.sizeBytes} bytes, expected ${BYTES}`);
      } finally {
        noopClients.close();
      }
      const cCoreNoop = python ? await cCoreClient(python, noop.address, BYTES, 2, false) : undefined;
      cCore = cCoreRemex && cCoreNoop ? { remex: cCoreRemex, noop: cCoreNoop } : undefined;
    } finally {
      await noop.stop();
    }

    tcpUp.push(await rawTcp('up', BYTES));
    tcpDown.push(await rawTcp('down', BYTES));
    const tcpUpMs = Math.min(...tcpUp);
    const tcpDownMs = Math.min(...tcpDown);
    const tcpMs = tcpUpMs + tcpDownMs;
    const grpcMs = writeMs + readMs;
    const ratio = tcpMs / grpcMs;
    const growth = Math.max(rssWriteMax, rssReadMax, parallel.rssMax) - rssStart;
    console.log(`door: ${DOOR}; blob of ${mb(BYTES)} (${WRITE_CHUNK / 1024} KiB WriteRequests; pattern generated and hashed in ${(hashMs / 1000).toFixed(1)} s, ${mbps(BYTES, hashMs)})`);
    console.log(`  raw loopback TCP   up ${mbps(BYTES, tcpUpMs)}  down ${mbps(BYTES, tcpDownMs)}  both ${mbps(2 * BYTES, tcpMs)}  (best of before/after: up ${tcpUp.map((ms) => mbps(BYTES, ms)).join(' / ')}, down ${tcpDown.map((ms) => mbps(BYTES, ms)).join(' / ')})`);
    console.log(`  ByteStream         Write ${mbps(BYTES, writeMs)} (${(writeMs / 1000).toFixed(1)} s, ${((tcpUpMs / writeMs) * 100).toFixed(0)}% of TCP up)  Read ${mbps(BYTES, readMs)} (${(readMs / 1000).toFixed(1)} s, ${((tcpDownMs / readMs) * 100).toFixed(0)}% of TCP down)`);
    console.log(`  (of the Write, ${(tailMs / 1000).toFixed(1)} s passed after the client's last request was queued: the transport's last buffers, the store's rename)`);
    console.log(`  (context: this disk takes the same bytes durably, write + fsync, at ${mbps(BYTES, diskMs)}; Write ran at ${((diskMs / writeMs) * 100).toFixed(0)}% of that)`);
    const noopMs = noopWriteMs + noopReadMs;
    console.log(
      `  ${`${DOOR} itself`.padEnd(18)} Write ${mbps(BYTES, noopWriteMs)}  Read ${mbps(BYTES, noopReadMs)}  both ${mbps(2 * BYTES, noopMs)}: ${((tcpMs / noopMs) * 100).toFixed(1)}% of raw TCP ` +
        `(no-op server, same client; not judged); remex moves ${((noopMs / grpcMs) * 100).toFixed(0)}% of that (Write ${((noopWriteMs / writeMs) * 100).toFixed(0)}%, Read ${((noopReadMs / readMs) * 100).toFixed(0)}%)`,
    );
    if (cCore) {
      const [remexMs, noopBothMs] = [cCore.remex.write_ms + cCore.remex.read_ms, cCore.noop.write_ms + cCore.noop.read_ms];
      const line = (run: CCoreRun, ms: number): string => `Write ${mbps(BYTES, run.write_ms)}  Read ${mbps(BYTES, run.read_ms)}  both ${mbps(2 * BYTES, ms)} (${((tcpMs / ms) * 100).toFixed(1)}% of raw TCP)`;
      console.log(`  C-core client (python3-grpcio, another blob; not judged):`);
      console.log(`    remex            ${line(cCore.remex, remexMs)}`);
      console.log(`    no-op ${DOOR.padEnd(10)} ${line(cCore.noop, noopBothMs)}; remex moves ${((noopBothMs / remexMs) * 100).toFixed(0)}% of that`);
    } else {
      console.log('  (C-core client not run: no python3 with grpc here; Debian package python3-grpcio)');
    }
    console.log(`  Write + Read ${mbps(2 * BYTES, grpcMs)}: ${(ratio * 100).toFixed(1)}% of raw TCP (target ≥ 50%) ${verdict(ratio >= 0.5)}`);
    const parallelRatio = tcpMs / (parallel.writeMs + parallel.readMs);
    console.log(
      `  ${PARALLEL} parallel streams of ${mb(BYTES / PARALLEL)}: Write ${mbps(BYTES, parallel.writeMs)}  Read ${mbps(BYTES, parallel.readMs)}  ` +
        `Write + Read ${(parallelRatio * 100).toFixed(1)}% of raw TCP (target ≥ 50%) ${verdict(parallelRatio >= 0.5)}`,
    );
    console.log(
      `  server RSS: start ${rssStart.toFixed(0)} MB, max during Write ${rssWriteMax.toFixed(0)} MB, during Read ${rssReadMax.toFixed(0)} MB: ` +
        `(parallel ${parallel.rssMax.toFixed(0)} MB): growth ${growth.toFixed(0)} MB (target < ${RSS_GROWTH_LIMIT_MB} MB) ${verdict(growth < RSS_GROWTH_LIMIT_MB)}`,
    );
    return ratio >= 0.5 && parallelRatio >= 0.5 && growth < RSS_GROWTH_LIMIT_MB;
  } finally {
    clients?.close();
    await serve?.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}
