/**
 * The `remex` command. Options are compiled once into typed configuration (units in names) and handed to
 * the components; errors print one line and exit with EXIT_REMEX_FAILURE.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism, hostname } from 'node:os';
import { resolve } from 'node:path';
import { Command, InvalidArgumentError as CommanderArgumentError, Option } from 'commander';
import { Authenticator, parseTokenList, readOwnToken, readTokenFile } from '../auth/tokens.js';
import { InvalidArgumentError, RemexError } from '../core/errors.js';
import { RemexClient } from '../client/remex-client.js';
import { DEFAULT_MAX_BLOB_BYTES, DEFAULT_POLICY, startServer } from '../server/server.js';
import { createLogger } from '../server/logger.js';
import { loadTlsFiles } from '../server/tls.js';
import { DEFAULT_SCHEDULER_OPTIONS } from '../scheduler/scheduler.js';
import type { SchedulerOptions } from '../scheduler/scheduler.js';
import { startRemoteWorker } from '../worker/remote-worker.js';
import { DEFAULT_GRPC_PORT } from '../api/grpc/grpc-server.js';
import { EXIT_REMEX_FAILURE } from './exit-codes.js';
import { runCommand } from './run-command.js';

const DEFAULT_SERVER = 'http://127.0.0.1:8080';

function intOption(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new CommanderArgumentError('must be a non-negative integer');
  return n;
}

function numberOption(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new CommanderArgumentError('must be a positive number');
  return n;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

const serverOption = () =>
  new Option('--server <urls>', 'remex controller address, or several separated by commas (moves to the next when one is unreachable)').env('REMEX_SERVER').default(DEFAULT_SERVER);
const caFileOption = () => new Option('--ca-file <file>', 'PEM CA certificate(s) to trust for https:// controllers').env('REMEX_CA_FILE');

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new InvalidArgumentError(`cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/**
 * The token a client or worker sends: the first token of `file`, else the value of the environment
 * variable `envName`. The variable is removed from this process's environment once read, so nothing this
 * process starts inherits it.
 */
function ownToken(file: string | undefined, envName: string): string | undefined {
  const fromEnv = process.env[envName];
  delete process.env[envName];
  if (file !== undefined) return readOwnToken(file);
  if (fromEnv === undefined || fromEnv.trim() === '') return undefined;
  const [token] = parseTokenList(fromEnv, envName);
  return token;
}

/** The server's tokens for one scope: its token file and its environment variable, together. */
function serverTokens(file: string | undefined, envName: string, logger: ReturnType<typeof createLogger>): string[] {
  const fromEnv = process.env[envName];
  delete process.env[envName];
  const tokens = fromEnv ? parseTokenList(fromEnv, envName) : [];
  if (file !== undefined) {
    const read = readTokenFile(file);
    if (read.looseMode) logger.warn({ file, mode: read.looseMode }, 'token file is readable by other users; chmod 600 it');
    tokens.push(...read.tokens);
  }
  return tokens;
}

