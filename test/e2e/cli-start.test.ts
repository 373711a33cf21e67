/**
 * The quick client: `remex --version` (answered before the command line loads, and `-V` through it), and
 * what a client command loads — one bundled file (scripts/build-cli.js) with its code cache, never the
 * server's modules, the WebSocket library or TLS when the server is plain HTTP and the answer comes at
 * once; without a fresh bundle, and for the server's commands, the modules tsc built, with the same output
 * (the timing itself is bench/cli-start.ts).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { REMEX_BIN } from '../helpers/processes.js';
import { remexCli } from '../helpers/remex-cli.js';
import { startTestServer } from '../helpers/server.js';
import type { TestServer } from '../helpers/server.js';

const ROOT = join(REMEX_BIN, '..', '..');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

interface Loaded {
  stdout: string;
  /** ESM modules, as a module hook saw them load. */
  esm: string[];
  /** CommonJS modules, from require's cache at exit. */
  cjs: string[];
  /** Node's built-in modules, at exit. */
  builtins: string[];
}

/** Runs `bin` with these arguments and lists every module the process loads. */
async function modulesLoaded(bin: string, args: string[], env: Record<string, string> = {}): Promise<Loaded> {
  const dir = mkdtempSync(join(tmpdir(), 'remex-cli-start-'));
  try {
    const loader = join(dir, 'loader.mjs');
    // Written at once to fd 2: on Node 24 the hooks run on their own thread, whose process.stderr is lost
    // when the command ends with process.exit (as --help does).
    writeFileSync(loader, "import { writeSync } from 'node:fs';\nexport async function load(url, ctx, next) { writeSync(2, `LOAD ${url}\\n`); return next(url, ctx); }\n");
    const hook = join(dir, 'list-modules.mjs');
    writeFileSync(
      hook,
      `import { createRequire, register } from 'node:module';
register(${JSON.stringify(pathToFileURL(loader).href)});
const cache = createRequire(import.meta.url).cache;
process.on('exit', () => process.stderr.write('BUILTINS ' + JSON.stringify(process.moduleLoadList) + '\\nCJS ' + JSON.stringify(Object.keys(cache)) + '\\n'));
`,
    );
    // Asynchronously: the server answering it runs in this process.
    const r = await promisify(execFile)(process.execPath, ['--import', pathToFileURL(hook).href, bin, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
    return {
      stdout: r.stdout,
      esm: [...r.stderr.matchAll(/^LOAD (\S+)$/gm)].map((m) => m[1] as string),
      cjs: JSON.parse(/^CJS (.*)$/m.exec(r.stderr)?.[1] ?? '[]') as string[],
      builtins: JSON.parse(/^BUILTINS (.*)$/m.exec(r.stderr)?.[1] ?? '[]') as string[],
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const isRemexModule = (m: string): boolean => /\/dist\/src\//.test(m);

/** The code caches bin/remex.js keeps under this XDG_CACHE_HOME. */
function codeCaches(cacheHome: string): string[] {
  const dir = join(cacheHome, 'remex', 'cli-code-cache');
  return existsSync(dir) ? readdirSync(dir).map((name) => join(dir, name)) : [];
}

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

  test('a client command runs one bundled file, from its code cache once a command ran: neither the server, nor ws, nor TLS for an http:// server', async () => {
    const cacheHome = mkdtempSync(join(tmpdir(), 'remex-cli-cache-'));
    try {
      const env = { XDG_CACHE_HOME: cacheHome };
      const first = await modulesLoaded(REMEX_BIN, ['platforms', '--server', ts.server.url], env);
      assert.match(first.stdout, /PLATFORM/);
      const caches = codeCaches(cacheHome);
      assert.equal(caches.length, 1, 'the bundle ran and left its code cache (no bundle, or a stale one? run `npm run build`)');
      // Its time set back: a command that uses it (V8 accepts it) leaves it as it is.
      const past = new Date(Math.floor(Date.now() / 1000) * 1000 - 3_600_000);
      utimesSync(caches[0] as string, past, past);
      const second = await modulesLoaded(REMEX_BIN, ['platforms', '--server', ts.server.url], env);
      assert.equal(second.stdout, first.stdout);
      assert.deepEqual(codeCaches(cacheHome), caches);
      assert.equal(statSync(caches[0] as string).mtimeMs, past.getTime(), 'the code cache was used, not written again');
      for (const r of [first, second]) {
        assert.ok(r.builtins.length > 0 && r.cjs.length > 0, 'the modules were listed');
        assert.deepEqual(r.esm.filter(isRemexModule), [], 'no ESM module of remex');
        assert.deepEqual(r.cjs.filter(isRemexModule), [join(ROOT, 'dist', 'src', 'cli', 'client.cjs')], 'the client bundle, and no other module of remex');
        assert.deepEqual([...r.esm, ...r.cjs].filter((m) => /\/node_modules\//.test(m)), [], 'no dependency loaded on its own (commander is in the bundle; no ws)');
        assert.deepEqual(r.builtins.filter((m) => /^NativeModule (tls|_tls_wrap|https|child_process)$/.test(m)), [], 'no TLS for an http:// server, no child processes');
      }
    } finally {
      rmSync(cacheHome, { recursive: true, force: true });
    }
  });

  test('serve and the other unbundled commands, and every command when the bundle is stale, missing or turned off, run the modules tsc built', async () => {
    const serve = await modulesLoaded(REMEX_BIN, ['serve', '--help']);
    assert.match(serve.stdout, /Usage: remex serve/);
    assert.ok(serve.esm.some((u) => u.endsWith('/dist/src/cli/main.js')), 'serve runs main.js');
    assert.deepEqual(serve.cjs.filter(isRemexModule), [], 'not the client bundle');
    const off = await modulesLoaded(REMEX_BIN, ['platforms', '--server', ts.server.url], { REMEX_CLI_BUNDLE: '0' });
    assert.match(off.stdout, /PLATFORM/);
    assert.ok(off.esm.some((u) => u.endsWith('/dist/src/cli/main.js')) && off.cjs.filter(isRemexModule).length === 0, 'REMEX_CLI_BUNDLE=0 runs main.js');

    // A copy of the install whose bundle is older than one of its inputs (as after a bare `tsc`), then gone.
    const root = mkdtempSync(join(tmpdir(), 'remex-cli-copy-'));
    try {
      cpSync(join(ROOT, 'bin'), join(root, 'bin'), { recursive: true });
      cpSync(join(ROOT, 'package.json'), join(root, 'package.json'));
      symlinkSync(join(ROOT, 'node_modules'), join(root, 'node_modules'));
      mkdirSync(join(root, 'dist', 'src'), { recursive: true });
      for (const name of readdirSync(join(ROOT, 'dist', 'src'))) {
        if (name === 'cli') cpSync(join(ROOT, 'dist', 'src', 'cli'), join(root, 'dist', 'src', 'cli'), { recursive: true, preserveTimestamps: true });
        else symlinkSync(join(ROOT, 'dist', 'src', name), join(root, 'dist', 'src', name));
      }
      const bin = join(root, 'bin', 'remex.js');
      const bundled = await modulesLoaded(bin, ['platforms', '--server', ts.server.url], { XDG_CACHE_HOME: join(root, 'cache') });
      assert.ok(!bundled.esm.some((u) => u.endsWith('/dist/src/cli/main.js')) && codeCaches(join(root, 'cache')).length === 1, 'the copy runs its bundle while it is fresh');
      const later = new Date(Date.now() + 60_000);
      utimesSync(join(root, 'dist', 'src', 'cli', 'run-command.js'), later, later);
      const stale = await modulesLoaded(bin, ['platforms', '--server', ts.server.url]);
      rmSync(join(root, 'dist', 'src', 'cli', 'client.json'));
      const missing = await modulesLoaded(bin, ['platforms', '--server', ts.server.url]);
      for (const [what, r] of Object.entries({ stale, missing })) {
        assert.equal(r.stdout, bundled.stdout, `${what}: the same output`);
        assert.ok(r.esm.some((u) => u.endsWith('/dist/src/cli/main.js')), `${what}: main.js runs`);
        assert.deepEqual(r.cjs.filter(isRemexModule), [], `${what}: not the bundle`);
      }
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
