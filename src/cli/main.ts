/**
 * The `remex` command. Options are compiled once into typed configuration (units in names) and handed to
 * the components; errors print one line and exit with EXIT_REMEX_FAILURE. Only `serve` and `worker` load
 * the server's modules (imported when they run): every other command is a client and starts quickly.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
// Imported, not required: scripts/build-cli.js bundles commander into the client commands' file.
import { Command as CommandClass, InvalidArgumentError as CommanderArgumentError, Option } from 'commander';
import type { Command, Option as OptionType } from 'commander';
import { parseTokenList, readOwnToken } from '../auth/tokens.js';
import { InvalidArgumentError, RemexError } from '../core/errors.js';
import { RemexClient } from '../client/remex-client.js';
import type { Logger } from 'pino';
import { parseLabels } from '../core/labels.js';
import { defaultSlots, LOG_FORMATS, LOG_LEVELS, SERVE_DEFAULTS, WORKER_DEFAULTS } from '../server/defaults.js';
import type { LogFormat } from '../server/defaults.js';
import type { ServeFlags } from '../server/config.js';
import { EXIT_REMEX_FAILURE, EXIT_WORKER_SERVER_UNREACHABLE, EXIT_WORKER_UNFIT } from './exit-codes.js';
import { formatTable } from './table.js';

// Each command's module is loaded when that command runs (a client command loads only the client).
const runCommands = () => import('./run-command.js');
const jobCommands = () => import('./job-commands.js');
const workerCommands = () => import('./worker-commands.js');

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

function priceOption(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new CommanderArgumentError('must be a price: a number, 0 or more');
  return n;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

const serverOption = () =>
  new Option('--server <urls>', 'remex controller address, or several separated by commas (moves to the next when one is unreachable)').env('REMEX_SERVER').default(DEFAULT_SERVER);
const clientTokenOption = () => new Option('--token-file <file>', 'client token (first line of the file; else REMEX_TOKEN)').env('REMEX_TOKEN_FILE');
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

/** `--log-level` of serve and worker (REMEX_LOG_LEVEL when not given). */
function logLevelOption(): OptionType {
  return new Option('--log-level <level>', 'least severe log lines written').choices(LOG_LEVELS).env('REMEX_LOG_LEVEL').default('info');
}

/** `--log-format`: readable lines on a terminal, JSON lines elsewhere, unless told. */
function logFormatOption(): OptionType {
  return new Option('--log-format <format>', 'auto (readable on a terminal, else JSON lines), json or pretty').choices(LOG_FORMATS).default('auto');
}

/**
 * The token of an operator's command (the worker list, drain and undrain orders take a client or a worker
 * token: decision 0028): the file's, else REMEX_WORKER_TOKEN, else REMEX_TOKEN.
 */
function operatorToken(file: string | undefined): string | undefined {
  const worker = ownToken(file, 'REMEX_WORKER_TOKEN');
  const client = ownToken(undefined, 'REMEX_TOKEN');
  return worker ?? client;
}

const operatorTokenOption = () =>
  new Option('--token-file <file>', 'a client or worker token (first line of the file; else REMEX_WORKER_TOKEN or REMEX_TOKEN)').env('REMEX_WORKER_TOKEN_FILE');

/** The version in remex's package.json (dist/src/cli/ is three levels below it). */
function remexVersion(): string {
  try {
    const { version } = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof version === 'string' ? version : 'unknown';
  } catch {
    return 'unknown';
  }
}

