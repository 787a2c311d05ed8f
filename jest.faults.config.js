/**
 * Process-level fault specs (`npm run test:faults`): each starts the service as child
 * processes with its own database and redis-server, and kills things. Not part of `npm test`.
 * @type {import('jest').Config}
 */
module.exports = {
  moduleFileExtensions: ['js', 'json', 'ts'],
  rootDir: '.',
  testEnvironment: 'node',
  testRegex: 'test/faults/.*\\.fault-spec\\.ts$',
  transform: {
    '^.+\\.ts$': 'ts-jest',
  },
  globalSetup: '<rootDir>/test/faults/global-setup.ts',
  globalTeardown: '<rootDir>/test/faults/global-teardown.ts',
  testTimeout: 180000,
};
