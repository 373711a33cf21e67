#!/usr/bin/env node
// Entry point for `npx remex`: runs the compiled CLI (built by `npm run build`).
//
// CommonJS (bin/package.json), so that a client command never starts Node's ESM loader: it runs one file,
// dist/src/cli/client.cjs, the client side of the command line bundled by scripts/build-cli.js, with a V8
// code cache of its own (decision 0044). `serve`, `worker`, `autoscale`, `compare` and `collect`, and every
// command when the bundle is missing or older than what tsc built since (or REMEX_CLI_BUNDLE=0), run
// dist/src/cli/main.js.
'use strict';
const { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } = require('node:fs');
const { dirname, join } = require('node:path');

const root = join(__dirname, '..');
const command = process.argv[2];
// `remex --version` alone is answered here, without loading the command line (`remex -V` and the help
// go through it).
if (process.argv.length === 3 && command === '--version') {
  process.stdout.write(`${JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version}\n`);
  process.exit(0);
}
// Node 22.1 and later keep compiled code between runs (in the OS temp directory) for the modules tsc built.
require('node:module').enableCompileCache?.();

const bundle = clientBundle();
if (bundle !== undefined) {
  void runBundle(bundle).main(process.argv);
} else {
  const main = join(root, 'dist', 'src', 'cli', 'main.js');
  if (!existsSync(main)) {
    process.stderr.write(`remex: not built yet; run \`npm run build\` in ${root}\n`);
    process.exit(125);
  }
  void import(require('node:url').pathToFileURL(main).href).then((cli) => cli.main(process.argv));
}

/** The client bundle (its path and stat), if it holds this command and nothing it was built from changed since. */
function clientBundle() {
  if (process.env.REMEX_CLI_BUNDLE === '0') return undefined;
  let manifest;
  try {
    manifest = JSON.parse(readFileSync(join(root, 'dist', 'src', 'cli', 'client.json'), 'utf8'));
  } catch {
    return undefined; // not built by `npm run build`
  }
  if (manifest.unbundledCommands.includes(command)) return undefined;
  const path = join(root, manifest.bundle);
  const stat = statSync(path, { throwIfNoEntry: false });
  if (stat === undefined) return undefined;
  for (const input of manifest.inputs) {
    const changed = statSync(join(root, input), { throwIfNoEntry: false })?.mtimeMs;
    if (changed === undefined || changed > stat.mtimeMs) return undefined;
  }
  return { path, stat };
}

/**
 * Runs the bundle as CommonJS, compiled with a V8 code cache written after a first command ran: unlike
 * Node's compile cache (written before the code runs), it holds the functions commander and the client
 * compile lazily. The cache lives in the user's cache directory, named after the bundle (path, size,
 * time), Node's version and the command; V8 refuses one made by another V8 or for other flags, and it is
 * then written again. REMEX_CLI_CODE_CACHE=0 goes without.
 */
function runBundle({ path, stat }) {
  const { Script, constants } = require('node:vm');
  const Module = require('node:module');
  const cacheFile = codeCacheFile(path, stat);
  let cachedData;
  try {
    // Only a file of this user's, in a directory no one else can write to: a cache is code that runs.
    if (cacheFile !== undefined && [dirname(cacheFile), cacheFile].every(ownedAndPrivate)) cachedData = readFileSync(cacheFile);
  } catch {
    // none yet
  }
  const script = new Script(Module.wrap(readFileSync(path, 'utf8')), {
    filename: path,
    ...(cachedData !== undefined ? { cachedData } : {}),
    // The bundle imports nothing itself (the commands that do are not bundled); set where Node has it.
    ...(constants?.USE_MAIN_CONTEXT_DEFAULT_LOADER !== undefined ? { importModuleDynamically: constants.USE_MAIN_CONTEXT_DEFAULT_LOADER } : {}),
  });
  if (cacheFile !== undefined && (cachedData === undefined || script.cachedDataRejected)) process.once('exit', () => writeCodeCache(cacheFile, script));
  // A module as require would make it, in require's cache.
  const bundleModule = new Module(path, module);
  bundleModule.filename = path;
  require.cache[path] = bundleModule;
  script.runInThisContext()(bundleModule.exports, Module.createRequire(path), bundleModule, path, dirname(path));
  bundleModule.loaded = true;
  return bundleModule.exports;
}

function codeCacheFile(path, stat) {
  if (process.env.REMEX_CLI_CODE_CACHE === '0') return undefined;
  const base = process.env.XDG_CACHE_HOME || (process.env.HOME ? join(process.env.HOME, '.cache') : undefined);
  if (base === undefined) return undefined;
  let h = 0x811c9dc5; // FNV-1a of the path: each install its own file
  for (let i = 0; i < path.length; i++) h = Math.imul(h ^ path.charCodeAt(i), 0x01000193) >>> 0;
  // One per command: each holds what its command compiled (`run` and `status` run different code).
  const name = /^[a-z]{1,20}$/.test(command ?? '') ? command : 'other';
  return join(base, 'remex', 'cli-code-cache', `${h.toString(16)}-${process.version}-${process.arch}-${Math.trunc(stat.mtimeMs)}-${stat.size}-${name}`);
}

function ownedAndPrivate(path) {
  const { uid, mode } = statSync(path);
  return uid === process.getuid() && (mode & 0o022) === 0;
}

/** Writes the code cache (private directory, whole file or none). */
function writeCodeCache(file, script) {
  try {
    const dir = dirname(file);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (!ownedAndPrivate(dir)) return;
    // The caches of this install and Node for an older bundle go (not a file being written, `<name>.<pid>`).
    const parts = file.slice(dir.length + 1).split('-');
    const install = `${parts.slice(0, 3).join('-')}-`;
    const current = `${parts.slice(0, 5).join('-')}-`;
    for (const old of readdirSync(dir)) if (old.startsWith(install) && !old.startsWith(current) && !/\.\d+$/.test(old)) unlinkSync(join(dir, old));
    writeFileSync(`${file}.${process.pid}`, script.createCachedData(), { mode: 0o600 });
    renameSync(`${file}.${process.pid}`, file);
  } catch {
    // a cache is optional: a read-only home goes without
  }
}
