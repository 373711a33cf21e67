// Lint: typed rules that catch the bugs that matter in a server (floating promises, misused promises), no
// import cycles, and the layering of docs/architecture.md's "Components and layers" table, read from the
// document at lint time (scripts/layering.js): each folder of src/ imports only the folders its row names,
// so core imports nothing of remex and nothing but the composition root (`everything`) imports the CLI.
// Core also does no I/O.
import js from '@eslint/js';
import { createNodeResolver, importX } from 'eslint-plugin-import-x';
import tseslint from 'typescript-eslint';
import { layeringConfigs } from './scripts/layering.js';

// Breaches of the table in the code: warned, not failed, each until its code or its row changes (none today).
// Take an entry out once lint stops warning about it.
const TOLERATED = [];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'bin/**', '.remex/**', 'eslint.config.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    settings: {
      // Sources import each other as './x.js' (NodeNext); the files are './x.ts', which import-x must parse
      // (with TypeScript's parser) to follow their imports.
      'import-x/resolver-next': [createNodeResolver({ extensions: ['.ts', '.js', '.json', '.node'], extensionAlias: { '.js': ['.ts', '.js'] } })],
      'import-x/extensions': ['.ts', '.js'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
      'import-x/external-module-folders': ['node_modules', 'node_modules/@types'],
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite'] }] },
      ],
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // Cycles of value imports (type-only imports are erased and may go both ways).
    files: ['src/**/*.ts', 'test/**/*.ts', 'bench/**/*.ts'],
    plugins: { 'import-x': importX },
    rules: { 'import-x/no-cycle': 'error' },
  },
  ...layeringConfigs({ root: import.meta.dirname, importX, tolerated: TOLERATED }),
  {
    files: ['src/core/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['node:fs*', 'node:child_process', 'node:net', 'node:http'], message: 'core does no I/O' }] }],
    },
  },
  {
    // The lint rule generator is plain JavaScript that Node runs as it is: no type information.
    files: ['scripts/**/*.js'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: { ...tseslint.configs.disableTypeChecked.languageOptions, globals: { console: 'readonly', process: 'readonly' } },
  },
);