export function buildProgram(): Command {
  // Positional options: `remex worker drain --generation G` is the subcommand's, not `remex worker`'s own flag.
  const program = new CommandClass('remex')
    .enablePositionalOptions()
    .description('Run programs on the worker of the right platform, sandboxed, native or emulated.')
    .version(remexVersion(), '-V, --version', 'print the version of remex');

  program
    .command('serve')
    .description('start a server: HTTP API, scheduler, embedded store and a local worker pool')
    .option('--host <host>', 'address to listen on', SERVE_DEFAULTS.host)
    .option('--port <port>', 'HTTP port (0 picks a free one)', intOption, SERVE_DEFAULTS.port)
    .option('--data <dir>', 'data directory (SQLite database, blob store, run directories)', SERVE_DEFAULTS.dataDir)
    .option('--workers <slots>', 'slots of the local worker pool (0: none)', intOption, defaultSlots())
    .option('--price-per-hour <price>', 'what the local worker pool costs per hour (your unit), for the cost of each job', priceOption)
    .option('--autoscale <file>', 'size worker pools by this configuration (JSON or YAML: pools, providers, policy; see docs/deploy.md)')
    .addOption(new Option('--webhook-secret-file <file>', 'the secret completion webhooks are signed with (default: REMEX_WEBHOOK_SECRET, else one kept in <data>/webhook-secret)').env('REMEX_WEBHOOK_SECRET_FILE'))
    .option('--platform <triple>', 'serve only these platforms locally (repeatable)', collect, [])
    .option('--accept-platform <triple>', 'accept jobs for a platform before any worker serves it (repeatable)', collect, [])
    .option('--lease-timeout <seconds>', 'lease length; a worker silent this long loses its jobs', numberOption, SERVE_DEFAULTS.leaseTimeoutSeconds)
    .option('--max-attempts <n>', 'attempts a job gets when its workers are lost, before it fails as LOST', intOption, SERVE_DEFAULTS.maxAttempts)
    .option('--failsafe <duration>', "a job's failsafe when it has none: past its max-runtime, how long before the failsafe layers end it (default 60s)")
    .option('--platform-price <platform=price>', 'price per hour of that platform\'s workers that set none, for the cost of each job (repeatable)', collect, [])
    .option('--database <url>', 'postgres://… shared by several controllers (default: SQLite in --data)')
    .option('--blobs <url>', 's3://bucket/prefix?endpoint=… or a directory (default: <data>/cas)')
    .option('--cas-fsync', 'fsync every blob of a filesystem CAS before it is visible (slower; see docs/decisions/0009)', false)
    .option('--cas-max-bytes <size>', 'keep a filesystem CAS under this size (500M, 20G…), evicting least recently used blobs (default: no cap; see docs/deploy.md)')
    .option('--retain <duration>', 'keep finished jobs (and their results) this long, then remove them (default 7d)')
    .option('--max-log-ceiling <size>', "the highest live-log ceiling per stream a job may ask for (64M, 1G…; at most and by default 1G); remex submit's --log-ceiling-mib above it is refused")
    .option('--cas-grace <duration>', 'with --cas-max-bytes: never evict a blob used or reported present less than this long ago (90s, 10m…; default 10m)')
    .addOption(
      new Option('--run-directories <where>', 'where local runs are staged: auto (a private tmpfs directory under /dev/shm when roomy, else <data>/runs) or data-dir (see docs/decisions/0012)')
        .choices(['auto', 'data-dir'])
        .default(SERVE_DEFAULTS.runDirectories),
    )
    .option('--grpc-port <port>', 'REAPI v2 gRPC port (0 picks a free one)', intOption, SERVE_DEFAULTS.grpcPort)
    .option('--no-grpc', 'no gRPC front door')
    .option('--instance-name <name>', 'accept only these REAPI instance names (repeatable; default: any)', collect, [])
    .addOption(new Option('--client-token-file <file>', 'tokens clients must present (one per line, # comments; REMEX_CLIENT_TOKENS adds more)').env('REMEX_CLIENT_TOKEN_FILE'))
    .addOption(new Option('--worker-token-file <file>', 'tokens remote workers must present (one per line, # comments; REMEX_WORKER_TOKENS adds more)').env('REMEX_WORKER_TOKEN_FILE'))
    .option('--insecure-open', 'serve without tokens on a non-loopback address (anyone who can reach it can run programs)', false)
    .option('--tls-cert <file>', 'PEM certificate chain: serve HTTPS, WSS and gRPC over TLS')
    .option('--tls-key <file>', 'PEM private key of --tls-cert')
    .option('--metrics-port <port>', 'also serve /metrics, without tokens, on this port (for a scraper on another network; 0 picks one)', intOption)
    .option('--metrics-host <host>', 'address of --metrics-port (default: --host)')
    .addOption(logLevelOption())
    .addOption(logFormatOption())
    .action(async (flags: ServeFlags) => {
      const [{ createLogger }, { serveConfig }, { startServer }] = await Promise.all([import('../server/logger.js'), import('../server/config.js'), import('../server/server.js')]);
      const logger = createLogger({ level: flags.logLevel, format: flags.logFormat });
      const server = await startServer(serveConfig(flags, process.env, logger));
      const grpcScheme = flags.tlsCert !== undefined ? 'grpcs' : 'grpc';
      process.stdout.write(`remex listening on ${server.url}${server.grpcPort !== undefined ? ` and ${grpcScheme}://${flags.host}:${server.grpcPort}` : ''}\n`);
      process.stdout.write(`remex ${server.securitySummary}\n`);
      onTerminate(logger, () => server.close());
    });

  const workerCommand = program
    .command('worker')
    .description('run a worker that serves this host\'s platforms for a remex server')
    .addOption(serverOption())
    .option('--slots <n>', 'jobs run at once', intOption, defaultSlots())
    .option('--name <name>', 'worker name', WORKER_DEFAULTS.name)
    .option('--work-dir <dir>', 'local run directories and blob cache', WORKER_DEFAULTS.workDir)
    .option('--platform <triple>', 'serve only these platforms (repeatable)', collect, [])
    .option('--label <K=V>', 'a label of this worker, for selectors and scaling (repeatable)', collect, [])
    .option('--generation <name>', 'the rollout generation of this worker (blue, green, 1.4…): its `generation` label')
    .option('--price-per-hour <price>', 'what this worker costs per hour (your unit), for the cost of each job', priceOption)
    .addOption(new Option('--instance-id <id>', "the provider's id of this machine or process (set by an autoscaler)").env('REMEX_INSTANCE_ID'))
    .addOption(new Option('--token-file <file>', 'worker token (first line of the file; else REMEX_WORKER_TOKEN)').env('REMEX_WORKER_TOKEN_FILE'))
    .addOption(caFileOption())
    // For the failsafe tests only (docs/long-jobs.md): a named fault, injected in the real sandbox.
    .addOption(new Option('--inject-fault <fault>', 'test only: make every run fail this way').choices(['supervisor-hangs']).hideHelp())
    .addOption(logLevelOption())
    .addOption(logFormatOption())
    .action(async (o: { server: string; slots: number; name: string; workDir: string; platform: string[]; label: string[]; generation?: string; instanceId?: string; pricePerHour?: number; tokenFile?: string; caFile?: string; logLevel: string; logFormat: LogFormat; injectFault?: 'supervisor-hangs' }) => {
      const labels = (await workerCommands()).withGeneration(parseLabels(o.label, '--label'), o.generation);
      const [{ createLogger }, { startRemoteWorker }] = await Promise.all([import('../server/logger.js'), import('../server/remote-worker.js')]);
      const logger = createLogger({ level: o.logLevel, format: o.logFormat });
      const token = ownToken(o.tokenFile, 'REMEX_WORKER_TOKEN');
      const worker = await startRemoteWorker({
        server: o.server,
        ...(token !== undefined ? { token } : {}),
        ...(o.caFile !== undefined ? { ca: readPem(o.caFile, 'CA file') } : {}),
        slots: o.slots,
        name: o.name,
        workDir: resolve(o.workDir),
        ...(o.platform.length ? { platforms: o.platform } : {}),
        labels,
        ...(o.instanceId !== undefined ? { instanceId: o.instanceId } : {}),
        ...(o.pricePerHour !== undefined ? { pricePerHour: o.pricePerHour } : {}),
        logger,
        onDrainedByOrder: () => {
          logger.info('drained on the server\'s order: exiting');
          // The log is written asynchronously: flushed first, or its last lines are lost.
          logger.flush(() => process.exit(0));
        },
        // Its runs outlive their kill: it left the server, and exits for its supervisor to replace it.
        onUnfit: () => logger.flush(() => process.exit(EXIT_WORKER_UNFIT)),
        ...(o.injectFault !== undefined ? { injectFault: o.injectFault } : {}),
      });
      process.stdout.write(`remex worker ${worker.id ?? ''} serving ${o.server}\n`);
      onTerminate(logger, async () => ((await worker.drain()) === 'server-unreachable' ? EXIT_WORKER_SERVER_UNREACHABLE : 0));
    });

  workerCommand
    .command('drain')
    .description('order workers to drain (scale-in by hand, blue/green): one by name or id, or a whole generation; refused if a platform would be left with no worker taking work')
    .argument('[name]', 'worker name or id, as `remex workers` lists it')
    .option('--generation <name>', 'every worker of this generation')
    .option('--force', 'drain even if a platform is left with no worker taking work', false)
    .addOption(serverOption())
    .addOption(operatorTokenOption())
    .addOption(caFileOption())
    .action(async (name: string | undefined, o: { server: string; generation?: string; force: boolean; tokenFile?: string; caFile?: string }) => {
      const token = operatorToken(o.tokenFile);
      const client = new RemexClient(o.server, { token, ca: o.caFile !== undefined ? readPem(o.caFile, 'CA file') : undefined });
      process.stdout.write(await (await workerCommands()).drainCommand(client, { ...(name !== undefined ? { name } : {}), ...(o.generation !== undefined ? { generation: o.generation } : {}), force: o.force }));
    });

  /** The options `run` and `submit` share. */
  interface RunFlags {
    server: string;
    platform?: string;
    timeout?: number;
    stdin?: string;
    env: string[];
    file: string[];
    json: boolean;
    quiet: boolean;
    tokenFile?: string;
    caFile?: string;
  }
  const withRunOptions = (cmd: Command): Command =>
    cmd
      .argument('<executable>', 'local executable (an ELF binary tells its platform)')
      .argument('[args...]', 'arguments, after --')
      .addOption(serverOption())
      .option('--platform <triple>', 'platform to run on (default: detected from the executable)')
      .option('--timeout <seconds>', 'execution time limit (queue time not counted)', numberOption)
      .option('--stdin <file>', 'file for standard input, - for this process\'s stdin (default: a redirected stdin is forwarded)')
      .option('--env <K=V>', 'environment variable (repeatable)', collect, [])
      .option('--file <local[:remote]>', 'extra input file (repeatable)', collect, [])
      .option('-q, --quiet', 'no summary line on stderr', false)
      .addOption(clientTokenOption())
      .addOption(caFileOption());
  const runOptionsOf = (o: RunFlags) => {
    const token = ownToken(o.tokenFile, 'REMEX_TOKEN');
    return {
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
    };
  };

  withRunOptions(program.command('run').description('run an executable remotely and exit with its exit code'))
    .option('--json', 'print the result object as JSON instead of the program\'s output', false)
    .option('--no-cache', 'neither use nor store a cached result')
    .action(async (executable: string, args: string[], o: RunFlags & { cache: boolean }) => {
      process.exitCode = await (await runCommands()).runCommand(executable, args, { ...runOptionsOf(o), noCache: !o.cache });
    });

  withRunOptions(program.command('submit').description('queue an executable to run remotely and exit at once, printing the job id (fire and forget)'))
    .option('--name <name>', 'a name for the job, to find it by')
    .option('--label <K=V>', 'a label of the job, to select it by (repeatable)', collect, [])
    .option('--max-runtime <duration>', 'execution time limit as a duration: 90s, 45m, 4h (instead of --timeout)')
    .option('--cache', 'accept a cached result of an identical earlier run (default: always run)', false)
    .option('--no-retry', 'run at most once: if its worker is lost, fail it as LOST rather than run it again (a benchmark may prefer that)')
    .option('--failsafe <duration>', "past --max-runtime, how long before the failsafe layers end the job as emergency_stopped (default: the server's)")
    .option('--notify <url>', 'when the job ends, the server POSTs its result there, signed (X-Remex-Signature)')
    .option('--log-ceiling-mib <n>', 'keep this many MiB of stdout and of stderr (default 256, at most the server\'s maximum); past it the job goes on', intOption)
    .option('--json', 'print the submitted job as JSON instead of its id', false)
    .action(async (executable: string, args: string[], o: RunFlags & { name?: string; label: string[]; maxRuntime?: string; cache: boolean; retry: boolean; notify?: string; logCeilingMib?: number; failsafe?: string }) => {
      process.exitCode = await (await jobCommands()).submitCommand(executable, args, {
        ...runOptionsOf(o),
        noCache: !o.cache,
        cache: o.cache,
        retry: o.retry,
        ...(o.notify !== undefined ? { notify: o.notify } : {}),
        label: o.label,
        ...(o.name !== undefined ? { name: o.name } : {}),
        ...(o.maxRuntime !== undefined ? { maxRuntime: o.maxRuntime } : {}),
        ...(o.logCeilingMib !== undefined ? { logCeilingBytes: o.logCeilingMib * 1024 * 1024 } : {}),
        ...(o.failsafe !== undefined ? { failsafe: o.failsafe } : {}),
      });
    });

  const clientOf = (o: { server: string; tokenFile?: string; caFile?: string }): RemexClient =>
    new RemexClient(o.server, { token: ownToken(o.tokenFile, 'REMEX_TOKEN'), ca: o.caFile !== undefined ? readPem(o.caFile, 'CA file') : undefined });
  const withClientOptions = (cmd: Command): Command => cmd.addOption(serverOption()).addOption(clientTokenOption()).addOption(caFileOption());

  withClientOptions(program.command('status').description('where a job stands: state, platform, worker, times, exit').argument('<id>', 'job id (as submit printed it)'))
    .option('--json', 'print JSON', false)
    .action(async (id: string, o: { server: string; tokenFile?: string; caFile?: string; json: boolean }) => {
      process.exitCode = await (await jobCommands()).statusCommand(clientOf(o), id, o.json);
    });

  withClientOptions(program.command('wait').description("wait for a job to end and exit with its program's exit code, as run does").argument('<id>', 'job id'))
    .option('--json', 'print the result as JSON', false)
    .option('-q, --quiet', 'no summary line on stderr', false)
    .action(async (id: string, o: { server: string; tokenFile?: string; caFile?: string; json: boolean; quiet: boolean }) => {
      process.exitCode = await (await runCommands()).waitCommand(clientOf(o), id, { json: o.json, quiet: o.quiet });
    });

  withClientOptions(program.command('logs').description("a job's stdout and stderr, each line tagged with its stream; --follow: as they come, until it ends").argument('<id>', 'job id'))
    .option('-f, --follow', 'keep printing the output as it comes, until the job ends', false)
    .option('--stream <stream>', 'only stdout or only stderr')
    .action(async (id: string, o: { server: string; tokenFile?: string; caFile?: string; follow: boolean; stream?: string }) => {
      if (o.stream !== undefined && o.stream !== 'stdout' && o.stream !== 'stderr') throw new InvalidArgumentError('--stream must be stdout or stderr');
      process.exitCode = await (await import('./logs-command.js')).logsCommand(clientOf(o), id, { follow: o.follow, ...(o.stream ? { stream: o.stream } : {}) });
    });

  withClientOptions(program.command('cancel').description('cancel a queued or running job').argument('<id>', 'job id')).action(
    async (id: string, o: { server: string; tokenFile?: string; caFile?: string }) => {
      process.exitCode = await (await jobCommands()).cancelCommand(clientOf(o), id);
    },
  );

  withClientOptions(
    program
      .command('compare')
      .description('run one program on several platforms, interleaved, and compare time, cost and output with intervals (docs/compare.md)')
      .argument('[entries...]', 'TRIPLE=EXECUTABLE (aarch64-linux-cpu=./prog-a64 …), then -- and the arguments'),
  )
    .option('--repeat <n>', 'counted runs per platform', Number, 10)
    .option('--warmup <k>', 'warm-up runs per platform (reported, not judged)', Number, 1)
    .option('--baseline <triple>', 'the entry to measure against (default: the first)')
    .option('--source <file.c>', 'build one binary per platform from this C source with the cross compilers found here')
    .option('--cflags <flags>', 'compiler flags for --source', '-O2')
    .option('--platforms <list>', 'platforms for --source: aarch64,x86_64,riscv64')
    .option('--timeout <seconds>', 'execution time limit of each run', numberOption)
    .option('--stdin <file>', "file for each run's standard input, - for this process's stdin")
    .option('--env <K=V>', 'environment variable (repeatable)', collect, [])
    .option('--file <local[:remote]>', 'extra input file (repeatable)', collect, [])
    .option('--allow-different-output', 'do not flag outputs that differ across platforms', false)
    .option('--json', 'print the comparison as JSON', false)
    .option('--csv <file>', 'also write one CSV row per platform')
    .option('--html <file>', 'also write a self-contained HTML report (charts, table, workers)')
    .option('--detach', 'print the comparison id and return at once; the server runs it (see --show)', false)
    .option('--show <id>', 'print a comparison the server keeps (running or done)')
    .option('-q, --quiet', 'no progress on stderr', false)
    .action(
      async (
        entries: string[],
        o: { server: string; tokenFile?: string; caFile?: string; repeat: number; warmup: number; baseline?: string; source?: string; cflags: string; platforms?: string; timeout?: number; stdin?: string; env: string[]; file: string[]; allowDifferentOutput: boolean; json: boolean; csv?: string; html?: string; detach: boolean; show?: string; quiet: boolean },
      ) => {
        if (o.show !== undefined) {
          process.exitCode = await (await import('./compare-command.js')).follow(clientOf(o), o.show, o, false);
          return;
        }
        // Entries are TRIPLE=PATH; the operands after `--` (commander passes them on with the entries) are the program's arguments.
        const dash = process.argv.indexOf('--');
        const argCount = dash >= 0 ? Math.min(entries.length, process.argv.length - dash - 1) : 0;
        const specs = entries.slice(0, entries.length - argCount);
        const args = entries.slice(entries.length - argCount);
        const token = ownToken(o.tokenFile, 'REMEX_TOKEN');
        process.exitCode = await (await import('./compare-command.js')).compareCommand(specs, args, {
          server: o.server,
          ...(token !== undefined ? { token } : {}),
          ...(o.caFile !== undefined ? { ca: readPem(o.caFile, 'CA file') } : {}),
          repeat: o.repeat,
          warmup: o.warmup,
          ...(o.baseline !== undefined ? { baseline: o.baseline } : {}),
          json: o.json,
          ...(o.csv !== undefined ? { csv: o.csv } : {}),
          ...(o.html !== undefined ? { html: o.html } : {}),
          detach: o.detach,
          quiet: o.quiet,
          allowDifferentOutput: o.allowDifferentOutput,
          ...(o.source !== undefined ? { source: o.source, cflags: o.cflags, platforms: o.platforms ?? '' } : {}),
          ...(o.timeout !== undefined ? { timeoutSeconds: o.timeout } : {}),
          ...(o.stdin !== undefined ? { stdin: o.stdin } : {}),
          env: o.env,
          file: o.file,
        });
      },
    );

  withClientOptions(program.command('collect').description("download finished jobs' logs, result files and job.json into a folder each, with summary.json and summary.txt"))
    .requiredOption('--out <dir>', 'where to write (new or empty, unless --force)')
    .option('--force', 'write into a folder that is not empty', false)
    .option('--label <K=V>', 'only jobs with this label (repeatable: all must match)', collect, [])
    .option('--state <states>', 'only these finished states, comma-separated (default: all finished)')
    .option('--name <name>', 'only jobs of this name')
    .option('--since <duration>', 'only jobs created within this duration: 90s, 45m, 4h')
    .action(async (o: { server: string; tokenFile?: string; caFile?: string; out: string; force: boolean; label: string[]; state?: string; name?: string; since?: string }) => {
      process.exitCode = await (await import('./collect-command.js')).collectCommand(clientOf(o), {
        out: resolve(o.out),
        force: o.force,
        label: o.label,
        ...(o.state !== undefined ? { state: o.state } : {}),
        ...(o.name !== undefined ? { name: o.name } : {}),
        ...(o.since !== undefined ? { since: o.since } : {}),
      });
    });

  withClientOptions(program.command('jobs').description('list jobs, newest first: id, name, platform, state, started, runtime, labels'))
    .option('--state <states>', 'only these states, comma-separated (queued,running,completed,timed_out,cancelled,failed,emergency_stopped)')
    .option('--label <K=V>', 'only jobs with this label (repeatable: all must match)', collect, [])
    .option('--name <name>', 'only jobs of this name')
    .option('--since <duration>', 'only jobs created within this duration: 90s, 45m, 4h')
    .option('--limit <n>', 'at most this many', intOption, 100)
    .option('--json', 'print JSON', false)
    .action(async (o: { server: string; tokenFile?: string; caFile?: string; state?: string; label: string[]; name?: string; since?: string; limit: number; json: boolean }) => {
      process.exitCode = await (await jobCommands()).jobsCommand(clientOf(o), {
        label: o.label,
        limit: o.limit,
        json: o.json,
        ...(o.state !== undefined ? { state: o.state } : {}),
        ...(o.name !== undefined ? { name: o.name } : {}),
        ...(o.since !== undefined ? { since: o.since } : {}),
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
      const { platforms, fleet } = await new RemexClient(o.server, { token, ca }).status();
      if (o.json) {
        process.stdout.write(`${JSON.stringify(platforms, null, 2)}\n`);
        return;
      }
      const rows = platforms.map((p) => [p.platform, p.emulated ? 'emulated' : 'native', String(p.workers), `${p.freeSlots}/${p.slots}`, String(p.queued), String(p.running)]);
      // A worker serving several platforms shows under each: the fleet's line counts it once.
      if (fleet && platforms.some((p) => p.sharedSlots > 0)) rows.push(['(all, each worker once)', '', String(fleet.workers), `${fleet.freeSlots}/${fleet.slots}`, String(fleet.queued), String(fleet.running)]);
      process.stdout.write(formatTable(['PLATFORM', 'MODE', 'WORKERS', 'FREE/SLOTS', 'QUEUED', 'RUNNING'], rows));
    });

  program
    .command('workers')
    .description('list the workers a server knows: platforms, slots, state, labels (a client or worker token where tokens are on)')
    .addOption(serverOption())
    .option('--json', 'print JSON', false)
    .addOption(operatorTokenOption())
    .addOption(caFileOption())
    .action(async (o: { server: string; json: boolean; tokenFile?: string; caFile?: string }) => {
      const token = operatorToken(o.tokenFile);
      const workers = await new RemexClient(o.server, { token, ca: o.caFile !== undefined ? readPem(o.caFile, 'CA file') : undefined }).workers();
      if (o.json) {
        process.stdout.write(`${JSON.stringify(workers, null, 2)}\n`);
        return;
      }
      process.stdout.write((await workerCommands()).formatWorkers(workers));
    });

  // A drain order and its withdrawal, given to one worker by id.
  const orderCommand = (name: string, description: string, order: (client: RemexClient, id: string) => Promise<{ id: string; name: string }>, said: string): void => {
    program
      .command(name)
      .description(description)
      .argument('<worker-id>', 'as `remex workers` lists it')
      .addOption(serverOption())
      .addOption(operatorTokenOption())
      .addOption(caFileOption())
      .action(async (workerId: string, o: { server: string; tokenFile?: string; caFile?: string }) => {
        const token = operatorToken(o.tokenFile);
        const worker = await order(new RemexClient(o.server, { token, ca: o.caFile !== undefined ? readPem(o.caFile, 'CA file') : undefined }), workerId);
        process.stdout.write(`${said.replace('%s', `${worker.id} (${worker.name})`)}\n`);
      });
  };
  orderCommand('drain', 'order a worker to drain: it finishes what it holds, takes nothing new, leaves, and its process exits 0', (c, id) => c.drainWorker(id), 'drain ordered for %s: it stops at its next heartbeat once its jobs are committed');
  orderCommand('undrain', 'withdraw a drain order the worker has not acted on yet (one that already drains finishes and leaves)', (c, id) => c.undrainWorker(id), 'drain order withdrawn for %s: it goes on taking jobs');

  program
    .command('autoscale')
    .description('the autoscaler\'s tools')
    .command('simulate')
    .description('replay an arrival trace through the autoscaling policy: queue waits, worker-seconds, cost, scaling actions; --config twice compares')
    .option('--config <file>', 'autoscale configuration, JSON or YAML (repeat to compare side by side)', collect, [])
    .option('--trace <file>', 'arrivals: a JSON array of {"at", "service"} seconds, or CSV lines at,service')
    .option('--pattern <name>', 'a generated trace: steady, spike, diurnal or bursts')
    .option('--seed <n>', 'seed of the generated trace', intOption, 42)
    .option('--pool <name>', 'the pool to simulate (default: the first)')
    .option('--html <file>', 'write the report with arrivals, backlog and workers over time')
    .option('--json', 'print the figures as JSON', false)
    .action(async (o: { config: string[]; trace?: string; pattern?: string; seed: number; pool?: string; html?: string; json: boolean }) => {
      const { simulateCommand } = await import('./autoscale-command.js');
      process.stdout.write(simulateCommand(o));
    });


  return program;
}

/** On SIGTERM or SIGINT: shuts down, then exits with the status `shutdown` returns (0 by default); a second signal exits at once. */
function onTerminate(logger: Logger, shutdown: () => Promise<number | void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn(`${signal} again: exiting now`);
      process.exit(EXIT_REMEX_FAILURE);
    }
    stopping = true;
    logger.info(`${signal}: draining (running jobs finish, no new ones start)`);
    shutdown().then(
      (status) => process.exit(status ?? 0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(EXIT_REMEX_FAILURE);
      },
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}

/** Runs the command line (bin/remex.js calls it: with the client bundle of scripts/build-cli.js, or this module). */
export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    const message = err instanceof RemexError ? `${err.code}: ${err.message}` : (err as Error).message;
    process.stderr.write(`remex: ${message}\n`);
    process.exitCode = EXIT_REMEX_FAILURE;
  }
}
