// Per-folder import rules generated from the table "Components and layers" of docs/architecture.md, so the
// layering the document states is the layering lint checks (eslint.config.js loads this at lint time;
// `node scripts/layering.js` prints what it reads). Plain JavaScript: ESLint loads it without a build.
//
// The table's syntax, as this reads it:
// - the section starting `## Components and layers` holds a markdown table whose header names (at least)
//   the columns `folder` and `imports`;
// - `folder` is one folder under src/, backticked: `src/<name>`;
// - `imports` is `everything` (no restriction: the composition root), `nothing of remex` (no other
//   folder of src/), or a list of entries separated by commas or the word "and", each starting with the
//   name of a folder of the table (`core`, `src/core` or `` `core` ``); the words after the name are a note
//   for readers and are not enforced ("scheduler's WorkerLink type" allows all of src/scheduler), and
//   may not contain "and" or a comma (either starts the next entry);
// - a folder may always import its own files.
// An entry naming no folder of the table, or a table that cannot be found, stops lint with a message.
// A folder of src/ with no row gets an error on each of its files (say what it owns and imports first);
// a row with no folder on disk is a warning (the document is ahead of, or behind, the tree).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const LAYERS_HEADING = '## Components and layers';

/** Thrown for a table this cannot read; the message names the line. */
export class LayeringTableError extends Error {}

/**
 * The rows of the table: `{ folder: 'src/core', imports: 'everything' | string[] (folders), line }`.
 * @param {string} markdown the text of docs/architecture.md
 * @param {string} source the document's name, for messages
 */
export function parseLayers(markdown, source = 'docs/architecture.md') {
  const lines = markdown.split('\n');
  const start = lines.findIndex((l) => l.trim() === LAYERS_HEADING);
  if (start < 0) throw new LayeringTableError(`${source}: no "${LAYERS_HEADING}" section`);
  let i = start + 1;
  while (i < lines.length && !lines[i].trim().startsWith('|')) {
    if (lines[i].startsWith('## ')) throw new LayeringTableError(`${source}:${start + 1}: "${LAYERS_HEADING}" has no table`);
    i++;
  }
  const header = cells(lines[i] ?? '');
  const folderCol = header.indexOf('folder');
  const importsCol = header.indexOf('imports');
  if (folderCol < 0 || importsCol < 0) throw new LayeringTableError(`${source}:${i + 1}: the table needs "folder" and "imports" columns`);
  i += 2; // the header and its |---| line

  const raw = [];
  for (; i < lines.length && lines[i].trim().startsWith('|'); i++) {
    const row = cells(lines[i]);
    const folder = /^`(src\/[a-z0-9-]+)`$/.exec(row[folderCol] ?? '')?.[1];
    if (!folder) throw new LayeringTableError(`${source}:${i + 1}: the folder cell must be one backticked src/<name>, got ${JSON.stringify(row[folderCol])}`);
    raw.push({ folder, cell: row[importsCol] ?? '', line: i + 1 });
  }
  const known = new Set(raw.map((r) => r.folder));
  return raw.map(({ folder, cell, line }) => ({ folder, imports: parseImports(cell, known, `${source}:${line}`), line }));
}

