/** `remex serve` options that choose where things go, as a real process reads them. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { killHard, spawnRemex, startServeProcess, waitForOutput } from '../helpers/processes.js';
import { remexCli } from '../helpers/remex-cli.js';
import { compileC, requireTools } from '../helpers/tools.js';
import type { RemexProcess } from '../helpers/processes.js';

const dataDir = mkdtempSync(join(tmpdir(), 'remex-serve-options-'));
const started: RemexProcess[] = [];

after(async () => {
  for (const p of started) await killHard(p);
  rmSync(dataDir, { recursive: true, force: true });
});

describe('remex serve options', () => {
  test('--run-directories data-dir keeps local runs under the data directory, and says so', async () => {
    const { proc } = await startServeProcess(['--no-grpc', '--workers', '1', '--data', dataDir, '--run-directories', 'data-dir'], { REMEX_LOG_LEVEL: 'info' });
    started.push(proc);
    const [line] = await waitForOutput(proc, /.*"msg":"local run directories".*/);
    const logged = JSON.parse(line) as { runDirectories: string; kind: string; reason?: string };
    assert.deepEqual(logged, { ...logged, runDirectories: join(dataDir, 'runs'), kind: 'data-dir', reason: 'configured' });
  });

  test('an unknown --run-directories value is refused before anything starts', async () => {
    const proc = spawnRemex(['serve', '--no-grpc', '--port', '0', '--data', dataDir, '--run-directories', 'ramdisk']);
    const { code } = await proc.exited;
    assert.notEqual(code, 0);
    assert.match(proc.output(), /--run-directories.*ramdisk.*(auto|data-dir)/s);
  });

  test("--max-log-ceiling bounds the live-log ceiling a job may ask for: remex submit's --log-ceiling-mib above it is refused", async (t) => {
    if (!requireTools(t, 'gcc')) return;
    const exe = compileC({ file: 'programs/log-lines.c' }, 'x86_64');
    const { proc, url } = await startServeProcess(['--no-grpc', '--workers', '0', '--accept-platform', 'x86_64-linux-cpu', '--data', join(dataDir, 'ceiling'), '--max-log-ceiling', '4M']);
    started.push(proc);
    const refused = await remexCli(['submit', exe, '--log-ceiling-mib', '5', '--server', url]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /logCeilingBytes 5242880 is above this server's maximum 4194304/);
    // At the maximum, and without a ceiling (the default, 256 MiB, is lowered to the maximum): taken.
    for (const ceiling of [['--log-ceiling-mib', '4'], []]) {
      const taken = await remexCli(['submit', exe, ...ceiling, '--server', url]);
      assert.equal(taken.code, 0, taken.stderr);
    }
    // Past what a worker's sandbox keeps of a stream: refused before anything starts.
    const tooHigh = spawnRemex(['serve', '--no-grpc', '--port', '0', '--data', join(dataDir, 'ceiling-2g'), '--max-log-ceiling', '2G']);
    assert.notEqual((await tooHigh.exited).code, 0);
    assert.match(tooHigh.output(), /--max-log-ceiling: at most 1G .*not 2G/);
  });

  for (const door of ['--port', '--grpc-port'] as const) {
    test(`a ${door} already in use stops the server with the reason, nothing left running`, async () => {
      const squatter = createServer();
      squatter.listen(0, '127.0.0.1');
      await once(squatter, 'listening');
      try {
        const taken = String((squatter.address() as AddressInfo).port);
        const ports = door === '--port' ? ['--port', taken, '--grpc-port', '0'] : ['--port', '0', '--grpc-port', taken];
        // With a local worker, so its sandbox, run directories and database must all be let go.
        const proc = spawnRemex(['serve', ...ports, '--workers', '1', '--data', join(dataDir, `in-use${door}`)]);
        started.push(proc);
        let timer: NodeJS.Timeout | undefined;
        const ended = await Promise.race([proc.exited, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), 30_000)))]);
        clearTimeout(timer);
        assert.ok(ended, `remex serve kept running after it could not listen:\n${proc.output()}`);
        assert.notEqual(ended.code, 0);
        assert.match(proc.output(), /EADDRINUSE/);
      } finally {
        squatter.close();
      }
    });
  }
});
