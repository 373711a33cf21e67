#!/usr/bin/env node
// Entry point for `npx remex`: runs the compiled CLI (built by `npm run build`).
import { existsSync, readFileSync } from 'node:fs';
import module from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
// `remex --version` alone is answered here, without loading the command line (`remex -V` and the help
// go through it).
if (process.argv.length === 3 && process.argv[2] === '--version') {
  process.stdout.write(`${JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version}\n`);
  process.exit(0);
}
const main = join(root, 'dist', 'src', 'cli', 'main.js');
if (!existsSync(main)) {
  process.stderr.write(`remex: not built yet; run \`npm run build\` in ${root}\n`);
  process.exit(125);
}
// Node 22.1 and later keep compiled code between runs (in the OS temp directory): a client command starts
// faster from its second run on. Node 20 has no such cache.
module.enableCompileCache?.();
await import(pathToFileURL(main).href);
