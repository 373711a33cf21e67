#!/usr/bin/env node
// Entry point for `npx remex`: runs the compiled CLI (built by `npm run build`).
//
// CommonJS (bin/package.json), so that a client command never starts Node's ESM loader: it requires one
// file, dist/src/cli/client.cjs, the client side of the command line bundled by scripts/build-cli.js
// (decision 0044). `serve`, `worker`, `autoscale`, `compare` and `collect`, and every command when the
// bundle is missing or older than what tsc built since (or REMEX_CLI_BUNDLE=0), run dist/src/cli/main.js.
'use strict';
const { existsSync, readFileSync, statSync } = require('node:fs');
const { join } = require('node:path');

const root = join(__dirname, '..');
const command = process.argv[2];
// `remex --version` alone is answered here, without loading the command line (`remex -V` and the help
// go through it).
if (process.argv.length === 3 && command === '--version') {
  process.stdout.write(`${JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version}\n`);
  process.exit(0);
}
// Node 22.1 and later keep compiled code between runs (in the OS temp directory): a client command starts
// faster from its second run on. Node 20 has no such cache.
require('node:module').enableCompileCache?.();

const bundle = clientBundle();
if (bundle !== undefined) {
  void require(bundle).main(process.argv);
} else {
  const main = join(root, 'dist', 'src', 'cli', 'main.js');
  if (!existsSync(main)) {
    process.stderr.write(`remex: not built yet; run \`npm run build\` in ${root}\n`);
    process.exit(125);
  }
  void import(require('node:url').pathToFileURL(main).href).then((cli) => cli.main(process.argv));
}

/** The client bundle, if it holds this command and nothing it was built from changed since. */
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
  const built = statSync(path, { throwIfNoEntry: false })?.mtimeMs;
  if (built === undefined) return undefined;
  for (const input of manifest.inputs) {
    const changed = statSync(join(root, input), { throwIfNoEntry: false })?.mtimeMs;
    if (changed === undefined || changed > built) return undefined;
  }
  return path;
}
