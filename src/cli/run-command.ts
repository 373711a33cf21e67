/**
 * `remex run EXECUTABLE [-- ARGS…]`: detects the platform from the binary, uploads only what the server
 * lacks, submits, waits for the result over the WebSocket event relay, writes the program's output to its
 * own stdout and stderr, and exits with the program's code (exit-codes.ts for remex's own outcomes).
 *
 * When the connection to the controller drops while waiting, it looks the execution up by id (the client
 * moves to the next controller if this one is gone) and subscribes again there.
 */
// Not node:fs/promises: loading it (and the modules it loads) is a measurable part of a quick command's start.
import { closeSync, createReadStream, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import { constants as osConstants } from 'node:os';
import type { IncomingMessage } from 'node:http';
import type { ExecutionView, OutputView } from '../api/execution-view.js';
import type { Digest } from '../core/digest.js';
import { DigestBuilder, digestOf } from '../core/digest.js';
import { InvalidArgumentError, RemexError } from '../core/errors.js';
import type { ErrorCode } from '../core/errors.js';
import { detectExecutable, EXECUTABLE_HEADER_BYTES } from '../core/executable-format.js';
import { canonicalPlatform } from '../core/platform.js';
import { RemexClient } from '../client/remex-client.js';
import type { ExecutionSubmission } from '../client/remex-client.js';
import { EXIT_REMEX_FAILURE, EXIT_SIGNAL_BASE, EXIT_TIMED_OUT } from './exit-codes.js';

export interface RunOptions {
  /** One controller address or several, comma-separated. */
  server: string;
  /** Client token. */
  token?: string;
  /** PEM CA certificate(s) to trust for https:// controllers. */
  ca?: string | Buffer;
  platform?: string;
  timeoutSeconds?: number;
  stdin?: string;
  env: string[];
  file: string[];
  json: boolean;
  quiet: boolean;
  noCache: boolean;
}

/** What `run` and `submit` share: the executable and its inputs, uploaded where missing, and the submission. */
export interface PreparedSubmission {
  client: RemexClient;
  submission: ExecutionSubmission;
}

export async function prepareSubmission(executable: string, args: string[], opts: RunOptions, quiet: boolean): Promise<PreparedSubmission> {
  const client = new RemexClient(opts.server, { token: opts.token, ca: opts.ca });
  client.onServerChange(({ from, to, reason }) => {
    if (!quiet) process.stderr.write(`remex: ${from} unreachable (${reason}); using ${to}\n`);
  });
  const platform = opts.platform !== undefined ? canonicalPlatform(opts.platform) : detectPlatform(executable);

  const files: Record<string, Digest & { executable?: boolean }> = {};
  const uploads: Array<{ path: string; digest: Digest }> = [];
  const exeDigest = digestLocalFile(executable);
  uploads.push({ path: executable, digest: exeDigest });
  for (const spec of opts.file) {
    const [local, remote] = splitFileSpec(spec);
    const digest = digestLocalFile(local);
    const mode = statSync(local).mode;
    files[remote] = { ...digest, executable: (mode & 0o111) !== 0 };
    uploads.push({ path: local, digest });
  }

  const submission: ExecutionSubmission = { platform, executable: exeDigest, executableName: basename(executable), files, args };
  const stdinBytes = await readStdin(opts.stdin);
  if (stdinBytes && stdinBytes.byteLength > 0) {
    const digest = digestOf(stdinBytes);
    submission.stdinDigest = digest;
    uploads.push({ path: '', digest });
    if ((await client.findMissing([digest])).length > 0) await client.putBlob(digest, stdinBytes);
  }
  const env = parseEnv(opts.env);
  if (Object.keys(env).length > 0) submission.env = env;
  if (opts.timeoutSeconds !== undefined) submission.timeoutMs = Math.round(opts.timeoutSeconds * 1000);
  if (opts.noCache) submission.doNotCache = true;

  const missing = new Set((await client.findMissing(uploads.map((u) => u.digest))).map((d) => d.hash));
  for (const u of uploads) {
    if (u.path !== '' && missing.has(u.digest.hash)) {
      await client.putBlob(u.digest, () => createReadStream(u.path));
      missing.delete(u.digest.hash);
    }
  }
  return { client, submission };
}

export async function runCommand(executable: string, args: string[], opts: RunOptions): Promise<number> {
  const { client, submission } = await prepareSubmission(executable, args, opts, opts.quiet || opts.json);
  const submitted = await client.submit(submission);
  const result = isDone(submitted) ? submitted : await waitForResult(client, submitted.id);
  return report(client, result, opts);
}

/** `remex wait`: follows an execution to its end and reports it as `run` does (same exit codes). */
export async function waitCommand(client: RemexClient, id: string, opts: Pick<RunOptions, 'json' | 'quiet'>): Promise<number> {
  const current = await client.getExecution(id);
  const result = isDone(current) ? current : await waitForResult(client, id);
  return report(client, result, { ...opts, output: false });
}

function isDone(v: ExecutionView): boolean {
  return v.state !== 'queued' && v.state !== 'running';
}

const PING_INTERVAL_MS = 15_000;
const RESUBSCRIBE_MAX_DELAY_MS = 2_000;

/**
 * Waits on the event relay; when the connection drops, reads the execution by id (moving to another
 * controller when this one is gone) and subscribes again. Gives up only when no controller can be reached
 * for the client's retry window, or the execution is unknown.
 */
async function waitForResult(client: RemexClient, id: string): Promise<ExecutionView> {
  for (let drops = 0; ; drops++) {
    const outcome = await subscribeOnce(client, id);
    if ('view' in outcome) return outcome.view;
    const v = await client.getExecution(id);
    if (isDone(v)) return v;
    await new Promise((r) => setTimeout(r, Math.min(RESUBSCRIBE_MAX_DELAY_MS, 100 * 2 ** Math.min(drops, 5))));
  }
}

/** One subscription: the result, or why the connection ended without it. Refusals (401/403) throw. */
function subscribeOnce(client: RemexClient, id: string): Promise<{ view: ExecutionView } | { dropped: string }> {
  return new Promise((resolve, reject) => {
    const ws = client.openEvents();
    let answered = true;
    // The relay answers "ping" with "pong": a controller that stops answering is taken for gone.
    const ping = setInterval(() => {
      if (!answered) return ws.terminate();
      answered = false;
      if (ws.readyState === ws.OPEN) ws.send('ping');
    }, PING_INTERVAL_MS);
    const finish = (outcome: { view: ExecutionView } | { dropped: string } | Error) => {
      clearInterval(ping);
      ws.removeAllListeners();
      ws.on('error', () => undefined);
      ws.terminate();
      if (outcome instanceof Error) reject(outcome);
      else resolve(outcome);
    };
    ws.on('open', () => ws.send(`subscribe: ${id}`));
    ws.on('message', (data) => {
      answered = true;
      const text = data.toString();
      if (text === 'pong') return;
      let msg: ExecutionView & { error?: { detail: string } };
      try {
        msg = JSON.parse(text) as typeof msg;
      } catch {
        return finish(new Error(`event relay sent something that is not JSON: ${text.slice(0, 200)}`));
      }
      if (msg.error) return finish(new Error(msg.error.detail));
      if (msg.id === id) finish({ view: msg });
    });
    ws.on('unexpected-response', (_req, res: IncomingMessage) => {
      const status = res.statusCode ?? 0;
      if (status === 401 || status === 403) {
        void problemOf(res).then((p) => finish(new RemexError((p.code ?? (status === 401 ? 'UNAUTHENTICATED' : 'PERMISSION_DENIED')) as ErrorCode, `event relay: ${p.detail ?? `HTTP ${status}`}`)));
      } else {
        res.resume();
        finish({ dropped: `event relay answered HTTP ${status}` });
      }
    });
    ws.on('error', (err) => finish({ dropped: err.message }));
    ws.on('close', () => finish({ dropped: 'event relay closed before the result arrived' }));
  });
}

async function problemOf(res: IncomingMessage): Promise<{ code?: string; detail?: string }> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of res) chunks.push(chunk as Buffer);
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as { code?: string; detail?: string };
  } catch {
    return {};
  }
}

