// Shared Jest settings: TypeScript through SWC (type checking is `npm run typecheck`), node env.
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  transform: {
    '^.+\\.ts$': ['@swc/jest', { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'commonjs' } }],
  },
  moduleFileExtensions: ['ts', 'js', 'json'],
  testMatch: ['<rootDir>/src/**/*.test.ts'],
  // tfjs-wasm installs process-level handlers; a fresh module registry per file keeps tests independent.
  resetModules: false,
};
