/**
 * `remex compare TRIPLE=EXECUTABLE… [-- ARGS]` (or `--source prog.c --platforms …`): uploads one binary per
 * platform, asks the server to run the comparison (`POST /v1/comparisons`: the server interleaves the runs
 * and keeps the result), follows it until it ends, and prints the table, JSON, CSV or an HTML page.
 * `--detach` returns the id at once; `--show ID` prints a comparison later.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { arch, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import type { ComparisonDocument } from '../compare/comparison.js';
import { renderCsv, renderHtml, renderText } from '../compare/render.js';
import { InvalidArgumentError, RemexError, UnsupportedExecutableError } from '../core/errors.js';
import { detectExecutable, EXECUTABLE_HEADER_BYTES } from '../core/executable-format.js';
import { canonicalPlatform, isaOfNodeArch, parsePlatform } from '../core/platform.js';
import { RemexClient } from '../client/remex-client.js';
import { EXIT_REMEX_FAILURE } from './exit-codes.js';
import { prepareSubmission } from './run-command.js';
import type { RunOptions } from './run-command.js';

export interface CompareOptions {
  server: string;
  token?: string;
  ca?: string | Buffer;
  repeat: number;
  warmup: number;
  baseline?: string;
  json: boolean;
  csv?: string;
  html?: string;
  detach: boolean;
  quiet: boolean;
  allowDifferentOutput: boolean;
  source?: string;
  cflags?: string;
  platforms?: string;
  timeoutSeconds?: number;
  stdin?: string;
  env: string[];
  file: string[];
}

/** How often a followed comparison is read back. */
export const FOLLOW_INTERVAL_MS = 500;

/** The C compiler for each ISA on this client (the host's own `gcc` for its own ISA). */
export function compilerFor(isa: string): string {
  if (isa === isaOfNodeArch(arch())) return 'gcc';
  const triples: Record<string, string> = {
    x86_64: 'x86_64-linux-gnu-gcc',
    aarch64: 'aarch64-linux-gnu-gcc',
    riscv64: 'riscv64-linux-gnu-gcc',
    arm: 'arm-linux-gnueabihf-gcc',
    x86: 'i686-linux-gnu-gcc',
    ppc64le: 'powerpc64le-linux-gnu-gcc',
    s390x: 's390x-linux-gnu-gcc',
  };
  const cc = triples[isa];
  if (!cc) throw new InvalidArgumentError(`no cross compiler known for ${isa}`);
  return cc;
}

/** `aarch64-linux-cpu=./prog` → [triple, path]. */
export function parseEntry(text: string): { platform: string; path: string } {
  const eq = text.indexOf('=');
  if (eq <= 0 || eq === text.length - 1) throw new InvalidArgumentError(`${JSON.stringify(text)} is not TRIPLE=EXECUTABLE (aarch64-linux-cpu=./prog-a64)`);
  return { platform: canonicalPlatform(text.slice(0, eq)), path: text.slice(eq + 1) };
}

export function checkRepeat(repeat: number, warmup: number): void {
  if (!Number.isInteger(repeat) || repeat < 1) throw new InvalidArgumentError(`--repeat must be a whole number of at least 1 (got ${repeat}): nothing to compare`);
  if (!Number.isInteger(warmup) || warmup < 0) throw new InvalidArgumentError(`--warmup must be a whole number of at least 0 (got ${warmup})`);
}

async function elfPlatformOf(path: string): Promise<string | null> {
  const handle = await open(path, 'r');
  try {
    const buf = Buffer.alloc(EXECUTABLE_HEADER_BYTES);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    const info = detectExecutable(buf.subarray(0, bytesRead));
    return info.kind === 'elf' ? info.platform : null;
  } finally {
    await handle.close();
  }
}

interface Built {
  entries: Array<{ platform: string; path: string }>;
  failed: Array<{ platform: string; reason: string }>;
  cleanup: () => Promise<void>;
}

