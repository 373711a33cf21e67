// Bundles the client side of the command line into one CommonJS file, dist/src/cli/client.cjs (run by
// `npm run build`, after tsc): a client command (`remex run`, `status`, `platforms`…) then compiles one
// file, commander included, instead of resolving and compiling some thirty modules, and Node's ESM loader
// is never started (decision 0044). `serve`, `worker` and `autoscale` load the server's modules, `compare`
// and `collect` more of remex than the quick commands need: they are left out of the bundle, and
// bin/remex.js runs them from dist/src/cli/main.js as tsc built it (never part bundle, part not: one copy
// of each class per process, for `instanceof RemexError` to hold across the modules a command loads).
//
// Beside the bundle, client.json lists what it was built from: bin/remex.js uses the bundle only when none
// of those files is newer (after a bare `tsc` it runs main.js), and only for the commands it holds.
import { renameSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rolldown } from 'rolldown';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const cliDir = join(root, 'dist', 'src', 'cli');
const entry = join(cliDir, 'main.js');
const out = join(cliDir, 'client.cjs');

// The commands the bundle does not run, and the only modules it may leave out: the ones they import
// (the bundle sits beside main.js, so their relative paths still resolve, but it never loads them).
const UNBUNDLED_COMMANDS = ['serve', 'worker', 'autoscale', 'compare', 'collect'];
const LEFT_OUT = new Set(['../server/config.js', '../server/logger.js', '../server/server.js', '../server/remote-worker.js', './autoscale-command.js', './compare-command.js', './collect-command.js']);

// The modules the bundle may hold.
const QUICK = /^(node_modules\/commander\/|dist\/src\/(cli|client|core|auth)\/|dist\/src\/server\/defaults\.js$)/;

// commander requires node:child_process on load, for subcommands that are executables of their own, which
// remex has none of: in the bundle it is required when first used (it loads net, dgram and more).
const COMMANDER_CHILD_PROCESS = "const childProcess = require('node:child_process');";
const lazyChildProcess = {
  name: 'remex-lazy-child-process',
  transform(code, id) {
    if (!id.replaceAll('\\', '/').endsWith('/node_modules/commander/lib/command.js')) return null;
    if (!code.includes(COMMANDER_CHILD_PROCESS)) throw new Error(`commander's lib/command.js no longer starts with ${COMMANDER_CHILD_PROCESS} (scripts/build-cli.js)`);
    return code.replace(COMMANDER_CHILD_PROCESS, "const childProcess = { spawn: (...args) => require('node:child_process').spawn(...args) };");
  },
};

const bundle = await rolldown({
  input: entry,
  platform: 'node',
  external: (id, importer) => importer === entry && LEFT_OUT.has(id),
  plugins: [lazyChildProcess],
  logLevel: 'warn',
});
try {
  const { output } = await bundle.write({ file: `${out}.tmp`, format: 'cjs', codeSplitting: false });
  const [chunk] = output;
  if (output.length !== 1 || chunk?.type !== 'chunk') throw new Error(`expected one file, got ${output.map((o) => o.fileName).join(', ')}`);
  // A client command reaching a module outside the bundle would load a second copy of what they share.
  // (Rolldown lists './x.js' as 'x.js'.)
  const outside = [...chunk.imports, ...chunk.dynamicImports].filter((id) => !id.startsWith('node:') && !LEFT_OUT.has(id) && !LEFT_OUT.has(`./${id}`));
  if (outside.length > 0) throw new Error(`the client bundle would load ${outside.join(', ')} from outside: bundle it, or leave it to the unbundled commands (scripts/build-cli.js)`);
  // What a quick command may load: a command that needs more (the server's modules, a dependency) belongs
  // with the unbundled ones.
  const heavy = chunk.moduleIds.filter((id) => !id.startsWith('\0') && !QUICK.test(relative(root, id).replaceAll('\\', '/')));
  if (heavy.length > 0) throw new Error(`the client bundle would hold ${heavy.map((id) => relative(root, id)).join(', ')}: run the command that needs it unbundled (UNBUNDLED_COMMANDS and LEFT_OUT in scripts/build-cli.js)`);
  const inputs = chunk.moduleIds.filter((id) => !id.startsWith('\0')).map((id) => relative(root, id));
  renameSync(`${out}.tmp`, out);
  writeFileSync(join(cliDir, 'client.json'), `${JSON.stringify({ bundle: relative(root, out), unbundledCommands: UNBUNDLED_COMMANDS, inputs }, null, 1)}\n`);
} finally {
  await bundle.close();
}
