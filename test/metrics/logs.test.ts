/**
 * The log flags of a real `remex serve`: `--log-format pretty` writes readable lines (what a terminal
 * gets), `json` JSON lines; `--log-level` filters; bad values of the new flags are refused with a message
 * naming the flag, and nothing starts.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { killHard, spawnRemex, waitForOutput } from '../helpers/processes.js';
import { remexCli } from '../helpers/remex-cli.js';

describe('log flags', () => {
  const dir = mkdtempSync(join(tmpdir(), 'remex-logs-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  const serveArgs = (name: string): string[] => ['serve', '--port', '0', '--no-grpc', '--workers', '0', '--data', join(dir, name)];

  test('--log-format pretty: one readable line per entry, with its fields; json: JSON lines', async () => {
    const pretty = spawnRemex([...serveArgs('pretty'), '--log-format', 'pretty', '--log-level', 'info']);
    try {
      const m = await waitForOutput(pretty, /^.*remex serving.*$/m);
      assert.doesNotMatch(m[0], /^\{/, 'not JSON');
      assert.match(m[0], /INFO/);
      await waitForOutput(pretty, /url: "http:\/\/127\.0\.0\.1:\d+"/);
    } finally {
      await killHard(pretty);
    }
    const json = spawnRemex([...serveArgs('json'), '--log-format', 'json', '--log-level', 'info']);
    try {
      const m = await waitForOutput(json, /^.*remex serving.*$/m);
      const line = JSON.parse(m[0]) as { level: number; msg: string };
      assert.equal(line.msg, 'remex serving');
    } finally {
      await killHard(json);
    }
  });

  test('--log-level warn leaves out info lines', async () => {
    const quiet = spawnRemex([...serveArgs('quiet'), '--log-format', 'json', '--log-level', 'warn']);
    try {
      await waitForOutput(quiet, /remex listening on/);
      assert.doesNotMatch(quiet.output(), /remex serving/);
    } finally {
      await killHard(quiet);
    }
  });

  test('bad --log-level, --log-format and --metrics-port are refused, naming the flag', async () => {
    const level = await remexCli([...serveArgs('bad1'), '--log-level', 'loud']);
    assert.notEqual(level.code, 0);
    assert.match(level.stderr, /--log-level.*loud/);
    const format = await remexCli([...serveArgs('bad2'), '--log-format', 'xml']);
    assert.notEqual(format.code, 0);
    assert.match(format.stderr, /--log-format.*xml/);
    const port = await remexCli([...serveArgs('bad3'), '--metrics-port', '70000']);
    assert.notEqual(port.code, 0);
    assert.match(port.stderr, /--metrics-port/);
  });
});
