#!/usr/bin/env node
// Entry point for `npx remex`: runs the compiled CLI (built by `npm run build`).
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const main = join(root, 'dist', 'src', 'cli', 'main.js');
if (!existsSync(main)) {
  process.stderr.write(`remex: not built yet; run \`npm run build\` in ${root}\n`);
  process.exit(125);
}
await import(pathToFileURL(main).href);
