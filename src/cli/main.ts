/**
 * The `remex` command. Options are compiled once into typed configuration (units in names) and handed to
 * the components; errors print one line and exit with EXIT_REMEX_FAILURE.
 */
import { availableParallelism, hostname } from 'node:os';
import { resolve } from 'node:path';
import { Command, InvalidArgumentError as CommanderArgumentError, Option } from 'commander';
import { RemexError } from '../core/errors.js';
import { RemexClient } from '../client/remex-client.js';
import { DEFAULT_MAX_BLOB_BYTES, DEFAULT_POLICY, startServer } from '../server/server.js';
import { createLogger } from '../server/logger.js';
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

const serverOption = () => new Option('--server <url>', 'remex server address').env('REMEX_SERVER').default(DEFAULT_SERVER);

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
    .option('--grpc-port <port>', 'REAPI v2 gRPC port (0 picks a free one)', intOption, DEFAULT_GRPC_PORT)
    .option('--no-grpc', 'no gRPC front door')
    .option('--instance-name <name>', 'accept only these REAPI instance names (repeatable; default: any)', collect, [])
    .action(async (o: { host: string; port: number; data: string; workers: number; platform: string[]; acceptPlatform: string[]; leaseTimeout: number; grpcPort: number; grpc: boolean; instanceName: string[] }) => {
      const logger = createLogger();
      const server = await startServer({
        host: o.host,
        port: o.port,
        dataDir: resolve(o.data),
        workerSlots: o.workers,
        ...(o.platform.length ? { localPlatforms: o.platform } : {}),
        maxBlobBytes: DEFAULT_MAX_BLOB_BYTES,
        ...(o.grpc ? { grpcPort: o.grpcPort } : {}),
        ...(o.instanceName.length ? { instanceNames: o.instanceName } : {}),
        policy: DEFAULT_POLICY,
        scheduler: { acceptPlatforms: o.acceptPlatform, leaseTimeoutMs: Math.round(o.leaseTimeout * 1000) },
        logger,
      });
      if (o.host === '127.0.0.1' || o.host === 'localhost' || o.host === '::1') {
        logger.info('no authentication: the embedded default serves loopback only');
      } else {
        logger.warn(`no authentication and listening on ${o.host}: anyone who can reach it can run programs`);
      }
      process.stdout.write(`remex listening on ${server.url}${server.grpcPort !== undefined ? ` and grpc://${o.host}:${server.grpcPort}` : ''}\n`);
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
    .action(async (o: { server: string; slots: number; name: string; workDir: string; platform: string[] }) => {
      const logger = createLogger();
      const worker = await startRemoteWorker({
        server: o.server,
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
    .action(async (executable: string, args: string[], o: { server: string; platform?: string; timeout?: number; stdin?: string; env: string[]; file: string[]; json: boolean; quiet: boolean; cache: boolean }) => {
      process.exitCode = await runCommand(executable, args, {
        server: o.server,
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
    .action(async (o: { server: string; json: boolean }) => {
      const platforms = await new RemexClient(o.server).platforms();
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