export function buildProgram(): Command {
  const program = new Command('remex').description('Run programs on the worker of the right platform, sandboxed, native or emulated.');

  program
    .command('serve')
    .description('start a server: HTTP API, scheduler, embedded store and a local worker pool')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'HTTP port (0 picks a free one)', intOption, 8080)
    .option('--data <dir>', 'data directory (SQLite database, blob store, run directories)', '.remex/data')
    .option('--workers <slots>', 'slots of the local worker pool (0: none)', intOption, availableParallelism())
    .option('--platform <triple>', 'serve only these platforms locally (repeatable)', collect, [])
    .option('--accept-platform <triple>', 'accept jobs for a platform before any worker serves it (repeatable)', collect, [])
    .option('--lease-timeout <seconds>', 'lease length; a worker silent this long loses its jobs', numberOption, 30)
    .option('--max-attempts <n>', 'attempts a job gets when its workers are lost, before it fails as LOST', intOption, DEFAULT_SCHEDULER_OPTIONS.maxAttempts)
    .option('--database <url>', 'postgres://… shared by several controllers (default: SQLite in --data)')
    .option('--blobs <url>', 's3://bucket/prefix?endpoint=… or a directory (default: <data>/cas)')
    .option('--cas-fsync', 'fsync every blob of a filesystem CAS before it is visible (slower; see docs/decisions/0009)', false)
    .addOption(
      new Option('--run-directories <where>', 'where local runs are staged: auto (a private tmpfs directory under /dev/shm when roomy, else <data>/runs) or data-dir (see docs/decisions/0012)')
        .choices(['auto', 'data-dir'])
        .default('auto'),
    )
    .option('--grpc-port <port>', 'REAPI v2 gRPC port (0 picks a free one)', intOption, DEFAULT_GRPC_PORT)
    .option('--no-grpc', 'no gRPC front door')
    .option('--instance-name <name>', 'accept only these REAPI instance names (repeatable; default: any)', collect, [])
    .addOption(new Option('--client-token-file <file>', 'tokens clients must present (one per line, # comments; REMEX_CLIENT_TOKENS adds more)').env('REMEX_CLIENT_TOKEN_FILE'))
    .addOption(new Option('--worker-token-file <file>', 'tokens remote workers must present (one per line, # comments; REMEX_WORKER_TOKENS adds more)').env('REMEX_WORKER_TOKEN_FILE'))
    .option('--insecure-open', 'serve without tokens on a non-loopback address (anyone who can reach it can run programs)', false)
    .option('--tls-cert <file>', 'PEM certificate chain: serve HTTPS, WSS and gRPC over TLS')
    .option('--tls-key <file>', 'PEM private key of --tls-cert')
    .action(async (o: { host: string; port: number; data: string; workers: number; platform: string[]; acceptPlatform: string[]; leaseTimeout: number; maxAttempts: number; grpcPort: number; grpc: boolean; instanceName: string[]; database?: string; blobs?: string; casFsync: boolean; runDirectories: 'auto' | 'data-dir'; clientTokenFile?: string; workerTokenFile?: string; insecureOpen: boolean; tlsCert?: string; tlsKey?: string }) => {
      const logger = createLogger();
      const clientTokens = serverTokens(o.clientTokenFile, 'REMEX_CLIENT_TOKENS', logger);
      const workerTokens = serverTokens(o.workerTokenFile, 'REMEX_WORKER_TOKENS', logger);
      const auth = clientTokens.length + workerTokens.length > 0 ? Authenticator.fromTokens({ client: clientTokens, worker: workerTokens }) : Authenticator.open();
      clientTokens.length = 0;
      workerTokens.length = 0;
      if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) throw new InvalidArgumentError('--tls-cert and --tls-key go together');
      const loaded = o.tlsCert !== undefined && o.tlsKey !== undefined ? loadTlsFiles(o.tlsCert, o.tlsKey) : undefined;
      if (loaded) {
        logger.info({ subjectAltName: loaded.subjectAltName, validTo: loaded.validTo }, 'TLS certificate');
        if (loaded.expired) logger.warn({ validTo: loaded.validTo }, 'the TLS certificate has expired: clients will refuse it');
      }
      const tls = loaded ? { cert: loaded.cert, key: loaded.key } : undefined;
      const server = await startServer({
        host: o.host,
        port: o.port,
        dataDir: resolve(o.data),
        workerSlots: o.workers,
        ...(o.platform.length ? { localPlatforms: o.platform } : {}),
        maxBlobBytes: DEFAULT_MAX_BLOB_BYTES,
        ...(o.database !== undefined ? { databaseUrl: o.database } : {}),
        ...(o.blobs !== undefined ? { blobsUrl: o.blobs } : {}),
        casFsync: o.casFsync,
        runDirectories: o.runDirectories,
        ...(o.grpc ? { grpcPort: o.grpcPort } : {}),
        ...(o.instanceName.length ? { instanceNames: o.instanceName } : {}),
        policy: DEFAULT_POLICY,
        scheduler: { ...schedulerTimings(o.acceptPlatform, o.leaseTimeout), maxAttempts: Math.max(1, o.maxAttempts) },
        logger,
        auth,
        insecureOpen: o.insecureOpen,
        ...(tls ? { tls } : {}),
      });
      const grpcScheme = tls ? 'grpcs' : 'grpc';
      process.stdout.write(`remex listening on ${server.url}${server.grpcPort !== undefined ? ` and ${grpcScheme}://${o.host}:${server.grpcPort}` : ''}\n`);
      process.stdout.write(`remex ${server.securitySummary}\n`);
      onTerminate(logger, () => server.close());
    });

  program
    .command('worker')
    .description('run a worker that serves this host\'s platforms for a remex server')
    .addOption(serverOption())
    .option('--slots <n>', 'jobs run at once', intOption, availableParallelism())
    .option('--name <name>', 'worker name', `worker@${hostname()}`)
    .option('--work-dir <dir>', 'local run directories and blob cache', '.remex/worker')
    .option('--platform <triple>', 'serve only these platforms (repeatable)', collect, [])
    .addOption(new Option('--token-file <file>', 'worker token (first line of the file; else REMEX_WORKER_TOKEN)').env('REMEX_WORKER_TOKEN_FILE'))
    .addOption(caFileOption())
    .action(async (o: { server: string; slots: number; name: string; workDir: string; platform: string[]; tokenFile?: string; caFile?: string }) => {
      const logger = createLogger();
      const token = ownToken(o.tokenFile, 'REMEX_WORKER_TOKEN');
      const worker = await startRemoteWorker({
        server: o.server,
        ...(token !== undefined ? { token } : {}),
        ...(o.caFile !== undefined ? { ca: readPem(o.caFile, 'CA file') } : {}),
        slots: o.slots,
        name: o.name,
        workDir: resolve(o.workDir),
        ...(o.platform.length ? { platforms: o.platform } : {}),
        logger,
      });
      process.stdout.write(`remex worker ${worker.id ?? ''} serving ${o.server}\n`);
      onTerminate(logger, () => worker.drain());
    });

  program
    .command('run')
    .description('run an executable remotely and exit with its exit code')
    .argument('<executable>', 'local executable (an ELF binary tells its platform)')
    .argument('[args...]', 'arguments, after --')
    .addOption(serverOption())
    .option('--platform <triple>', 'platform to run on (default: detected from the executable)')
    .option('--timeout <seconds>', 'execution time limit (queue time not counted)', numberOption)
    .option('--stdin <file>', 'file for standard input, - for this process\'s stdin (default: a redirected stdin is forwarded)')
    .option('--env <K=V>', 'environment variable (repeatable)', collect, [])
    .option('--file <local[:remote]>', 'extra input file (repeatable)', collect, [])
    .option('--json', 'print the result object as JSON instead of the program\'s output', false)
    .option('-q, --quiet', 'no summary line on stderr', false)
    .option('--no-cache', 'neither use nor store a cached result')
    .addOption(new Option('--token-file <file>', 'client token (first line of the file; else REMEX_TOKEN)').env('REMEX_TOKEN_FILE'))
    .addOption(caFileOption())
    .action(async (executable: string, args: string[], o: { server: string; platform?: string; timeout?: number; stdin?: string; env: string[]; file: string[]; json: boolean; quiet: boolean; cache: boolean; tokenFile?: string; caFile?: string }) => {
      const token = ownToken(o.tokenFile, 'REMEX_TOKEN');
      process.exitCode = await runCommand(executable, args, {
        server: o.server,
        ...(token !== undefined ? { token } : {}),
        ...(o.caFile !== undefined ? { ca: readPem(o.caFile, 'CA file') } : {}),
        ...(o.platform !== undefined ? { platform: o.platform } : {}),
        ...(o.timeout !== undefined ? { timeoutSeconds: o.timeout } : {}),
        ...(o.stdin !== undefined ? { stdin: o.stdin } : {}),
        env: o.env,
        file: o.file,
        json: o.json,
        quiet: o.quiet,
        noCache: !o.cache,
      });
    });

  program
    .command('platforms')
    .description('list the platforms the server can run, live')
    .addOption(serverOption())
    .option('--json', 'print JSON', false)
    .addOption(new Option('--token-file <file>', 'client token (first line of the file; else REMEX_TOKEN)').env('REMEX_TOKEN_FILE'))
    .addOption(caFileOption())
    .action(async (o: { server: string; json: boolean; tokenFile?: string; caFile?: string }) => {
      const token = ownToken(o.tokenFile, 'REMEX_TOKEN');
      const ca = o.caFile !== undefined ? readPem(o.caFile, 'CA file') : undefined;
      const platforms = await new RemexClient(o.server, { token, ca }).platforms();
      if (o.json) {
        process.stdout.write(`${JSON.stringify(platforms, null, 2)}\n`);
        return;
      }
      const rows = platforms.map((p) => [p.platform, p.emulated ? 'emulated' : 'native', String(p.workers), `${p.freeSlots}/${p.slots}`, String(p.queued), String(p.running)]);
      const header = ['PLATFORM', 'MODE', 'WORKERS', 'FREE/SLOTS', 'QUEUED', 'RUNNING'];
      const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
      for (const row of [header, ...rows]) process.stdout.write(`${row.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd()}\n`);
    });

  return program;
}

