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
  // NOTE: the overload spec (issue 12) runs on demand, `npm run test:overload`. Since both of its
  // phases write as many rows (ballast, see the spec) it passed 1.06x and 1.02x (one endpoint)
  // and 1.23x (ten) on 2026-12-03, but the one-endpoint runs still sag late in the overload
  // (5 s rates down to 0.8x): too close to 0.9x for a check that blocks every landing.
  testPathIgnorePatterns: process.env.OVERLOAD_SPEC
    ? []
    : ['/overload\\.fault-spec\\.ts$'],
  transform: {
    '^.+\\.ts$': 'ts-jest',
  },
  globalSetup: '<rootDir>/test/faults/global-setup.ts',
  globalTeardown: '<rootDir>/test/faults/global-teardown.ts',
  testTimeout: 180000,
};
