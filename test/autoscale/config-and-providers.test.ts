/** The autoscale configuration's refusals (saying where), and the command provider's failures: retried, never fatal. */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import pino from 'pino';
import { loadAutoscaleConfig, parseAutoscaleConfig } from '../../src/autoscale/config.js';
import { CommandProvider } from '../../src/autoscale/command-provider.js';
import { InvalidArgumentError } from '../../src/core/errors.js';
import { remexCli } from '../helpers/remex-cli.js';

const dir = mkdtempSync(join(tmpdir(), 'remex-as-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const pool = (over: Record<string, unknown> = {}) => ({ name: 'x86', platforms: ['x86_64-linux-cpu'], provider: { type: 'local-process' }, maxWorkers: 4, ...over });
const refused = (doc: unknown, where: RegExp) =>
  assert.throws(() => parseAutoscaleConfig(doc, 'test.yaml'), (err: unknown) => err instanceof InvalidArgumentError && where.test(err.message) && /test\.yaml/.test(err.message));

describe('the autoscale configuration', () => {
  test('defaults fill a minimal pool', () => {
    const c = parseAutoscaleConfig({ pools: [pool()] }, 'min');
    assert.equal(c.pools[0]?.minWorkers, 0);
    assert.equal(c.pools[0]?.policy.mode, 'predictive');
    assert.equal(c.decisionIntervalSeconds, 10);
  });

  test('bad input is refused, saying where', () => {
    refused({ pools: [pool({ minWorkers: 5, maxWorkers: 2 })] }, /pools\[0\]\.minWorkers: minWorkers must not exceed maxWorkers/);
    refused({ pools: [pool({ policy: { scaleDownCooldownSeconds: -1 } })] }, /pools\[0\]\.policy\.scaleDownCooldownSeconds: .*≥ 0/);
    refused({ pools: [pool({ provider: { type: 'kubernetes' } })] }, /pools\[0\]\.provider.*unknown provider type/);
    refused({ pools: [pool({ platforms: ['vax-linux-cpu'] })] }, /pools\[0\]\.platforms\[0\]: unknown platform "vax-linux-cpu"/);
    refused({ pools: [pool(), pool()] }, /pools\[1\]\.name: pool name x86 is used twice/);
    refused({ pools: [pool({ surprise: 1 })] }, /pools\[0\]/);
  });

  test('YAML and JSON files; a file that does not parse says so', () => {
    const yaml = join(dir, 'ok.yaml');
    writeFileSync(yaml, 'pools:\n  - name: a\n    platforms: [aarch64-linux-cpu]\n    provider: { type: command, scaleOut: [/bin/true], scaleIn: [/bin/true] }\n    maxWorkers: 2\n');
    assert.equal(loadAutoscaleConfig(yaml).pools[0]?.provider.type, 'command');
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"pools": [');
    assert.throws(() => loadAutoscaleConfig(bad), /bad\.json is not valid JSON/);
  });

  test('remex serve refuses an invalid file at start, naming it and the field', async () => {
    const file = join(dir, 'minmax.yaml');
    writeFileSync(file, 'pools:\n  - { name: a, platforms: [x86_64-linux-cpu], provider: { type: local-process }, minWorkers: 3, maxWorkers: 1 }\n');
    const r = await remexCli(['serve', '--port', '0', '--no-grpc', '--workers', '0', '--data', join(dir, 'data'), '--autoscale', file]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /INVALID_ARGUMENT: invalid autoscale config .*minmax\.yaml: pools\[0\]\.minWorkers: minWorkers must not exceed maxWorkers/);
  });
});

describe('the command provider', () => {
  const logger = pino({ level: 'silent' });
  const script = (name: string, body: string): string => {
    const path = join(dir, name);
    writeFileSync(path, `#!/bin/sh\n${body}\n`);
    chmodSync(path, 0o755);
    return path;
  };

  test('scale-out gets the JSON description on stdin and reads the instance ids it prints', async () => {
    const seen = join(dir, 'stdin.json');
    const out = script('out.sh', `cat > ${seen}; echo '{"instanceIds": ["i-1", "i-2"]}'`);
    const p = new CommandProvider({ scaleOut: [out], scaleIn: ['/bin/true'], timeoutSeconds: 5, attempts: 1, logger });
    const started = await p.scaleOut({ pool: 'x86', count: 2, platforms: ['x86_64-linux-cpu'], slotsPerWorker: 2, labels: { 'remex-pool': 'x86' }, servers: ['http://c:8080'] });
    assert.deepEqual(started, [{ instanceId: 'i-1' }, { instanceId: 'i-2' }]);
    assert.deepEqual(JSON.parse(readFileSync(seen, 'utf8')), { action: 'scale-out', pool: 'x86', count: 2, platforms: ['x86_64-linux-cpu'], slotsPerWorker: 2, labels: { 'remex-pool': 'x86' }, servers: ['http://c:8080'] });
  });

  test('a failing command is retried with back-off, then given up without throwing', async () => {
    const count = join(dir, 'count');
    const fail = script('fail.sh', `echo x >> ${count}; echo boom >&2; exit 3`);
    const p = new CommandProvider({ scaleOut: [fail], scaleIn: [fail], timeoutSeconds: 5, attempts: 3, firstBackoffMs: 10, logger });
    assert.deepEqual(await p.scaleOut({ pool: 'x', count: 1, platforms: [], slotsPerWorker: 1, labels: {}, servers: [] }), []);
    assert.equal(readFileSync(count, 'utf8').trim().split('\n').length, 3);
  });

  test('a hanging command is killed after its timeout and tried again', async () => {
    const count = join(dir, 'hangs');
    const hang = script('hang.sh', `echo x >> ${count}; exec sleep 60`);
    const p = new CommandProvider({ scaleOut: [hang], scaleIn: [hang], timeoutSeconds: 0.3, attempts: 2, firstBackoffMs: 10, logger });
    await p.release({ pool: 'x', instanceIds: ['i-9'] });
    assert.equal(readFileSync(count, 'utf8').trim().split('\n').length, 2);
  });

  test('a command that is not there fails like any other, and output that is not JSON counts as no ids', async () => {
    const p = new CommandProvider({ scaleOut: [join(dir, 'missing')], scaleIn: ['/bin/true'], timeoutSeconds: 1, attempts: 1, logger });
    assert.deepEqual(await p.scaleOut({ pool: 'x', count: 1, platforms: [], slotsPerWorker: 1, labels: {}, servers: [] }), []);
    const chatty = new CommandProvider({ scaleOut: [script('chatty.sh', 'echo started three machines')], scaleIn: ['/bin/true'], timeoutSeconds: 1, attempts: 1, logger });
    assert.deepEqual(await chatty.scaleOut({ pool: 'x', count: 3, platforms: [], slotsPerWorker: 1, labels: {}, servers: [] }), []);
  });
});
