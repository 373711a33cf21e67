/**
 * The quick client: `remex --version` (answered before the command line loads, and `-V` through it), and
 * what a client command loads — never the server's modules, the WebSocket library or TLS when the server
 * is plain HTTP and the answer comes at once (the timing itself is bench/cli-start.ts).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { REMEX_BIN } from '../helpers/processes.js';
import { remexCli } from '../helpers/remex-cli.js';
import { startTestServer } from '../helpers/server.js';
import type { TestServer } from '../helpers/server.js';

const VERSION = (JSON.parse(readFileSync(join(REMEX_BIN, '..', '..', 'package.json'), 'utf8')) as { version: string }).version;

describe('a quick CLI', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ workerSlots: 0 });
  });
  after(async () => {
    await ts?.close();
  });

  test('remex --version and -V print the version of package.json', async () => {
    for (const flag of ['--version', '-V']) {
      const r = await remexCli([flag]);
      assert.equal(r.code, 0);
      assert.equal(r.stdout, `${VERSION}\n`, flag);
    }
    assert.match((await remexCli(['--help'])).stdout, /-V, --version +print the version of remex/);
  });

  test('a client command loads neither the server, nor ws, nor TLS for an http:// server', async () => {
    // A module hook lists every module the process loads; an exit listener lists the built-ins it loaded.
    const dir = mkdtempSync(join(tmpdir(), 'remex-cli-start-'));
    try {
      const loader = join(dir, 'loader.mjs');
      writeFileSync(loader, 'export async function load(url, ctx, next) { process.stderr.write(`LOAD ${url}\\n`); return next(url, ctx); }\n');
      const hook = join(dir, 'list-modules.mjs');
      writeFileSync(
        hook,
        `import { register } from 'node:module';
register(${JSON.stringify(pathToFileURL(loader).href)});
process.on('exit', () => process.stderr.write('BUILTINS ' + JSON.stringify(process.moduleLoadList) + '\\n'));
`,
      );
      // Asynchronously: the server answering it runs in this process.
      const r = await promisify(execFile)(process.execPath, ['--import', pathToFileURL(hook).href, REMEX_BIN, 'platforms', '--server', ts.server.url], { encoding: 'utf8' });
      assert.match(r.stdout, /PLATFORM/);
      const loaded = [...r.stderr.matchAll(/^LOAD (\S+)$/gm)].map((m) => m[1] as string);
      const builtins = JSON.parse(/^BUILTINS (.*)$/m.exec(r.stderr)?.[1] ?? '[]') as string[];
      assert.ok(loaded.some((u) => u.endsWith('/dist/src/cli/main.js')), 'the hook saw the CLI load');
      assert.ok(builtins.length > 0, 'the built-ins were listed');
      // server/defaults.ts holds the flags' defaults and loads nothing (a client command's help shows them).
      const serverModules = loaded.filter((u) => /\/dist\/src\/(server|scheduler|store|worker|cas\/fs|api\/(http|grpc|ws))\//.test(u) && !u.endsWith('/server/defaults.js'));
      assert.deepEqual(serverModules, [], 'no server module');
      assert.deepEqual(loaded.filter((u) => /\/node_modules\/(ws|fastify|pino|better-sqlite3|@grpc|zod|pg)\//.test(u)), [], 'no server dependency, no ws');
      assert.deepEqual(builtins.filter((m) => /^NativeModule (tls|_tls_wrap|https)$/.test(m)), [], 'no TLS for an http:// server');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
