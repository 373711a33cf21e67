// The dashboard's build (decision 0027): `vite build web` from the repository root, into dist/web, which
// `remex serve` serves at /. Everything is bundled: the page loads nothing from elsewhere.
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/',
  build: {
    outDir: '../dist/web',
    emptyOutDir: true,
    assetsDir: 'assets',
    // One small bundle: the budget is 200 KB of compressed JavaScript (a test checks it).
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
    sourcemap: false,
  },
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
});
