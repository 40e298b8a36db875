// ESLint: type-aware TypeScript rules everywhere, plus the determinism boundary for workflow code.
import tseslint from 'typescript-eslint';
import { builtinModules } from 'node:module';

const nodeBuiltins = [...builtinModules, ...builtinModules.map((m) => `node:${m}`)];

export default tseslint.config(
  { ignores: ['**/node_modules/**', '.id3/**', '.nx/**', 'coverage/**', '**/*.js', '**/*.cjs', '**/*.mjs', 'bench/**/*.py'] },
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { project: './tsconfig.json', tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    // Workflow code is replayed deterministically in Temporal's sandbox: no Node built-ins, no
    // tfjs, no stage packages, no activity/worker/client SDKs. Activities are imported as types.
    files: ['workflows/src/workflows.ts', 'workflows/src/contracts.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: [
            ...nodeBuiltins.map((name) => ({ name, message: 'workflow code must not import Node built-ins' })),
            { name: './activities', message: 'import activities as a type only', allowTypeImports: true },
            { name: '@temporalio/activity', message: 'not in workflow code' },
            { name: '@temporalio/client', message: 'not in workflow code' },
            { name: '@temporalio/worker', message: 'not in workflow code' },
            { name: 'sharp', message: 'not in workflow code' },
          ],
          patterns: [
            { group: ['@tensorflow/*'], message: 'workflow code must not import tfjs' },
            { group: ['@id3/*'], message: 'workflow code must not import stage packages' },
            {
              group: ['./*', '!./contracts', '!./activities'],
              message: 'workflow code may import only ./contracts (and ./activities as a type)',
            },
          ],
        },
      ],
    },
  },
  {
    // Stage packages use each other only through public entries, never workflows/.
    files: ['packages/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['@id3/workflows', '@id3/workflows/*'], message: 'stage packages never import workflows/' },
            { group: ['@id3/*/src/*', '../../*/src/*'], message: 'import other packages through their public entry (src/index.ts)' },
          ],
        },
      ],
    },
  },
);