/**
 * Heartbeats and the silence that declares a worker gone follow the lease length, so a short lease (tests,
 * latency-sensitive deployments) never expires between two heartbeats of a live worker.
 */
function schedulerTimings(acceptPlatforms: string[], leaseSeconds: number): Partial<SchedulerOptions> {
  const leaseTimeoutMs = Math.round(leaseSeconds * 1000);
  const heartbeatIntervalMs = Math.max(100, Math.min(DEFAULT_SCHEDULER_OPTIONS.heartbeatIntervalMs, Math.floor(leaseTimeoutMs / 4)));
  const workerSilenceMs = Math.min(DEFAULT_SCHEDULER_OPTIONS.workerSilenceMs, Math.max(leaseTimeoutMs, 3 * heartbeatIntervalMs));
  const reaperIntervalMs = Math.min(DEFAULT_SCHEDULER_OPTIONS.reaperIntervalMs, heartbeatIntervalMs);
  return { acceptPlatforms, leaseTimeoutMs, heartbeatIntervalMs, workerSilenceMs, reaperIntervalMs };
}

function onTerminate(logger: ReturnType<typeof createLogger>, shutdown: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn(`${signal} again: exiting now`);
      process.exit(EXIT_REMEX_FAILURE);
    }
    stopping = true;
    logger.info(`${signal}: draining (running jobs finish, no new ones start)`);
    shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(EXIT_REMEX_FAILURE);
      },
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    const message = err instanceof RemexError ? `${err.code}: ${err.message}` : (err as Error).message;
    process.stderr.write(`remex: ${message}\n`);
    process.exitCode = EXIT_REMEX_FAILURE;
  }
}

await main(process.argv);