async function report(client: RemexClient, v: ExecutionView, opts: Pick<RunOptions, 'json' | 'quiet'> & { output?: boolean }): Promise<number> {
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
  } else if (v.output && opts.output !== false) {
    await writeAll(process.stdout, await outputBytes(client, v.output.stdout));
    await writeAll(process.stderr, await outputBytes(client, v.output.stderr));
  }
  const how = v.emulated ? 'emulated (qemu-user)' : 'native';
  const say = (line: string) => !opts.quiet && !opts.json && process.stderr.write(`remex: ${line}\n`);
  switch (v.state) {
    case 'completed': {
      say(`ran on ${v.platform}, ${how}, worker ${v.worker ?? '?'}: ${v.execTime ?? 0} ms${v.cached ? ' (cached result)' : ''}`);
      if (v.limitExceeded) say(`stopped by the ${v.limitExceeded} limit`);
      if (v.truncated) say('output truncated at the output limit');
      if (v.signal) return EXIT_SIGNAL_BASE + signalNumber(v.signal);
      return v.code ?? EXIT_REMEX_FAILURE;
    }
    case 'timed_out':
      say(`timed out on ${v.platform} after ${v.execTime ?? 0} ms (${how})`);
      return EXIT_TIMED_OUT;
    case 'cancelled':
      say('execution was cancelled');
      return EXIT_REMEX_FAILURE;
    case 'emergency_stopped':
      // It ran past its max-runtime and could not be stopped cleanly: a timeout to a script, with no result.
      say(`emergency-stopped on ${v.platform}: ${v.failure?.message ?? 'a failsafe layer ended it'}`);
      return EXIT_TIMED_OUT;
    default:
      say(`execution failed: ${v.failure?.code ?? 'UNKNOWN'}: ${v.failure?.message ?? ''}`);
      return EXIT_REMEX_FAILURE;
  }
}

