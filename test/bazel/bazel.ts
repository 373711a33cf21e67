/**
 * Real Bazel against a real `remex serve`: a fixture workspace copied to a temporary directory, Bazel run in
 * batch mode with its own output root (no server left behind, no state shared between tests), and what
 * Bazel says about each action read back from its execution log.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { killHard, startServeProcess, waitForOutput } from '../helpers/processes.js';
import type { RemexProcess } from '../helpers/processes.js';
import { FIXTURES_DIR } from '../helpers/tools.js';

const BAZEL_TIMEOUT_MS = 120_000;

/** Removes a tree Bazel wrote (it leaves some of it read-only). */
export function removeTree(dir: string): void {
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch {
    execFileSync('chmod', ['-R', 'u+w', dir], { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface RemexForBazel {
  proc: RemexProcess;
  /** HTTP API base URL. */
  http: string;
  /** `grpc://127.0.0.1:PORT`, for --remote_executor and --remote_cache. */
  grpc: string;
  /** Its data directory (the CAS is `<dataDir>/cas`). */
  dataDir: string;
}

/** Starts `remex serve` on free ports with its own data directory; killed and removed after the test. */
export async function startRemexForBazel(t: TestContext, extraArgs: string[] = []): Promise<RemexForBazel> {
  const dataDir = mkdtempSync(join(tmpdir(), 'remex-bazel-data-'));
  const started = await startServeProcess(['--data', dataDir, ...extraArgs]).catch((err: unknown) => {
    removeTree(dataDir);
    throw err;
  });
  const { proc } = started;
  t.after(async () => {
    await killHard(proc);
    removeTree(dataDir);
  });
  const m = await waitForOutput(proc, /remex listening on http:\/\/\S+ and (grpc:\/\/[^\s:]+:\d+)/);
  return { proc, http: started.url, grpc: m[1] as string, dataDir };
}

/** One action as Bazel's execution log (--execution_log_json_file) reports it. */
export interface LoggedSpawn {
  mnemonic: string;
  /** `remote`, `remote cache hit`, `local`, `linux-sandbox`… */
  runner: string;
  remoteCacheHit: boolean;
  listedOutputs: string[];
  platform?: { properties?: { name: string; value: string }[] };
}

export interface BazelRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** stdout and stderr interleaved. */
  output: string;
  /** Counts from Bazel's last "INFO: N processes: …" line, e.g. { remote: 4, internal: 1 }. */
  processes: Record<string, number>;
  /** The execution log's spawns (only when the run asked for one). */
  spawns: LoggedSpawn[];
}

/** A fixture workspace copied to `<tmp>/ws` (the name its .bazelignore expects), with its own Bazel output root. */
export class BazelWorkspace {
  private logs = 0;

  private constructor(
    readonly root: string,
    readonly dir: string,
  ) {}

  /** Copies `test/fixtures/bazel/<fixture>`; everything is removed after the test. */
  static create(t: TestContext, fixture: string): BazelWorkspace {
    const root = mkdtempSync(join(tmpdir(), 'remex-bazel-'));
    t.after(() => removeTree(root));
    const dir = join(root, 'ws');
    cpSync(join(FIXTURES_DIR, 'bazel', fixture), dir, { recursive: true });
    return new BazelWorkspace(root, dir);
  }

  /** Adds an executable file to the workspace (a prebuilt tool). */
  addExecutable(from: string, name: string): void {
    const to = join(this.dir, name);
    copyFileSync(from, to);
    chmodSync(to, 0o755);
  }

  /** Replaces `from` with `to` in a workspace file (the copy, not the fixture). */
  edit(file: string, from: string, to: string): void {
    const path = join(this.dir, file);
    const text = readFileSync(path, 'utf8');
    if (!text.includes(from)) throw new Error(`${file} has no ${JSON.stringify(from)}`);
    writeFileSync(path, text.replace(from, to));
  }

  /** Whether an output exists in the local output tree (through the bazel-bin symlink). */
  hasOutput(path: string): boolean {
    return existsSync(join(this.dir, 'bazel-bin', path));
  }

  /** Reads an output through the bazel-bin symlink. */
  readOutput(path: string): string {
    return readFileSync(join(this.dir, 'bazel-bin', path), 'utf8');
  }

  /**
   * Runs `bazel <command> <args>` in batch mode (the JVM exits with the command). With `executionLog`,
   * the run writes an execution log and its spawns are returned.
   */
  async run(command: string, args: string[] = [], opts: { executionLog?: boolean } = {}): Promise<BazelRun> {
    const startup = ['--batch', '--nohome_rc', `--output_user_root=${join(this.root, 'bazel-root')}`, '--host_jvm_args=-Xmx1g'];
    const logFile = opts.executionLog ? join(this.root, `exec-${++this.logs}.json`) : undefined;
    const argv = [...startup, command, ...args, ...(logFile ? [`--execution_log_json_file=${logFile}`] : [])];
    const child = spawn('bazel', argv, { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), BAZEL_TIMEOUT_MS);
    const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.on('close', (c, s) => res({ code: c, signal: s })));
    clearTimeout(timer);
    const spawns = logFile && code === 0 ? (parseJsonStream(readFileSync(logFile, 'utf8')) as LoggedSpawn[]) : [];
    return { code, signal, output: `$ bazel ${argv.join(' ')}\n${output}`, processes: processSummary(output), spawns };
  }
}

/** Parses Bazel's summary line: "INFO: 5 processes: 4 remote cache hit, 1 internal." */
export function processSummary(output: string): Record<string, number> {
  const lines = [...output.matchAll(/^INFO: \d+ process(?:es)?: (.*)\.$/gm)];
  const last = lines.at(-1)?.[1];
  const counts: Record<string, number> = {};
  for (const part of last?.split(', ') ?? []) {
    const m = /^(\d+) (.+)$/.exec(part);
    if (m) counts[m[2] as string] = Number(m[1]);
  }
  return counts;
}

/** Bazel 4's JSON execution log is a stream of JSON objects one after another, not an array. */
export function parseJsonStream(text: string): unknown[] {
  const values: unknown[] = [];
  let depth = 0;
  let start = 0;
  let inString = false;
  let escaped = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (c === '\\') escaped = true;
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
    } else if (c === '{') {
      if (depth++ === 0) start = i;
    } else if (c === '}') {
      if (--depth === 0) values.push(JSON.parse(text.slice(start, i + 1)));
    }
  }
  return values;
}

/** The fields of GET /v1/executions the tests look at. */
export interface ExecutionSummary {
  id: string;
  state: string;
  platform: string;
  emulated: boolean;
  cached: boolean;
  code: number | null;
  outputFiles: { path: string; digest: { hash: string; sizeBytes: number } }[];
}

export async function listExecutions(http: string): Promise<ExecutionSummary[]> {
  const res = await fetch(`${http}/v1/executions?limit=1000`);
  if (!res.ok) throw new Error(`GET /v1/executions: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { executions: ExecutionSummary[] }).executions;
}