/** The folders an imports cell allows, or 'everything'. */
function parseImports(cell, known, where) {
  const text = cell.replaceAll('`', '').trim();
  if (text === 'everything') return 'everything';
  if (text === 'nothing of remex') return [];
  const folders = [];
  for (const entry of text.split(/,|\band\b/)) {
    const word = /^\s*([a-z0-9/-]+?)(?:'s\b|\s|$)/.exec(entry)?.[1];
    const folder = word?.startsWith('src/') ? word : `src/${word}`;
    if (!word || !known.has(folder)) {
      throw new LayeringTableError(`${where}: imports entry ${JSON.stringify(entry.trim())} does not start with a folder of the table (syntax: scripts/layering.js)`);
    }
    folders.push(folder);
  }
  return folders;
}

function cells(line) {
  const inner = line.trim().replace(/^\|/, '').replace(/\|$/, '');
  return inner.split(/(?<!\\)\|/).map((c) => c.trim().replaceAll('\\|', '|'));
}

/** Folders directly under `<root>/src`, as `src/<name>`. */
export function foldersOnDisk(root) {
  return readdirSync(join(root, 'src'), { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => `src/${d.name}`)
    .sort();
}

/**
 * What lint enforces, from the table and the tree: for each folder, the folders it may not import.
 * `tolerated` lists known breaches `{ from, to, why }` (folder `from` imports folder `to`): they are
 * taken out of the errors and reported as warnings until the code or the table changes.
 */
export function layering({ root, doc = 'docs/architecture.md', tolerated = [] }) {
  const rows = parseLayers(readFileSync(join(root, doc), 'utf8'), doc);
  const onDisk = foldersOnDisk(root);
  const inTable = new Set(rows.map((r) => r.folder));
  const all = [...new Set([...inTable, ...onDisk])].sort();
  const missingOnDisk = rows.filter((r) => !onDisk.includes(r.folder)).map((r) => r.folder);
  const missingInTable = onDisk.filter((f) => !inTable.has(f));
  for (const t of tolerated) {
    if (!all.includes(t.from) || !all.includes(t.to)) throw new LayeringTableError(`tolerated breach ${t.from} → ${t.to}: no such folder`);
  }
  const forbidden = [];
  for (const row of rows) {
    if (row.imports === 'everything') continue;
    const allowed = new Set([row.folder, ...row.imports]);
    const imports = row.imports.length === 0 ? 'nothing of remex' : row.imports.map((f) => f.slice(4)).join(', ');
    for (const to of all) {
      if (allowed.has(to)) continue;
      const breach = tolerated.find((t) => t.from === row.folder && t.to === to);
      const message = breach
        ? `known breach of docs/architecture.md's layers (${row.folder} imports ${imports}): ${breach.why}`
        : `${row.folder} imports ${imports} (docs/architecture.md, "Components and layers"), not ${to}`;
      forbidden.push({ from: row.folder, to, message, tolerated: Boolean(breach) });
    }
  }
  return { rows, onDisk, missingOnDisk, missingInTable, forbidden };
}

/**
 * Flat-config objects for eslint.config.js: `import-x/no-restricted-paths` zones (errors), the tolerated
 * breaches as warnings under a second name of the same plugin (one rule has one severity), and an error
 * on every file of a folder the table does not list. `importX` is eslint-plugin-import-x.
 */
export function layeringConfigs({ root, importX, doc, tolerated, files = ['src/**/*.ts'] }) {
  const layers = layering({ root, doc, tolerated });
  for (const folder of layers.missingOnDisk) {
    console.warn(`layering: ${doc ?? 'docs/architecture.md'} lists ${folder}, which is not a folder of src/ (moved or removed? update the table)`);
  }
  const zones = (known) =>
    layers.forbidden.filter((f) => f.tolerated === known).map((f) => ({ target: `./${f.from}`, from: `./${f.to}`, message: f.message }));
  // The rule refuses an empty list of zones: a rule without zones is off.
  const rule = (severity, z) => (z.length > 0 ? [severity, { basePath: root, zones: z }] : 'off');
  const configs = [
    {
      files,
      plugins: { 'import-x': importX, 'layering-known': importX },
      rules: {
        'import-x/no-restricted-paths': rule('error', zones(false)),
        'layering-known/no-restricted-paths': rule('warn', zones(true)),
      },
    },
  ];
  for (const folder of layers.missingInTable) {
    configs.push({
      files: [`${folder}/**/*.ts`],
      rules: {
        'no-restricted-syntax': [
          'error',
          { selector: 'Program', message: `${folder} has no row in "Components and layers" of docs/architecture.md: add one (what it owns, what it imports) before code goes in it` },
        ],
      },
    });
  }
  return configs;
}

// `node scripts/layering.js`: the layers as lint sees them.
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const root = join(fileURLToPath(import.meta.url), '..', '..');
  const layers = layering({ root });
  for (const row of layers.rows) {
    const imports = row.imports === 'everything' ? 'everything' : row.imports.length === 0 ? 'nothing of remex' : row.imports.join(', ');
    console.log(`${row.folder.padEnd(16)} may import ${imports}`);
  }
  for (const f of layers.missingOnDisk) console.log(`warning: ${f} is in the table, not on disk`);
  for (const f of layers.missingInTable) console.log(`error: ${f} is on disk, not in the table`);
  if (layers.missingInTable.length > 0) process.exitCode = 1;
}