async function outputBytes(client: RemexClient, o: OutputView): Promise<Buffer> {
  if (o.base64 !== null) return Buffer.from(o.base64, 'base64');
  return client.getBlob(o.digest);
}

function writeAll(stream: NodeJS.WriteStream, bytes: Buffer): Promise<void> {
  if (bytes.byteLength === 0) return Promise.resolve();
  return new Promise((resolve, reject) => stream.write(bytes, (err) => (err ? reject(err) : resolve())));
}

function signalNumber(name: string): number {
  return (osConstants.signals as Record<string, number>)[name] ?? 0;
}

/**
 * The digest of a local file, read in 1 MiB blocks without yielding: a command has nothing else to do
 * meanwhile, and a stream's round trip per 64 KiB chunk costs several times the hashing (6–8 ms against
 * 1.6 for a 750 KB executable).
 */
function digestLocalFile(path: string): Digest {
  const builder = new DigestBuilder();
  const fd = openSync(path, 'r');
  try {
    const block = Buffer.allocUnsafe(1024 * 1024);
    for (let n = readSync(fd, block); n > 0; n = readSync(fd, block)) builder.update(block.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return builder.digest();
}

function detectPlatform(path: string): string {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(EXECUTABLE_HEADER_BYTES);
    const bytesRead = readSync(fd, buf, 0, buf.length, 0);
    const info = detectExecutable(buf.subarray(0, bytesRead));
    if (!info.platform) throw new InvalidArgumentError(`cannot tell the platform of ${path} (${info.kind}); pass --platform`);
    return info.platform;
  } finally {
    closeSync(fd);
  }
}

function splitFileSpec(spec: string): [string, string] {
  const i = spec.lastIndexOf(':');
  if (i <= 0) return [spec, basename(spec)];
  return [spec.slice(0, i), spec.slice(i + 1)];
}

function parseEnv(pairs: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new InvalidArgumentError(`--env ${JSON.stringify(pair)} is not K=V`);
    env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return env;
}

/** --stdin FILE or '-' reads that; without it, a redirected or piped stdin is forwarded, a terminal is not. */
async function readStdin(option: string | undefined): Promise<Buffer | undefined> {
  if (option !== undefined && option !== '-') return readFileSync(option);
  if (option === undefined && process.stdin.isTTY) return undefined;
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
