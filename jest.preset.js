// Shared Jest settings: TypeScript through SWC (type checking is `npm run typecheck`), node env.
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  transform: {
    '^.+\\.ts$': ['@swc/jest', { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'commonjs' } }],
  },
  moduleFileExtensions: ['ts', 'js', 'json'],
  // Each test file gets its own module registry (Jest's default), so every file selects its own tfjs backend.
  testMatch: ['<rootDir>/src/**/*.test.ts'],
};
