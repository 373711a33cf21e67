/** Flags and environment → the server's configuration: defaults from one place, clear refusals. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { isRemexError } from '../../src/core/errors.js';
import { DEFAULT_MAX_BLOB_BYTES, DEFAULT_POLICY, SERVE_DEFAULTS, schedulerTimings, serveConfig } from '../../src/server/config.js';
import type { ServeFlags } from '../../src/server/config.js';

const quiet = pino({ level: 'silent' });

function flags(over: Partial<ServeFlags> = {}): ServeFlags {
  return {
    host: SERVE_DEFAULTS.host,
    port: SERVE_DEFAULTS.port,
    data: SERVE_DEFAULTS.dataDir,
    workers: 2,
    platform: [],
    acceptPlatform: [],
    leaseTimeout: SERVE_DEFAULTS.leaseTimeoutSeconds,
    maxAttempts: SERVE_DEFAULTS.maxAttempts,
    grpcPort: SERVE_DEFAULTS.grpcPort,
    grpc: true,
    instanceName: [],
    casFsync: false,
    runDirectories: SERVE_DEFAULTS.runDirectories,
    insecureOpen: false,
    ...over,
  };
}

test('the defaults make the embedded server: open on loopback, gRPC on, SQLite and a filesystem CAS under the data directory', () => {
  const c = serveConfig(flags(), {}, quiet);
  assert.equal(c.host, '127.0.0.1');
  assert.equal(c.port, 8080);
  assert.equal(c.grpcPort, 8980);
  assert.ok(c.dataDir.endsWith('/.remex/data'), c.dataDir);
  assert.equal(c.databaseUrl, undefined);
  assert.equal(c.blobsUrl, undefined);
  assert.equal(c.maxBlobBytes, DEFAULT_MAX_BLOB_BYTES);
  assert.equal(c.policy, DEFAULT_POLICY);
  assert.equal(c.auth?.enabled, false);
  assert.deepEqual(c.scheduler, { ...schedulerTimings([], 30), maxAttempts: 3 });
  assert.equal(serveConfig(flags({ grpc: false }), {}, quiet).grpcPort, undefined, '--no-grpc');
});

test('a short lease shortens heartbeats, silence and the reaper with it', () => {
  assert.deepEqual(schedulerTimings(['riscv64-linux-cpu'], 1), {
    acceptPlatforms: ['riscv64-linux-cpu'],
    leaseTimeoutMs: 1000,
    heartbeatIntervalMs: 250,
    workerSilenceMs: 1000,
    reaperIntervalMs: 250,
  });
});

test('tokens from the environment are taken and removed from it', () => {
  const env: NodeJS.ProcessEnv = { REMEX_CLIENT_TOKENS: 'client-secret-token-0123456789', REMEX_WORKER_TOKENS: 'worker-secret-token-0123456789' };
  const c = serveConfig(flags(), env, quiet);
  assert.equal(c.auth?.enabled, true);
  assert.deepEqual(c.auth?.counts, { client: 1, worker: 1 });
  assert.deepEqual(env, {});
});

test('bad flags are refused naming the flag', () => {
  const refused = (over: Partial<ServeFlags>, pattern: RegExp) =>
    assert.throws(() => serveConfig(flags(over), {}, quiet), (err: unknown) => isRemexError(err, 'INVALID_ARGUMENT') && pattern.test((err as Error).message));
  refused({ tlsCert: 'cert.pem' }, /--tls-cert and --tls-key go together/);
  refused({ port: 70_000 }, /^--port: /);
  refused({ grpcPort: 65_536 }, /^--grpc-port: /);
  refused({ leaseTimeout: 0 }, /^--lease-timeout: /);
});

test('--failsafe and --platform-price reach the scheduler; bad ones are refused naming the flag', () => {
  const c = serveConfig(flags({ failsafe: '90s', platformPrice: ['x86_64-linux-cpu=0.0336', 'aarch64-linux-cpu=0.02'] }), {}, quiet);
  assert.equal(c.scheduler.failsafeMs, 90_000);
  assert.deepEqual(c.scheduler.platformPrices, { 'x86_64-linux-cpu': 0.0336, 'aarch64-linux-cpu': 0.02 });
  const refusals: Array<[Partial<ServeFlags>, RegExp]> = [
    [{ failsafe: 'soon' }, /--failsafe "soon": not a duration/],
    [{ platformPrice: ['x86_64-linux-cpu'] }, /--platform-price "x86_64-linux-cpu": give PLATFORM=PRICE/],
    [{ platformPrice: ['x86_64-linux-cpu=-1'] }, /--platform-price "x86_64-linux-cpu=-1": give PLATFORM=PRICE/],
    [{ platformPrice: ['x86_64-linux-cpu=1', 'x86_64-linux-cpu=2'] }, /--platform-price: x86_64-linux-cpu is given twice/],
  ];
  for (const [over, message] of refusals) {
    assert.throws(() => serveConfig(flags(over), {}, quiet), (err: unknown) => isRemexError(err, 'INVALID_ARGUMENT') && message.test((err as Error).message));
  }
});

test('--max-log-ceiling sets the policy\'s maximum live-log ceiling, up to what a sandbox keeps (1G); a bad size is refused', () => {
  const c = serveConfig(flags({ maxLogCeiling: '64M' }), {}, quiet);
  assert.deepEqual(c.policy, { ...DEFAULT_POLICY, maxLogCeilingBytes: 64 * 1024 * 1024 });
  assert.equal(serveConfig(flags({ maxLogCeiling: '1G' }), {}, quiet).policy.maxLogCeilingBytes, 1024 ** 3);
  for (const [given, message] of [
    ['1.5G', /--max-log-ceiling: at most 1G/],
    ['lots', /--max-log-ceiling: expected a size/],
    ['0', /--max-log-ceiling: expected a size/],
  ] as const) {
    assert.throws(() => serveConfig(flags({ maxLogCeiling: given }), {}, quiet), (err: unknown) => isRemexError(err) && err.code === 'INVALID_ARGUMENT' && message.test(err.message));
  }
});