/** Compiles the source once per platform; a missing compiler stops everything, a failed compile only its platform. */
async function buildFromSource(source: string, platforms: string, cflags: string | undefined, say: (line: string) => void): Promise<Built> {
  const wanted = platforms
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)
    .map((p) => canonicalPlatform(p.includes('-') ? p : `${p}-linux-cpu`));
  if (wanted.length === 0) throw new InvalidArgumentError('--source needs --platforms (aarch64,x86_64,riscv64)');
  const compilers = wanted.map((p) => ({ platform: p, cc: compilerFor(parsePlatform(p).isa) }));
  const missing = [];
  for (const c of compilers) if (!(await onPath(c.cc))) missing.push(`${c.cc} (for ${c.platform})`);
  if (missing.length > 0) {
    throw new RemexError('FAILED_PRECONDITION', `missing compiler${missing.length > 1 ? 's' : ''}: ${missing.join(', ')}; install it (Debian: gcc-<triple>) or leave that platform out; nothing was run`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'remex-compare-'));
  const flags = (cflags ?? '-O2').split(/\s+/).filter(Boolean);
  const entries: Built['entries'] = [];
  const failed: Built['failed'] = [];
  for (const { platform, cc } of compilers) {
    const out = join(dir, `${basename(source).replace(/\.[^.]*$/, '')}-${parsePlatform(platform).isa}`);
    try {
      await promisify(execFile)(cc, [...flags, '-static', '-o', out, source, '-lm'], { maxBuffer: 4 * 1024 * 1024 });
      entries.push({ platform, path: out });
      say(`built ${out} with ${cc}`);
    } catch (err) {
      const stderr = (err as { stderr?: string }).stderr ?? (err as Error).message;
      failed.push({ platform, reason: `${cc} failed: ${stderr.trim().slice(0, 4000)}` });
      say(`${platform}: ${cc} failed; it is reported, the others still run`);
    }
  }
  return { entries, failed, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

async function onPath(tool: string): Promise<boolean> {
  try {
    await promisify(execFile)('sh', ['-c', 'command -v "$1"', 'sh', tool]);
    return true;
  } catch {
    return false;
  }
}

export async function compareCommand(specs: string[], args: string[], opts: CompareOptions): Promise<number> {
  checkRepeat(opts.repeat, opts.warmup);
  const say = (line: string) => !opts.quiet && !opts.json && process.stderr.write(`remex: ${line}\n`);
  let built: Built;
  if (opts.source !== undefined) {
    if (specs.length > 0) throw new InvalidArgumentError('give TRIPLE=EXECUTABLE entries or --source, not both');
    built = await buildFromSource(opts.source, opts.platforms ?? '', opts.cflags, say);
    if (built.entries.length === 0) {
      await built.cleanup();
      throw new InvalidArgumentError(`the source compiled for no platform: ${built.failed.map((f) => `${f.platform}: ${f.reason}`).join('\n')}`);
    }
  } else {
    if (specs.length === 0) throw new InvalidArgumentError('name at least one TRIPLE=EXECUTABLE (or --source prog.c --platforms …)');
    built = { entries: specs.map(parseEntry), failed: [], cleanup: async () => undefined };
  }
  try {
    // Refused before anything is uploaded: an ELF built for another machine than its triple.
    for (const e of built.entries) {
      const elf = await elfPlatformOf(e.path);
      if (elf !== null && elf !== e.platform) throw new UnsupportedExecutableError(`${e.path} is an ELF for ${elf}, not ${e.platform}; nothing was run`);
    }
    const runOpts: RunOptions = {
      server: opts.server,
      ...(opts.token !== undefined ? { token: opts.token } : {}),
      ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
      ...(opts.timeoutSeconds !== undefined ? { timeoutSeconds: opts.timeoutSeconds } : {}),
      // Only an explicit --stdin is forwarded: every run of every platform reads the same bytes.
      stdin: opts.stdin ?? '/dev/null',
      env: opts.env,
      file: opts.file,
      json: opts.json,
      quiet: true,
      noCache: true,
    };
    const stdinCopy = opts.stdin === '-' ? await saveStdin() : undefined;
    if (stdinCopy) runOpts.stdin = stdinCopy.path;
    const entries = [];
    let client: RemexClient | undefined;
    try {
      for (const e of built.entries) {
        const prepared = await prepareSubmission(e.path, args, { ...runOpts, platform: e.platform }, true);
        client = prepared.client;
        entries.push({ execution: { ...prepared.submission, platform: e.platform, progress: true } });
      }
    } finally {
      await stdinCopy?.cleanup();
    }
    client ??= new RemexClient(opts.server, { token: opts.token, ca: opts.ca });
    const body = {
      entries,
      repeat: opts.repeat,
      warmup: opts.warmup,
      ...(opts.baseline !== undefined ? { baseline: opts.baseline } : {}),
      allowDifferentOutput: opts.allowDifferentOutput,
      failedEntries: built.failed,
    };
    const started = await client.request<ComparisonDocument>('POST', '/v1/comparisons', body);
    if (opts.detach) {
      process.stdout.write(opts.json ? `${JSON.stringify(started, null, 2)}\n` : `${started.id}\n`);
      return 0;
    }
    say(`comparison ${started.id}: ${started.progress.total} runs (remex compare --show ${started.id})`);
    return await follow(client, started.id, opts);
  } finally {
    await built.cleanup();
  }
}

async function saveStdin(): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const dir = await mkdtemp(join(tmpdir(), 'remex-compare-stdin-'));
  const path = join(dir, 'stdin');
  await writeFile(path, Buffer.concat(chunks));
  return { path, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Reads the comparison back until it ends (or once, with `wait: false`), then prints it. */
export async function follow(client: RemexClient, id: string, opts: Pick<CompareOptions, 'json' | 'csv' | 'html' | 'quiet'>, wait = true): Promise<number> {
  let last = -1;
  for (;;) {
    const doc = await client.request<ComparisonDocument>('GET', `/v1/comparisons/${encodeURIComponent(id)}`);
    if (doc.state !== 'running' || !wait) return output(doc, opts);
    if (doc.progress.done !== last && !opts.quiet && !opts.json) process.stderr.write(`remex: ${doc.progress.done}/${doc.progress.total} runs\n`);
    last = doc.progress.done;
    await new Promise((r) => setTimeout(r, FOLLOW_INTERVAL_MS));
  }
}

async function output(doc: ComparisonDocument, opts: Pick<CompareOptions, 'json' | 'csv' | 'html'>): Promise<number> {
  if (opts.json) process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
  else process.stdout.write(renderText(doc));
  if (opts.csv !== undefined) await writeFile(opts.csv, renderCsv(doc));
  if (opts.html !== undefined) await writeFile(opts.html, renderHtml(doc));
  if (doc.state === 'failed') return EXIT_REMEX_FAILURE;
  const { report } = doc;
  // A platform that failed, or outputs that disagree (not allowed), is a finding a script should see.
  if (report.entries.some((e) => e.status !== 'ok') || (!report.outputs.same && !report.outputs.allowed)) return 1;
  return 0;
}
